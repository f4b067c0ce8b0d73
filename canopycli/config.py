"""Connector configs: YAML (config_yaml.py) -> environment expansion -> pydantic models -> semantic checks.

A connector speaks one of two APIs (``api:``): the batch ``webhook`` (the default) or Deployteq's
``soap`` API, per profile. Both are one ``Connector`` model, so the webhook code reads the settings
it always read; the keys of one API are errors on a connector of the other (``connector_rules``).

Unknown keys are errors. Every problem is collected (not just the first) and reported with
its YAML path and line, e.g. ``canopycli.yaml:4: connectors.main.endpoint: ...``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import unicodedata
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .config_yaml import MAX_CONFIG_BYTES, Loc, load_yaml, too_big, where
from .errors import ConfigError, StateError, UsageError, register_secret

DEFAULT_CONFIG = "canopycli.yaml"
CONFIG_ENV = "CANOPYCLI_CONFIG"
MAX_BATCH = 600  # the connector's documented ceiling ("500-600 profiles per batch")
MAX_BODY_BYTES = 6_000_000  # "a JSON message up to 6 MB"; decimal MB, the safe reading

ParamType = Literal["string", "number", "integer", "boolean", "date", "datetime", "gender", "optin", "yesno", "option"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ApiKind = Literal["webhook", "soap"]
Platform = Literal["secure", "login"]

# The keys that belong to one API; on a connector of the other they are config errors.
WEBHOOK_ONLY = ("endpoint", "auth", "batch_size", "max_body_bytes", "daily_limit", "partner_number")
SOAP_ONLY = ("platform", "soap_url", "soap_version", "auth_fault_codes")
DEFAULT_SOAP_VERSION = "1.24"  # campaign_getAllExecutable needs 1.22 or later


def _version_text(value: Any) -> Any:
    """``soap_version: 1.20`` is the YAML number 1.2: refuse a number rather than guess its digits."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise PydanticCustomError(
            "soap_version", 'write the version in quotes, e.g. soap_version: "1.24" (YAML reads 1.20 as the number 1.2)'
        )
    return value


