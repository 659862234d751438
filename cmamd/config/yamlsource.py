"""YAML parsing that remembers where each key and list item came from.

PyYAML silently keeps the last of two equal keys in a mapping, so a pasted-twice
``accounts:`` section would drop half the accounts without a word; here that is an
error. Every mapping key and sequence item gets its line recorded under its path
(``("copy", 0, "destinations")``), which is how validation errors find their line.

Hostile or broken input is a config error, never a traceback or a hang: nesting deeper
than ``MAX_DEPTH``, an integer longer than ``MAX_INT_DIGITS`` digits, aliases expanding to
more than ``MAX_EXPANDED_NODES`` nodes (an "alias bomb", as a value or as a mapping key),
an alias inside its own anchor, and characters YAML does not allow (a NUL byte).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cmamd.config.problems import Loc, Problem, format_path

MERGE_TAG = "tag:yaml.org,2002:merge"
INT_TAG = "tag:yaml.org,2002:int"
MAX_DEPTH = 50  # a real config nests 5 levels; the composer recurses once per level
MAX_INT_DIGITS = 30  # int() refuses > 4300 digits with a ValueError; no setting needs 30
MAX_EXPANDED_NODES = 100_000  # a real config has a few hundred nodes


class LineLoader(yaml.SafeLoader):
    """SafeLoader (no arbitrary objects) whose key constructor is usable on bare nodes,
    and whose composer refuses documents nested deeper than ``MAX_DEPTH``."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested deeper than {MAX_DEPTH} levels",
                    self.get_mark(),
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: ScalarNode) -> int:
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {digits} digits is not a setting", node.start_mark
            )
        return super().construct_yaml_int(node)

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


LineLoader.add_constructor(INT_TAG, LineLoader.construct_yaml_int)


def parse_yaml(text: str) -> ParsedYaml:
    """Parse one YAML document; raise ``YamlProblems`` for syntax errors or duplicate keys."""
    try:
        loader = LineLoader(text)
    except yaml.reader.ReaderError as exc:  # the reader refuses the text itself (a NUL byte)
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character
        code = char if isinstance(char, int) else ord(char)
        message = f"character U+{code:04X} (a control character) is not allowed in YAML"
        raise YamlProblems([Problem("", line, message)]) from None
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return ParsedYaml(data=None)
            _check_expansion(node)
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
        except RecursionError:  # a second line behind MAX_DEPTH (e.g. a deep flow key)
            raise YamlProblems([Problem("", None, "YAML nested too deeply")]) from None
        except (ValueError, ArithmeticError, TypeError) as exc:
            # a constructor choking on a value its pattern matched (a date like 2024-13-45)
            raise YamlProblems([Problem("", None, f"YAML value not understood: {exc}")]) from None
    finally:
        loader.dispose()


def _check_expansion(root: Node) -> None:
    """Refuse a document whose aliases expand to more than ``MAX_EXPANDED_NODES`` nodes,
    or that holds an alias inside its own anchor, before anything is constructed.

    Each distinct node's expanded size is computed once (aliases share nodes), so the
    check costs the size of the text, not of the expansion.
    """
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    # iterative post-order walk: the depth is bounded already, but stay off the C stack
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done:
            in_progress.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_EXPANDED_NODES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"aliases expand to more than {MAX_EXPANDED_NODES} nodes",
                    node.start_mark,
                )
            continue
        if id(node) in in_progress:
            raise yaml.composer.ComposerError(
                None, None, "an alias refers to a node that contains it", node.start_mark
            )
        in_progress.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [item for pair in node.value for item in pair]
    return []


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
