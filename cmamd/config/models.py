"""The configuration file as pydantic models: strict types, unknown keys rejected.

Secrets are resolved while validating (files and systemd credentials are read then), so a
``Config`` is complete and self-contained: nothing is read later, nothing half-applied.
The resolved values live in private attributes exposed as ``SecretStr``; they take part
in equality (a rotated secret file makes two configs differ) but never in repr or dumps.

Relative paths and ``$CREDENTIALS_DIRECTORY``/``$STATE_DIRECTORY`` come from the
``LoadContext`` given as validation context (``load_config`` does that); without one the
process environment and working directory are used.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

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

from cmamd.config import crosscheck, operating, placeholders
from cmamd.config.problems import Loc, LocatedProblems
from cmamd.config.rules import CopyRule
from cmamd.config.secrets import LoadContext, anchor_path, check_credential_name, resolve_secret
from cmamd.connection.ratelimit import DEFAULT_MARGIN_S, MAX_MARGIN_S

DEFAULT_STATE_DIR = Path("/var/lib/cmamd")
MAX_RPS = 50  # docs/protocol.md §8: 50 non-historical requests per second per connection
MAX_HEARTBEAT_S = 10.0  # docs/protocol.md §3: send a heartbeat at least every 10 s
CTRADER_JSON_PORT = 5036
MAX_SILENCE_TIMEOUT_S = 300.0  # a dead link noticed after 5 minutes at worst


def _account_name(value: str) -> str:
    if not 1 <= len(value) <= 40 or not all(
        ch.isascii() and (ch.isalnum() or ch in "_.-") for ch in value
    ):
        raise ValueError("a name is 1-40 characters among A-Z a-z 0-9 _ . -")
    return value


def _host(value: str) -> str:
    bare = value.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    labels = value.split(".")
    if (
        not value
        or len(value) > 253
        or not all(
            label
            and len(label) <= 63
            and all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in label)
            for label in labels
        )
    ):
        raise ValueError("a host name or IP address only (no scheme, port or path)")
    return value.lower()


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("an http:// or https:// URL")
    return value


def _oauth_url(value: str) -> str:
    # The token endpoint sees the client secret and hands out tokens: https, except for a
    # loopback stand-in (the simulator), as with ``tls: false``.
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname and crosscheck.is_loopback(parts.hostname):
        return value
    raise ValueError("an https:// URL (plain http:// only for a loopback host)")


ConfigPath = Annotated[Path, Strict(False), AfterValidator(anchor_path)]
CredentialName = Annotated[str, AfterValidator(check_credential_name)]
AccountName = Annotated[str, AfterValidator(_account_name)]
Host = Annotated[str, AfterValidator(_host)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class Section(BaseModel):
    # strict: a quoted "5035" or a 1 where a name belongs is a mistake, not a coercion.
    # hide_input_in_errors: a failing section's input can hold an inline secret
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        populate_by_name=True,
        hide_input_in_errors=True,
    )


class Connections(Section):
    """Connections per environment; accounts of an environment are spread over them."""

    demo: Annotated[int, Field(ge=1, le=10)] = 1
    live: Annotated[int, Field(ge=1, le=10)] = 1


class ApiConfig(Section):
    client_id: Annotated[str, Field(min_length=1)]
    client_secret_file: ConfigPath | None = None
    client_secret_credential: CredentialName | None = None
    client_secret: SecretStr | None = None
    redirect_uri: Annotated[str, AfterValidator(_http_url)] = "http://127.0.0.1:8765/callback"
    # OAuth endpoints of `cmamd auth` (docs/protocol.md §2); tests point them at the simulator
    auth_url: Annotated[str, AfterValidator(_oauth_url)] = "https://openapi.ctrader.com/apps/auth"
    token_url: Annotated[str, AfterValidator(_oauth_url)] = "https://openapi.ctrader.com/apps/token"
    live_host: Host = "live.ctraderapi.com"
    demo_host: Host = "demo.ctraderapi.com"
    port: Annotated[int, Field(ge=1, le=65535)] = 5035
    max_rps: int = MAX_RPS
    # added to the server's 1 s rate window: what the path's delay variation needs
    rate_margin_s: Annotated[float, Field(ge=0, le=MAX_MARGIN_S)] = DEFAULT_MARGIN_S
    connections: Connections = Field(default_factory=Connections)
    tls: bool = True
    ca_file: ConfigPath | None = None
    request_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    heartbeat_interval_s: PositiveSeconds = MAX_HEARTBEAT_S
    silence_timeout_s: Annotated[float, Field(gt=0, le=MAX_SILENCE_TIMEOUT_S)] = 30.0

    _client_secret: SecretStr = PrivateAttr(default=SecretStr(""))

    @field_validator("max_rps")
    @classmethod
    def _max_rps(cls, value: int) -> int:
        if value > MAX_RPS:
            raise ValueError(
                f"the Open API allows at most {MAX_RPS} requests per second per connection"
            )
        if value < 1:
            raise ValueError("at least 1 request per second")
        return value

    @field_validator("heartbeat_interval_s")
    @classmethod
    def _heartbeat(cls, value: float) -> float:
        if value > MAX_HEARTBEAT_S:
            raise ValueError(
                f"the Open API drops connections without a heartbeat at least every "
                f"{MAX_HEARTBEAT_S:g} s"
            )
        return value

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> Self:
        secret, problems = resolve_secret(self, "client_secret", info, required=True)
        if self.silence_timeout_s <= self.heartbeat_interval_s:
            problems.append((("silence_timeout_s",), "must be longer than heartbeat_interval_s"))
        if self.port == CTRADER_JSON_PORT and any(
            host.endswith("ctraderapi.com") for host in (self.live_host, self.demo_host)
        ):
            problems.append((("port",), "5036 is the JSON port; cmamd speaks protobuf on 5035"))
        if self.ca_file is not None and self.ca_file.exists() and not self.ca_file.is_file():
            problems.append((("ca_file",), f"{self.ca_file} is not a regular file"))
        elif self.ca_file is not None:
            # load it now so that check-config, not the first connection, finds a bad bundle
            try:
                ssl.create_default_context().load_verify_locations(cafile=self.ca_file)
            except ssl.SSLError as exc:
                problems.append((("ca_file",), f"{self.ca_file} is not a PEM CA bundle: {exc}"))
            except OSError as exc:
                problems.append((("ca_file",), f"cannot read {self.ca_file}: {exc.strerror}"))
        if problems:
            raise LocatedProblems(problems)
        if secret is None:  # resolve_secret reports a missing required secret as a problem
            raise LocatedProblems([(("client_secret",), "missing")])
        self._client_secret = secret
        return self

    @property
    def resolved_client_secret(self) -> SecretStr:
        return self._client_secret

    def host_for(self, live: bool) -> str:
        return self.live_host if live else self.demo_host

    def url_for(self, live: bool) -> str:
        host = self.host_for(live)
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}"

    def connections_for(self, live: bool) -> int:
        return self.connections.live if live else self.connections.demo

    def ssl_context(self) -> ssl.SSLContext | None:
        """The verifying TLS context (plus ``ca_file``), or None when ``tls`` is off."""
        if not self.tls:
            return None
        context = ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(cafile=self.ca_file)
        return context


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: JSON lines (for journald) unless stdout is a terminal
    format: Literal["auto", "json", "console"] = "auto"


class AccountConfig(Section):
    name: AccountName
    account_id: Annotated[int, Field(gt=0, lt=2**63)]  # ctidTraderAccountId, not the trader login
    live: bool
    enabled: bool = True
    # Bootstrap tokens, used only while the state store holds none for this account.
    access_token_file: ConfigPath | None = None
    access_token_credential: CredentialName | None = None
    access_token: SecretStr | None = None
    refresh_token_file: ConfigPath | None = None
    refresh_token_credential: CredentialName | None = None
    refresh_token: SecretStr | None = None

    _access_token: SecretStr | None = PrivateAttr(default=None)
    _refresh_token: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> Self:
        access, problems = resolve_secret(self, "access_token", info, required=False)
        refresh, refresh_problems = resolve_secret(self, "refresh_token", info, required=False)
        problems += refresh_problems
        if problems:
            raise LocatedProblems(problems)
        self._access_token, self._refresh_token = access, refresh
        return self

    @property
    def environment(self) -> Literal["demo", "live"]:
        return "live" if self.live else "demo"

    @property
    def initial_access_token(self) -> SecretStr | None:
        return self._access_token

    @property
    def initial_refresh_token(self) -> SecretStr | None:
        return self._refresh_token


class Config(Section):
    api: ApiConfig
    state_dir: ConfigPath  # defaults to $STATE_DIRECTORY (systemd) or /var/lib/cmamd
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    # drain budget on SIGTERM; keep it below the unit's TimeoutStopSec
    shutdown_timeout_s: Annotated[float, Field(gt=0, le=600)] = 20.0
    # periodic light reconcile of every account: finds orphans and missed copies
    audit_interval_s: Annotated[float, Field(ge=1, le=86400)] = 180.0
    accounts: Annotated[list[AccountConfig], Field(min_length=1)]
    copy_rules: list[CopyRule] = Field(default_factory=list, alias="copy")
    control: operating.ControlConfig = Field(default_factory=operating.ControlConfig)
    groups: list[operating.AccountGroup] = Field(default_factory=list)
    alerts: operating.AlertsConfig = Field(default_factory=operating.AlertsConfig)
    metrics: operating.MetricsConfig | None = None  # off unless configured

    @model_validator(mode="before")
    @classmethod
    def _default_state_dir(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and "state_dir" not in data:
            # systemd's StateDirectory= exports the path; colon-separated when several
            state = LoadContext.of(info).environ.get("STATE_DIRECTORY", "").split(":")[0]
            data = {**data, "state_dir": Path(state) if state else DEFAULT_STATE_DIR}
        return data

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        problems = crosscheck.problems(self) + operating.problems(self)
        if problems:
            raise LocatedProblems(problems)
        return self

    def account(self, name: str) -> AccountConfig:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)

    @property
    def enabled_accounts(self) -> list[AccountConfig]:
        return [account for account in self.accounts if account.enabled]

    def warnings(self) -> list[tuple[Loc, str]]:
        """Legal but probably unintended or unsafe settings, for check-config and reloads."""
        return crosscheck.warnings(self) + operating.warnings(self) + placeholders.warnings(self)

    def secret_values(self) -> list[str]:
        """Every secret held, for log redaction; never print these."""
        values: list[SecretStr | None] = [self.api.resolved_client_secret]
        for account in self.accounts:
            values += [account.initial_access_token, account.initial_refresh_token]
        if self.alerts.telegram is not None:
            values.append(self.alerts.telegram.resolved_token)
        return [value.get_secret_value() for value in values if value is not None]