class ConnectorRules(ValueError):
    """A connector breaks the rules of its API (``connector_rules``); ``problems``: (key, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in problems))
        self.problems = problems


class Connector(_Model):
    """One connector. With ``api: soap`` the webhook's keys are refused and these read as follows:
    ``endpoint`` is the SOAP address calls go to (``soap_url`` or the platform's, with
    ``?version=...&type=literal``: the journal and the quota key by it), ``customer_type`` is
    ``CLANG_ID`` (customer_id) or ``EMAIL`` (email), and ``daily_limit`` is None (no known quota)."""

    api: ApiKind = "webhook"
    webhook_url: str | None = Field(None, alias="endpoint")  # required for the webhook: see ``endpoint``
    token: SecretStr
    identifier: Literal["hashed_email", "customer_id", "email"]
    auth: Literal["query", "bearer"] = "query"
    batch_size: int = Field(500, ge=1, le=MAX_BATCH)
    timeout: float = Field(30.0, gt=0, le=600)
    retries: int = Field(3, ge=0, le=10)
    backoff: float = Field(1.0, ge=0, le=60)  # first retry waits about this long, then doubles
    concurrency: int = Field(4, ge=1, le=32)
    partner_number: int | None = None
    daily_limit: int | None = Field(50_000, ge=1)  # null for Webhook Pro (no limit)
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1_000, le=MAX_BODY_BYTES)
    # SOAP only
    platform: Platform = "secure"
    soap_url: str | None = None  # the base address without a query; overrides the platform's
    soap_version: Annotated[str, BeforeValidator(_version_text)] = Field(
        DEFAULT_SOAP_VERSION, min_length=1, max_length=32, pattern=r"^[0-9A-Za-z][0-9A-Za-z.-]*$"
    )
    auth_fault_codes: tuple[int, ...] = ()  # SOAP fault codes that mean "credentials rejected"

    @model_validator(mode="wrap")
    @classmethod
    def _api_rules(cls, data: Any, handler: Any) -> Any:
        soap = isinstance(data, dict) and data.get("api") == "soap"
        if soap and "daily_limit" not in data:
            data = {**data, "daily_limit": None}  # no daily request quota is known for SOAP
        model = handler(data)
        problems = connector_rules(data) if isinstance(data, dict) else []
        if soap:  # the injected daily_limit is no problem of the user's
            problems = [p for p in problems if p[0] != "daily_limit" or data["daily_limit"] is not None]
        if problems:
            raise ConnectorRules(problems)
        return model

    @property
    def is_soap(self) -> bool:
        return self.api == "soap"

    @property
    def soap_base(self) -> str:
        """The SOAP base address (no query): ``soap_url``, or the platform's."""
        from .deployteq.soap import PLATFORMS  # lazily: the client imports the config

        return self.soap_url if self.soap_url is not None else PLATFORMS[self.platform]

    @property
    def endpoint(self) -> str:
        """Where requests go: the webhook URL, or the SOAP address with its version."""
        if self.api == "soap":
            from .deployteq.soap import soap_address

            return soap_address(self.soap_base, self.soap_version)
        assert self.webhook_url is not None  # connector_rules requires it
        return self.webhook_url

    @property
    def shown_endpoint(self) -> str:
        """``endpoint`` for messages, credentials masked (the SOAP query is ours and kept whole)."""
        if self.api == "soap":
            return redact_url(self.soap_base) + self.endpoint[len(self.soap_base) :]
        return redact_url(self.endpoint)

    @property
    def customer_type(self) -> str:
        if self.identifier == "email":
            return "EMAIL"
        return "HASHED_EMAIL" if self.identifier == "hashed_email" else "CLANG_ID"

    @property
    def effective_partner_number(self) -> int:
        if self.partner_number is not None:
            return self.partner_number
        return 1022 if self.identifier == "hashed_email" else 1020


def connector_rules(conn: dict[str, Any]) -> list[tuple[str, str]]:
    """What the API of a connector (``api:``) says about its other keys, as (key, message)."""
    out: list[tuple[str, str]] = []
    identifier = conn.get("identifier")
    if conn.get("api") == "soap":
        out += [
            (k, f"{k} is a webhook setting; a SOAP connector (api: soap) does not take it")
            for k in WEBHOOK_ONLY
            if k in conn
        ]
        if "platform" in conn and "soap_url" in conn:
            out.append(("soap_url", "give platform or soap_url, not both (soap_url is the whole base address)"))
        if identifier == "hashed_email":
            out.append(
                (
                    "identifier",
                    "hashed_email cannot work over SOAP: a hash cannot be looked up or mailed; "
                    "use customer_id (the Deployteq externalId) or email (the plain address)",
                )
            )
    elif conn.get("api", "webhook") == "webhook":
        out += [(k, f"{k} is a SOAP setting; add api: soap, or remove it") for k in SOAP_ONLY if k in conn]
        if "endpoint" not in conn:
            out.append(("endpoint", "Field required"))
        if identifier == "email":
            out.append(
                (
                    "identifier",
                    "email is for SOAP connectors (api: soap); the webhook takes hashed_email "
                    "(canopycli hashes the address) or customer_id",
                )
            )
    return out


