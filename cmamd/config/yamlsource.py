"""YAML parsing that remembers where each key and list item came from.

PyYAML silently keeps the last of two equal keys in a mapping, so a pasted-twice
``accounts:`` section would drop half the accounts without a word; here that is an
error. Every mapping key and sequence item gets its line recorded under its path
(``("copy", 0, "destinations")``), which is how validation errors find their line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cmamd.config.problems import Loc, Problem, format_path

MERGE_TAG = "tag:yaml.org,2002:merge"


class LineLoader(yaml.SafeLoader):
    """SafeLoader (no arbitrary objects) whose key constructor is usable on bare nodes."""

    def key_of(self, node: Node) -> object:
        key = self.construct_object(node, deep=True)
        try:
            hash(key)
        except TypeError:
            return repr(key)  # a list/mapping used as a key; pydantic rejects it later
        return key


@dataclass
class ParsedYaml:
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """Line of the deepest recorded prefix of ``loc`` (a missing key: its parent's)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None


class YamlProblems(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def parse_yaml(text: str) -> ParsedYaml:
    """Parse one YAML document; raise ``YamlProblems`` for syntax errors or duplicate keys."""
    loader = LineLoader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return ParsedYaml(data=None)
            parsed = ParsedYaml(data=None, lines={(): node.start_mark.line + 1})
            problems: list[Problem] = []
            _walk(loader, node, (), parsed.lines, problems, set())
            if problems:
                raise YamlProblems(problems)
            parsed.data = loader.construct_document(node)
            return parsed
        except yaml.MarkedYAMLError as exc:
            raise YamlProblems([_syntax_problem(exc)]) from None
        except yaml.YAMLError as exc:  # unmarked: e.g. an unreadable byte sequence
            raise YamlProblems([Problem("", None, f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()


def _syntax_problem(exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or "invalid YAML"
    if exc.context:
        what += f" ({exc.context})"
    if mark is None:
        return Problem("", None, f"YAML syntax error: {what}")
    return Problem(
        "",
        mark.line + 1,
        f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {what}",
    )


def _walk(
    loader: LineLoader,
    node: Node,
    loc: Loc,
    lines: dict[Loc, int],
    problems: list[Problem],
    seen: set[int],
) -> None:
    # An alias shares its anchor's node: walk it once (also stops alias bombs and loops).
    if id(node) in seen or isinstance(node, ScalarNode):
        return
    seen.add(id(node))
    if isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            lines.setdefault((*loc, index), item.start_mark.line + 1)
            _walk(loader, item, (*loc, index), lines, problems, seen)
    elif isinstance(node, MappingNode):
        first_line: dict[object, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:  # `<<: *defaults` merges, by design overriding
                continue
            key = loader.key_of(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                problems.append(
                    Problem(
                        format_path((*loc, key))
                        if isinstance(key, str | int)
                        else format_path(loc),
                        line,
                        f"duplicate key {key!r} (first at line {first_line[key]})",
                    )
                )
                continue
            first_line[key] = line
            if isinstance(key, str | int):
                lines.setdefault((*loc, key), line)
                _walk(loader, value_node, (*loc, key), lines, problems, seen)
