"""Secrets named by the config: read once at load time into ``SecretStr``.

Every secret ``<stem>`` can come from exactly one of three keys: ``<stem>_file`` (a file
holding only the secret), ``<stem>_credential`` (a systemd credential, read from
``$CREDENTIALS_DIRECTORY/<name>``, see ``LoadCredential=``) or ``<stem>`` inline in the
YAML (allowed, discouraged: the config file then has to be guarded like a key).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationInfo

from cmamd.config.problems import Loc
from cmamd.config.regular_file import read_regular

# A secret is a few hundred bytes at most; the cap keeps a wrong path such as /dev/zero or
# a log file from being slurped.
MAX_SECRET_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class LoadContext:
    """What validation needs from outside the YAML; passed as pydantic's context."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    base_dir: Path = field(default_factory=Path.cwd)  # relative paths are relative to this

    @classmethod
    def of(cls, info: ValidationInfo) -> LoadContext:
        return info.context if isinstance(info.context, LoadContext) else cls()


def anchor_path(path: Path, info: ValidationInfo) -> Path:
    """Relative paths in the config are relative to the config file's directory."""
    return path if path.is_absolute() else LoadContext.of(info).base_dir / path


class SecretUnavailable(ValueError):
    pass


def read_secret_file(path: Path) -> SecretStr:
    try:
        raw = read_regular(path, MAX_SECRET_BYTES)
    except OSError as exc:
        raise SecretUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise SecretUnavailable(f"{path} is larger than {MAX_SECRET_BYTES} bytes: not a secret")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretUnavailable(f"{path} is not UTF-8 text") from None
    return _checked(text, f"{path}")


def _checked(text: str, where: str) -> SecretStr:
    # Secrets and tokens never contain whitespace; a trailing newline from `echo` is common.
    value = text.strip()
    if not value:
        raise SecretUnavailable(f"{where} is empty")
    if any(ch.isspace() for ch in value):
        raise SecretUnavailable(f"{where} holds more than the secret (it contains whitespace)")
    return SecretStr(value)


def credential_path(name: str, environ: Mapping[str, str]) -> Path:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise SecretUnavailable(
            f"credential {name!r} needs $CREDENTIALS_DIRECTORY, which systemd sets for a unit "
            f"with LoadCredential={name}:<file>; outside systemd use a *_file key"
        )
    return Path(directory) / name


def check_credential_name(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError("a credential name is a plain file name (as in LoadCredential=NAME:...)")
    return name


def resolve_secret(
    model: Any, stem: str, info: ValidationInfo, *, required: bool
) -> tuple[SecretStr | None, list[tuple[Loc, str]]]:
    """Read the secret ``stem`` of ``model`` from whichever of its three keys is set.

    Returns the secret (None when optional and absent) and the problems, with paths
    relative to ``model``.
    """
    keys = (f"{stem}_file", f"{stem}_credential", stem)
    given = [key for key in keys if getattr(model, key) is not None]
    if len(given) > 1:
        return None, [((given[1],), f"give only one of {', '.join(keys)} (also set: {given[0]})")]
    if not given:
        if required:
            return None, [((stem,), f"missing: set one of {', '.join(keys)}")]
        return None, []
    key = given[0]
    try:
        if key == stem:
            inline: SecretStr = getattr(model, stem)
            return _checked(inline.get_secret_value(), "the value"), []
        if key.endswith("_file"):
            return read_secret_file(getattr(model, key)), []
        name: str = getattr(model, key)
        path = credential_path(name, LoadContext.of(info).environ)
        try:
            return read_secret_file(path), []
        except SecretUnavailable as exc:
            raise SecretUnavailable(f"credential {name!r} is not available: {exc}") from None
    except SecretUnavailable as exc:
        return None, [((key,), str(exc))]


def loose_permissions(path: Path) -> str | None:
    """A warning when a secret file is readable by group or others, like ssh does for keys."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} is accessible to group/others (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
    return None
