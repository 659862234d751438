"""Read a config file into a ``Config``, or explain every problem with file:line: path.

Nothing is half-applied: the loader returns a complete, validated ``Config`` (secrets
read) or raises ``ConfigError``.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from cmamd.config.models import Config
from cmamd.config.problems import (
    ConfigError,
    ConfigUnreadable,
    Loc,
    LocatedProblems,
    Problem,
    format_path,
)
from cmamd.config.regular_file import read_regular
from cmamd.config.secrets import LoadContext
from cmamd.config.yamlsource import ParsedYaml, YamlProblems, parse_yaml

__all__ = [
    "ConfigError",
    "ConfigUnreadable",
    "LoadedConfig",
    "Problem",
    "load_config",
    "load_config_report",
]

# pydantic inserts validator names into error locations ("function-after[...]", "[key]")
_PYDANTIC_LOC_TAG = re.compile(r"^\[key\]$|^[a-z][a-z-]*\[.*\]$")
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    warnings: list[Problem]


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    return load_config_report(path, environ=environ).config


def load_config_report(path: Path, *, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Like ``load_config`` but also returns the warnings, located like the errors."""
    source = str(path)
    text = _read(path, source)
    try:
        parsed = parse_yaml(text)
    except YamlProblems as exc:
        raise ConfigError(source, exc.problems) from None
    if parsed.data is None:
        raise ConfigError(
            source, [Problem("", None, "the file is empty (expected api:, accounts: and copy:)")]
        )
    if not isinstance(parsed.data, dict):
        kind = "a list" if isinstance(parsed.data, list) else f"a {type(parsed.data).__name__}"
        raise ConfigError(
            source,
            [
                Problem(
                    "",
                    parsed.line_of(()),
                    f"the top level must be a mapping (key: value), not {kind}",
                )
            ],
        )
    context = LoadContext(
        environ=dict(os.environ if environ is None else environ),
        base_dir=path.absolute().parent,
    )
    try:
        config = Config.model_validate(parsed.data, context=context)
    except ValidationError as exc:
        raise ConfigError(source, problems_from(exc, parsed)) from None
    warnings = [
        Problem(format_path(loc), parsed.line_of(loc), msg) for loc, msg in config.warnings()
    ]
    warnings += _world_readable_inline_secrets(path, config)
    return LoadedConfig(config, warnings)


def _read(path: Path, source: str) -> str:
    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigUnreadable(
            source, [Problem("", None, f"cannot read: {exc.strerror or exc}")]
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigUnreadable(source, [Problem("", None, f"larger than {MAX_CONFIG_BYTES} bytes")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigUnreadable(
            source, [Problem("", None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None


def problems_from(exc: ValidationError, parsed: ParsedYaml) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors():
        loc = tuple(item for item in error["loc"] if not _is_loc_tag(item))
        nested = error.get("ctx", {}).get("error")
        if isinstance(nested, LocatedProblems):
            for relative, message in nested.problems:
                full = (*loc, *relative)
                problems.append(Problem(format_path(full), parsed.line_of(full), message))
        else:
            problems.append(Problem(format_path(loc), parsed.line_of(loc), _message(error, loc)))
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0, p.path))


def _is_loc_tag(item: str | int) -> bool:
    return isinstance(item, str) and bool(_PYDANTIC_LOC_TAG.match(item))


def _message(error: ErrorDetails, loc: Loc) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        known = _keys_at(loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
        if hint:
            return f"unknown key (did you mean {hint[0]!r}?)"
        return f"unknown key (expected one of: {', '.join(known)})" if known else "unknown key"
    if kind == "model_type":
        found = ", found nothing" if error["input"] is None else ""
        return f"expected a mapping (key: value){found}"
    if kind == "list_type" and error["input"] is None:
        return "expected a list, found nothing (write [] for an empty list)"
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    if kind == "string_type" and isinstance(error["input"], int | float | bool):
        message += " (YAML read a number or boolean here: quote the value)"
    return message


def _keys_at(loc: Loc) -> list[str]:
    """The keys the model at ``loc`` accepts (aliases as written in YAML), for hints."""
    annotation: Any = Config
    for item in loc:
        annotation = _unwrap(annotation)
        if isinstance(item, int):
            args = get_args(annotation)
            annotation = args[0] if get_origin(annotation) is list and args else None
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {f.alias or name: f for name, f in annotation.model_fields.items()}
            annotation = fields[item].annotation if item in fields else None
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or name for name, f in annotation.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if get_origin(annotation) in (Union, UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def _world_readable_inline_secrets(path: Path, config: Config) -> list[Problem]:
    inline = config.api.client_secret is not None or any(
        account.access_token is not None or account.refresh_token is not None
        for account in config.accounts
    )
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if inline and mode & stat.S_IROTH:
        return [Problem("", None, "holds inline secrets and is readable by everyone; chmod 600 it")]
    return []