class Param(_Model):
    name: str = Field(min_length=1, max_length=256)
    column: str | None = None  # source column; defaults to ``name``
    type: ParamType = "string"
    max_length: int | None = Field(256, ge=1)  # for string/option values; null: no limit

    @property
    def source(self) -> str:
        return self.column if self.column is not None else self.name


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> Any:
    """``90s``, ``20m``, ``1h``, ``500ms`` or a number of seconds -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 20m or 1h")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.fullmatch(value.strip())
        if m is not None and m.group(1).isascii():
            return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    raise ValueError("expected a duration such as 90s, 20m or 1h (a number with ms, s, m or h)")


def _campaign(value: Any) -> Any:
    """A campaign name, or its id as a number (``campaign: 42``) or numeric text (``"42"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise PydanticCustomError("campaign", "a campaign id is a positive number")
        return value
    if isinstance(value, str):
        if not value.strip():
            raise PydanticCustomError("campaign", "is empty: give a campaign name or id (see `canopycli campaigns`)")
        if len(value) > 256:
            raise PydanticCustomError("campaign", "is longer than 256 characters: give a campaign name or id")
        return value
    if value is None:
        return value
    raise PydanticCustomError("campaign", "expected a campaign name or id (see `canopycli campaigns`)")


def _id_text(value: Any) -> Any:
    """An External ID written as a YAML number (``external_id: 2582431``) is the same text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=7 * 86400)]


def campaign_id(campaign: int | str) -> int | None:
    """A segment's ``campaign:`` as an id (``42`` or ``"42"``), or None for a name."""
    if isinstance(campaign, int):
        return campaign
    text = campaign.strip()
    return int(text) if text.isascii() and text.isdigit() else None


class Segment(_Model):
    connector: str
    id_column: str = Field(min_length=1)
    name: str | None = Field(None, min_length=1)  # segmentName on the wire; default: the key
    status_column: str = "status"
    params: list[Param] | None = None  # None: every other column, sent as string
    empty: Literal["skip", "send"] = "skip"
    # The relay: the custom connector's External ID (partnerAudienceId) that selects this segment.
    external_id: Annotated[str | None, BeforeValidator(_id_text)] = Field(None, min_length=1, max_length=256)
    # SOAP: the campaign profiles join, by name or id (``canopycli campaigns`` lists them)
    campaign: Annotated[int | str | None, BeforeValidator(_campaign)] = None
    # engagement types that hold a profile back (NEW and MODIFIED): bounce (hard), complaint
    suppress: list[Literal["bounce", "complaint"]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_param_names(self) -> Segment:
        if self.params:
            names = [p.name for p in self.params]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"param names must be unique; repeated: {', '.join(dupes)}")
        return self


class CopernicaSettings(_Model):
    """How the relay authenticates Copernica's callbacks (``relay.copernica``)."""

    verify: bool = True  # false: the route takes ?token=<relay token> instead (weaker)
    public_key_file: str | None = None  # pinned PEM key(s) instead of the DNS lookup; relative to the config
    max_skew: Duration = 300.0  # how old or new a signed Date may be


RELAY_LISTEN = "127.0.0.1:8787"
MIN_RELAY_TOKEN = 16


class RelaySettings(_Model):
    """The ``relay:`` block: the HTTP service that queues profile events and flushes them."""

    listen: str = RELAY_LISTEN
    tokens: list[SecretStr] = Field(default_factory=list)  # bearer tokens accepted on the inbound API
    flush_interval: Duration = 1200.0
    max_body_bytes: int = Field(10_000_000, ge=1_000, le=100_000_000)
    header_timeout: Duration = 10.0  # a client that has not sent its request headers by then gets 408
    body_timeout: Duration = 30.0  # ... or its body
    tls_cert: str | None = None  # relative to the config
    tls_key: str | None = None
    copernica: CopernicaSettings = Field(default_factory=CopernicaSettings)


ENGAGEMENT_METRICS = ("sends", "opens", "clicks", "bounces", "complaints")


class EngagementSettings(_Model):
    """The ``engagements:`` block: Deployteq's Analytics Events API (OAuth2 client credentials)."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    token_url: str = "https://auth.clang.cloud/oauth2/token"
    api_url: str = "https://api.canopydeploy.net/analytics-events"
    scope: str = "analytics.events:read"
    metrics: list[str] = Field(default_factory=lambda: list(ENGAGEMENT_METRICS), min_length=1)  # the API's names
    page_size: int = Field(500, ge=1, le=10_000)
    timeout: float = Field(30.0, gt=0, le=600)
    retries: int = Field(3, ge=0, le=10)
    backoff: float = Field(1.0, ge=0, le=60)


class Config(_Model):
    connectors: dict[str, Connector] = Field(min_length=1)
    segments: dict[str, Segment] = Field(min_length=1)
    relay: RelaySettings | None = None
    engagements: EngagementSettings | None = None


class Resolved(BaseModel):
    """One segment with its connector: what a push needs."""

    model_config = ConfigDict(frozen=True)
    config_path: str
    connector_name: str
    connector: Connector
    segment_key: str
    segment: Segment
    # Every segment of the config, by key: an engine payload's partnerAudienceId may select any of them.
    segments: dict[str, Segment] = Field(default_factory=dict)

    @property
    def segment_name(self) -> str:
        return self.segment.name or self.segment_key


# --- locating the file -------------------------------------------------------------------


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else Path(DEFAULT_CONFIG)


# --- environment expansion ---------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, loc: tuple[str | int, ...], problems: list[tuple[tuple[str | int, ...], str]]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            got = os.environ.get(name)
            if got is None or (got == "" and default is not None):
                if default is not None:
                    return default
                problems.append(
                    (loc, f"environment variable {name} is not set (export it, or write ${{{name}:-default}})")
                )
                return ""
            return got

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, (*loc, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*loc, i), problems) for i, v in enumerate(value)]
    return value


# --- semantic checks pydantic cannot express ----------------------------------------------

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _odd_character(text: str) -> bool:
    """Whitespace, or a control/format character (a line break, a tab, a zero-width space, a BOM)."""
    return any(c.isspace() or unicodedata.category(c)[0] == "C" for c in text)


# A URL part that names a parameter: after ? & ; # or /, up to =. Values run to the next & ; #.
_URL_HEAD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:([^/?#]*)@)?[^/?#]*")
_URL_KEY = re.compile(r"[?&;#/]([^?&;#/=]*)=")
_URL_VALUE_END = re.compile(r"[&;#]")
_SECRET_KEY = re.compile(r"token|secret|passw|pwd|signature|credential|^sig$|key$|^auth|session", re.I)


def _key_name(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", urllib.parse.unquote(key).lower())


def redact_url(url: str) -> str:
    """The URL with credentials masked: the userinfo, and the value of every query, fragment or
    path parameter whose name looks like a token, key, secret, password, auth or signature."""
    head = _URL_HEAD.match(url)
    prefix, rest = (url[: head.end()], url[head.end() :]) if head else ("", url)
    if head and head.group(1) is not None:
        prefix = prefix[: head.start(1)] + "***" + prefix[head.end(1) :]
    parts, pos = [prefix], 0
    for m in _URL_KEY.finditer(rest):
        if m.start() < pos or not _SECRET_KEY.search(_key_name(m.group(1))):
            continue
        end = _URL_VALUE_END.search(rest, m.end())
        parts += [rest[pos : m.end()], "***"]
        pos = end.start() if end else len(rest)
    parts.append(rest[pos:])
    return "".join(parts)


def _token_parameter(url: str) -> str | None:
    """Where the URL carries a token parameter (any case, percent-encoded or not), if it does."""
    head = _URL_HEAD.match(url)
    rest = url[head.end() :] if head else url
    for tail in (rest, urllib.parse.unquote(rest)):
        for m in _URL_KEY.finditer(tail):
            if "token" in _key_name(m.group(1)):
                before = tail[: m.start() + 1]
                if "#" in before:
                    return "in its #fragment"
                return "query parameter" if "?" in before else "in its path"
    return None


def endpoint_problem(endpoint: str, example: str = "https://webhook.myclang.com/...") -> str | None:
    if _odd_character(endpoint):
        return (
            "contains whitespace or a control character (a stray space or line break from a copy-paste "
            "or an environment variable?); remove it"
        )
    try:
        url = httpx.URL(endpoint)
    except Exception:  # httpx raises several types for malformed URLs
        return "is not a valid URL"
    if url.scheme not in ("http", "https") or not url.host:
        return f"is not a valid http(s) URL (expected {example})"
    where = _token_parameter(endpoint)
    if where:
        where = "a token= query parameter" if where == "query parameter" else f"a token= parameter {where}"
        return f"carries {where}; move the token to `token:` (e.g. token: ${{CANOPY_TOKEN}}) and remove it from the URL"
    if url.userinfo:
        return "carries credentials in the URL; move the token to `token:`"
    if url.scheme != "https" and not is_loopback(url.host):
        return "must use https (plain http is allowed only for loopback hosts such as 127.0.0.1)"
    return None


def soap_url_problem(url: str) -> str | None:
    """``endpoint_problem``'s rules, and no query: the client adds ``?version=...&type=literal``."""
    bad = endpoint_problem(url, example="https://secure.myclang.com/app/api/soap/public/index.php")
    if bad:
        return bad
    if "?" in url or "#" in url:
        return (
            "is the base address without a query (canopycli adds ?version=<soap_version>&type=literal); "
            "remove everything from the '?' or '#'"
        )
    return None


def campaign_rules(seg: dict[str, Any], ref: str, conn: dict[str, Any]) -> list[tuple[Loc, str]]:
    """A segment's ``campaign:`` against its connector's API: required for SOAP, refused for the webhook."""
    if conn.get("api") == "soap" and seg.get("campaign") is None:
        return [
            (
                ("campaign",),
                f"Field required: connector {ref!r} speaks SOAP, so the segment names the campaign its "
                "profiles join (a name or id from `canopycli campaigns`)",
            )
        ]
    if conn.get("api", "webhook") == "webhook" and seg.get("campaign") is not None:
        return [
            (
                ("campaign",),
                f"campaign is for SOAP connectors; connector {ref!r} is a webhook, whose mapping in "
                "Deployteq decides what happens to the profiles (remove campaign:, or use a connector with api: soap)",
            )
        ]
    return []


def token_problem(token: str, auth: object) -> str | None:
    """What is wrong with a token, never quoting it."""
    if not token.strip():
        return "token is empty"
    if _odd_character(token):
        return (
            "token contains whitespace or a control character (a stray line break from `$(cat file)`, "
            "or a copy-paste?); remove it"
        )
    if auth == "bearer" and not token.isascii():
        return (
            "token has a non-ASCII character, which an Authorization header cannot carry (auth: bearer); "
            "check it for a copy-paste accident such as a curly quote or an accented letter"
        )
    return None


# --- loading ------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    p = config_path(path)
    shown = str(p)
    try:
        with open(p, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)  # bounded: the path may be /dev/zero or a huge file
    except FileNotFoundError:
        raise ConfigError(shown, [f"file not found (create it, pass --config PATH, or set ${CONFIG_ENV})"]) from None
    except OSError as e:
        raise ConfigError(shown, [f"cannot read the file: {e.strerror or e.__class__.__name__}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(shown, [too_big(shown)])
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(shown, [f"{shown}: the file is UTF-16; save it as UTF-8"])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(shown, [f"{shown}:{line}: the file is not UTF-8 text; save it as UTF-8"]) from None
    return parse_config(text, shown)


def parse_config(text: str, shown: str = DEFAULT_CONFIG) -> Config:
    raw, index, repeated = load_yaml(text, shown)
    if not isinstance(raw, dict):
        raise ConfigError(shown, [f"{shown}: expected a mapping with `connectors:` and `segments:`"])
    found: list[tuple[Loc, str]] = []
    expanded = _expand(raw, (), found)  # once: a value that contains ${...} is not expanded again
    env_locs = {loc for loc, _ in found}
    found += repeated

    def report(loc: Loc, msg: str) -> None:
        if loc not in env_locs:  # an unset variable already explains this value
            found.append((loc, msg))

    connectors = expanded.get("connectors") if isinstance(expanded.get("connectors"), dict) else {}
    # A key the connector's API refuses is reported as that, not also for its value.
    refused = {
        ("connectors", n, k) for n, c in connectors.items() if isinstance(c, dict) for k, _ in connector_rules(c)
    }
    config = None
    try:
        config = Config.model_validate(expanded)
    except ValidationError as e:
        for err in e.errors(include_url=False, include_input=False):
            msg = err["msg"]
            if isinstance(err.get("ctx", {}).get("error"), ConnectorRules) or tuple(err["loc"][:3]) in refused:
                continue  # the same rules run on the raw data below, each at its key's line
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see the config reference in the README)"
            report(tuple(err["loc"]), msg)
    # Checks pydantic cannot express run on the raw data too, so one pass lists every problem.
    for name, conn in connectors.items():
        if not isinstance(conn, dict):
            continue
        token = conn.get("token")
        if isinstance(token, str):
            register_secret(token)
            bad = token_problem(token, conn.get("auth", "query"))
            if bad:
                report(("connectors", name, "token"), bad)
        for key, msg in connector_rules(conn):
            report(("connectors", name, key), msg)
        endpoint = conn.get("endpoint")
        bad = endpoint_problem(endpoint) if isinstance(endpoint, str) else None
        if bad:
            report(("connectors", name, "endpoint"), f"endpoint {bad}")
        soap_url = conn.get("soap_url")
        bad = soap_url_problem(soap_url) if isinstance(soap_url, str) else None
        if bad:
            report(("connectors", name, "soap_url"), f"soap_url {bad}")
    segments = expanded.get("segments") if isinstance(expanded.get("segments"), dict) else {}
    external_ids: dict[str, str] = {}
    for key, seg in segments.items():
        ref = seg.get("connector") if isinstance(seg, dict) else None
        if isinstance(ref, str) and ref not in connectors:
            known = ", ".join(sorted(connectors)) or "none"
            report(("segments", key, "connector"), f"unknown connector {ref!r} (known: {known})")
        elif isinstance(ref, str) and isinstance(seg, dict) and isinstance(connectors[ref], dict):
            for loc, msg in campaign_rules(seg, ref, connectors[ref]):
                report(("segments", key, *loc), msg)
        ext = _id_text(seg.get("external_id")) if isinstance(seg, dict) else None
        if isinstance(ext, str) and ext in external_ids:
            report(("segments", key, "external_id"), f"segment {external_ids[ext]!r} has the same external_id")
        elif isinstance(ext, str):
            external_ids[ext] = key
    engagements = expanded.get("engagements")
    if isinstance(engagements, dict):
        secret = engagements.get("client_secret")
        if isinstance(secret, str):
            register_secret(secret)
        for key in ("token_url", "api_url"):
            url = engagements.get(key)
            bad = endpoint_problem(url) if isinstance(url, str) else None
            if bad:
                report(("engagements", key), f"{key} {bad}")
    relay = expanded.get("relay")
    for loc, msg in relay_problems(relay) if isinstance(relay, dict) else []:
        report(loc, msg)
    if found or config is None:
        found.sort(key=lambda f: index.get(f[0], 0))
        raise ConfigError(shown, [f"{where(shown, index, loc)}: {msg}" for loc, msg in found])
    return config


def listen_address(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8787`` for IPv6) -> (host, port); ValueError saying what is wrong."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, e.g. {RELAY_LISTEN}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (port.isascii() and port.isdigit() and int(port) < 65536):
        raise ValueError(f"port {port!r} is not a number from 0 (any free port) to 65535")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"expected HOST:PORT, e.g. {RELAY_LISTEN}")
    return host, int(port)


def relay_problems(relay: dict[str, Any]) -> list[tuple[Loc, str]]:
    """What pydantic cannot say about a ``relay:`` block: the listen address, weak tokens, TLS."""
    out: list[tuple[Loc, str]] = []
    listen = relay.get("listen")
    if isinstance(listen, str):
        try:
            listen_address(listen)
        except ValueError as e:
            out.append((("relay", "listen"), str(e)))
    tokens = relay.get("tokens")
    for i, token in enumerate(tokens if isinstance(tokens, list) else []):
        if not isinstance(token, str):
            continue
        register_secret(token)
        if len(token) < MIN_RELAY_TOKEN:
            out.append((("relay", "tokens", i), f"a relay token needs at least {MIN_RELAY_TOKEN} characters"))
        elif not token.isascii() or any(not c.isprintable() or c.isspace() for c in token):
            out.append((("relay", "tokens", i), "a relay token must be printable ASCII without spaces"))
    if (relay.get("tls_cert") is None) != (relay.get("tls_key") is None):
        out.append((("relay",), "tls_cert and tls_key go together: give both or neither"))
    return out


def resolve(config: Config, segment: str | None, shown: str) -> Resolved:
    """Pick the segment to push: the one named, or the only one configured.

    A missing or unknown ``--segment`` is a usage error (the config itself is fine)."""
    names = sorted(config.segments)
    listed = ", ".join(names)
    if segment is None:
        if len(names) != 1:
            raise UsageError(f"the config has {len(names)} segments; choose one with --segment: {listed}")
        segment = names[0]
    if segment not in config.segments:
        by_folded = {n.casefold(): n for n in names}
        close = difflib.get_close_matches(segment.casefold(), list(by_folded), n=1)
        hint = f"Did you mean --segment {by_folded[close[0]]}?" if close else None
        raise UsageError(f"no segment {segment!r} in {shown}; the segments are: {listed}", hint=hint)
    seg = config.segments[segment]
    return Resolved(
        config_path=shown,
        connector_name=seg.connector,
        connector=config.connectors[seg.connector],
        segment_key=segment,
        segment=seg,
        segments=config.segments,
    )


def soap_connector(config: Config, name: str | None, shown: str) -> tuple[str, Connector]:
    """The SOAP connector named, or the only one: a usage error when there is none or a choice to make."""
    soap = sorted(n for n, c in config.connectors.items() if c.is_soap)
    listed = ", ".join(soap)
    if name is None:
        if not soap:
            raise UsageError(
                f"{shown} has no SOAP connector (api: soap); only a SOAP connector has a campaign list",
                hint='Add one: see "Real time (SOAP)" in the README.',
            )
        if len(soap) > 1:
            raise UsageError(f"{shown} has {len(soap)} SOAP connectors; choose one with --connector: {listed}")
        name = soap[0]
    if name not in config.connectors:
        close = difflib.get_close_matches(name, sorted(config.connectors), n=1)
        raise UsageError(
            f"no connector {name!r} in {shown}; the SOAP connectors are: {listed or 'none'}",
            hint=f"Did you mean --connector {close[0]}?" if close else None,
        )
    if not config.connectors[name].is_soap:
        raise UsageError(
            f"connector {name!r} is a webhook, which has no campaign list; the SOAP connectors are: {listed or 'none'}"
        )
    return name, config.connectors[name]


def resolve_run(
    config: Config, connector: str, segment_key: str, segment: dict[str, Any], shown: str, run_id: str | None = None
) -> Resolved:
    """A journaled run's segment (as it was when the run started) with today's connector from ``config``.

    ``retry`` sends with the connection settings and token of the current config, and the
    mapping the run's batches were built with, so a rebuilt batch comes out identical."""
    if connector not in config.connectors:
        raise StateError(
            f"{f'run {run_id}' if run_id else 'the run'} used connector {connector!r}, which {shown} does not define",
            hint="Retry with the config the run used (--config).",
        )
    return Resolved(
        config_path=shown,
        connector_name=connector,
        connector=config.connectors[connector],
        segment_key=segment_key,
        segment=Segment.model_validate(segment),
    )
