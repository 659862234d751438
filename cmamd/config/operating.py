"""The operator's sections of the YAML: ``control:``, ``groups:``, ``alerts:``, ``metrics:``.

Kept apart from models.py so the copy configuration stays readable; ``Config`` holds one
field per section and calls ``problems`` for the checks that need the account list.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cmamd.config.problems import Loc, LocatedProblems
from cmamd.config.rules import SymbolRule, VolumeMode, VolumeRule
from cmamd.config.secrets import (
    anchor_path,
    check_credential_name,
    loose_permissions,
    resolve_secret,
)

if TYPE_CHECKING:
    from cmamd.config.models import Config

UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL
DEFAULT_SOCKET_NAME = "control.sock"
AlertCause = Literal[
    "equity_stop",
    "account_failed",
    "account_reauth",
    "copy_refused",
    "close_refused",
    "foreign_copier",
    "daemon_stopping",
]
ALERT_CAUSES: tuple[str, ...] = get_args(AlertCause)


class _Section(BaseModel):
    # the same strictness as models.Section (imported from there would be circular)
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        populate_by_name=True,
        hide_input_in_errors=True,
    )


def _socket_path(path: Path, info: ValidationInfo) -> Path:
    path = anchor_path(path, info)
    if len(str(path).encode()) > UNIX_PATH_MAX:
        raise ValueError(f"a unix socket path is at most {UNIX_PATH_MAX} bytes: {path}")
    return path


def _group_name(value: str) -> str:
    if not 1 <= len(value) <= 32 or not all(
        ch.isascii() and (ch.isalnum() or ch in "_.-") for ch in value
    ):
        raise ValueError("a unix group name: 1-32 characters among A-Z a-z 0-9 _ . -")
    return value


SocketPath = Annotated[Path, Strict(False), AfterValidator(_socket_path)]
ConfigPath = Annotated[Path, Strict(False), AfterValidator(anchor_path)]
CredentialName = Annotated[str, AfterValidator(check_credential_name)]


class ControlConfig(_Section):
    """The control socket ``cmamd ctl`` talks to."""

    enabled: bool = True
    # default: $RUNTIME_DIRECTORY/control.sock (systemd), else <state_dir>/control.sock
    socket: SocketPath | None = None
    # members of this group may use the socket too (root and the daemon's user always may)
    group: Annotated[str, AfterValidator(_group_name)] | None = None


class GroupMember(_Section):
    account: str
    # sizing: "per_account" groups apply it to the lots given on the command line
    volume: VolumeRule = Field(default_factory=VolumeRule)
    symbols: SymbolRule = Field(default_factory=SymbolRule)

    @field_validator("volume")
    @classmethod
    def _plain_volume(cls, value: VolumeRule) -> VolumeRule:
        if value.mode not in (VolumeMode.MULTIPLIER, VolumeMode.FIXED_LOTS):
            raise ValueError("a group member is sized by multiplier or fixed_lots only")
        return value


class AccountGroup(_Section):
    """A named set of accounts for ``cmamd ctl order|close --group``."""

    name: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
    members: Annotated[list[GroupMember], Field(min_length=1)]
    # as_given: every account trades the lots typed; per_account: each member's volume rule
    sizing: Literal["as_given", "per_account"] = "as_given"


def _webhook_url(value: str) -> str:
    from cmamd.config.crosscheck import is_loopback

    if value.startswith("https://"):
        return value
    host = value.removeprefix("http://").split("/")[0].rsplit(":", 1)[0].strip("[]")
    if value.startswith("http://") and is_loopback(host):
        return value
    raise ValueError("an https:// URL (plain http:// only to a loopback host)")


class TelegramSink(_Section):
    chat_id: Annotated[str, Field(min_length=1, max_length=64)]
    token_file: ConfigPath | None = None
    token_credential: CredentialName | None = None
    token: SecretStr | None = None
    api_url: Annotated[str, AfterValidator(_webhook_url)] = "https://api.telegram.org"

    _token: SecretStr = PrivateAttr(default=SecretStr(""))

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> Self:
        secret, problems = resolve_secret(self, "token", info, required=True)
        if problems:
            raise LocatedProblems(problems)
        if secret is None:  # resolve_secret reports a missing required secret as a problem
            raise LocatedProblems([(("token",), "missing")])
        self._token = secret
        return self

    @property
    def resolved_token(self) -> SecretStr:
        return self._token


class WebhookSink(_Section):
    url: Annotated[str, AfterValidator(_webhook_url)]


class CommandSink(_Section):
    argv: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]

    @field_validator("argv")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        if not Path(value[0]).is_absolute():
            raise ValueError("argv[0] must be an absolute path (no PATH lookup in a daemon)")
        return value


class AlertsConfig(_Section):
    telegram: TelegramSink | None = None
    webhook: WebhookSink | None = None
    command: CommandSink | None = None
    # the same cause (e.g. copy_refused on follower1) is sent at most once per this span
    repeat_after_s: Annotated[float, Field(ge=0)] = 600.0
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    # the causes sent; the others are only logged
    causes: list[AlertCause] = Field(default_factory=lambda: list(get_args(AlertCause)))

    @property
    def any_sink(self) -> bool:
        return any(s is not None for s in (self.telegram, self.webhook, self.command))


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("host:port, e.g. 127.0.0.1:9464")
    return value


class MetricsConfig(_Section):
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:9464"

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def problems(config: Config) -> list[tuple[Loc, str]]:
    """References from the operator sections to accounts, and unique group names."""
    names = {account.name for account in config.accounts}
    found: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    for index, group in enumerate(config.groups):
        if group.name in seen:
            found.append(
                (
                    ("groups", index, "name"),
                    f"duplicate group name {group.name!r} (also groups[{seen[group.name]}])",
                )
            )
        seen.setdefault(group.name, index)
        members: set[str] = set()
        for m_index, member in enumerate(group.members):
            loc: Loc = ("groups", index, "members", m_index, "account")
            if member.account not in names:
                found.append((loc, f"unknown account {member.account!r}"))
            elif member.account in members:
                found.append((loc, f"account {member.account!r} is listed twice"))
            members.add(member.account)
    return found


def lots_for(sizing: str, volume: VolumeRule, lots: Decimal) -> Decimal:
    """The lots one group member trades for ``lots`` typed on the command line."""
    if sizing == "as_given":
        return lots
    if volume.mode is VolumeMode.FIXED_LOTS:
        return volume.value
    return lots * volume.value


def summary_lines(config: Config) -> list[str]:
    """check-config's lines for the operator sections (never a secret, only its source)."""
    control = config.control
    if control.enabled:
        where = str(control.socket) if control.socket else "$RUNTIME_DIRECTORY or state dir"
        who = (
            f"root, the daemon's user, group {control.group}"
            if control.group
            else ("root and the daemon's user")
        )
        lines = [f"control: socket {where}; {who}"]
    else:
        lines = ["control: off"]
    for group in config.groups:
        members = ", ".join(m.account for m in group.members)
        lines.append(f"group {group.name} ({group.sizing}): {members}")
    alerts = config.alerts
    sinks = [
        name
        for name, sink in (
            ("telegram", alerts.telegram),
            ("webhook", alerts.webhook),
            ("command", alerts.command),
        )
        if sink is not None
    ]
    lines.append(
        f"alerts: {', '.join(sinks)}; at most one per cause and account per "
        f"{alerts.repeat_after_s:g} s"
        if sinks
        else "alerts: logged only (no sink)"
    )
    lines.append(f"metrics: {config.metrics.listen}" if config.metrics else "metrics: off")
    return lines


def warnings(config: Config) -> list[tuple[Loc, str]]:
    """The bot token is a secret like the client secret: the same advice."""
    telegram = config.alerts.telegram
    if telegram is None:
        return []
    loc: Loc = ("alerts", "telegram")
    found: list[tuple[Loc, str]] = []
    if telegram.token is not None:
        found.append(((*loc, "token"), "inline secret: prefer token_credential or token_file"))
    if telegram.token_file is not None and (loose := loose_permissions(telegram.token_file)):
        found.append(((*loc, "token_file"), loose))
    return found
