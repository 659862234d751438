"""How configuration problems are described: a YAML path, a line when known, a message.

Validators deep inside the models know *which* key is wrong but pydantic attaches their
errors to the model they run in; ``LocatedProblems`` carries the precise relative paths
out, and the loader re-anchors them under the model's own location.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

Loc = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(loc: Sequence[str | int]) -> str:
    """``("copy", 0, "destinations", 1, "account")`` -> ``copy[0].destinations[1].account``."""
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif _PLAIN_KEY.match(item):
            out += f".{item}" if out else item
        else:
            # keys such as symbol names with dots ("EURUSD.m") would read as nesting
            out += f'["{item}"]'
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    path: str  # YAML path, "" for the document itself
    line: int | None  # 1-based
    message: str

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The file is not a usable configuration; ``problems`` says everything that is wrong."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(problem.render(self.source) for problem in self.problems)


class ConfigUnreadable(ConfigError):
    """The file could not be read at all (missing, a directory, permissions, not UTF-8)."""


class LocatedProblems(ValueError):
    """Raised by model validators to report problems at paths relative to the model.

    A ValueError, so that pydantic wraps it like any validator failure (the message stays
    readable for direct users of the models); the loader unwraps it for precise paths.
    """

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{format_path(loc) or '.'}: {msg}" for loc, msg in problems))
