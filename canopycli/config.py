"""Connector configs: YAML -> environment expansion -> pydantic models -> semantic checks.

Unknown keys are errors. Every problem is collected (not just the first) and reported with
its YAML path and line, e.g. ``canopycli.yaml:4: connectors.main.endpoint: ...``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from .errors import ConfigError, register_secret

DEFAULT_CONFIG = "canopycli.yaml"
CONFIG_ENV = "CANOPYCLI_CONFIG"
MAX_BATCH = 600  # the connector's documented ceiling ("500-600 profiles per batch")
MAX_BODY_BYTES = 6_000_000  # "a JSON message up to 6 MB"; decimal MB, the safe reading

ParamType = Literal["string", "number", "integer", "boolean", "date", "datetime", "gender", "optin", "yesno", "option"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Connector(_Model):
    endpoint: str
    token: SecretStr
    identifier: Literal["hashed_email", "customer_id"]
    auth: Literal["query", "bearer"] = "query"
    batch_size: int = Field(500, ge=1, le=MAX_BATCH)
    timeout: float = Field(30.0, gt=0, le=600)
    retries: int = Field(3, ge=0, le=10)
    backoff: float = Field(1.0, ge=0, le=60)  # first retry waits about this long, then doubles
    concurrency: int = Field(4, ge=1, le=32)
    partner_number: int | None = None
    daily_limit: int | None = Field(50_000, ge=1)  # null for Webhook Pro (no limit)
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1_000, le=MAX_BODY_BYTES)

    @property
    def customer_type(self) -> str:
        return "HASHED_EMAIL" if self.identifier == "hashed_email" else "CLANG_ID"

    @property
    def effective_partner_number(self) -> int:
        if self.partner_number is not None:
            return self.partner_number
        return 1022 if self.identifier == "hashed_email" else 1020


class Param(_Model):
    name: str = Field(min_length=1, max_length=256)
    column: str | None = None  # source column; defaults to ``name``
    type: ParamType = "string"
    max_length: int | None = Field(256, ge=1)  # for string/option values; null: no limit

    @property
    def source(self) -> str:
        return self.column if self.column is not None else self.name


class Segment(_Model):
    connector: str
    id_column: str = Field(min_length=1)
    name: str | None = Field(None, min_length=1)  # segmentName on the wire; default: the key
    status_column: str = "status"
    params: list[Param] | None = None  # None: every other column, sent as string
    empty: Literal["skip", "send"] = "skip"

    @model_validator(mode="after")
    def _unique_param_names(self) -> Segment:
        if self.params:
            names = [p.name for p in self.params]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"param names must be unique; repeated: {', '.join(dupes)}")
        return self


class Config(_Model):
    connectors: dict[str, Connector] = Field(min_length=1)
    segments: dict[str, Segment] = Field(min_length=1)


class Resolved(BaseModel):
    """One segment with its connector: what a push needs."""

    model_config = ConfigDict(frozen=True)
    config_path: str
    connector_name: str
    connector: Connector
    segment_key: str
    segment: Segment

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


# --- YAML line numbers for error locations -------------------------------------------------


def _line_index(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each YAML path to its 1-based line, so errors can point into the file."""
    index: dict[tuple[str | int, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index

    def walk(node: yaml.Node | None, loc: tuple[str | int, ...]) -> None:
        if node is None:
            return
        index.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, val in node.value:
                k = key.value
                index[(*loc, k)] = key.start_mark.line + 1
                walk(val, (*loc, k))
                index[(*loc, k)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*loc, i))

    walk(root, ())
    return index


def _where(path: str, index: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> str:
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    probe = loc
    while probe and probe not in index:
        probe = probe[:-1]
    line = index.get(probe)
    return f"{path}:{line}: {dotted}" if line else f"{path}: {dotted}"


# --- semantic checks pydantic cannot express ----------------------------------------------

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def endpoint_problem(endpoint: str) -> str | None:
    try:
        url = httpx.URL(endpoint)
    except Exception:  # httpx raises several types for malformed URLs
        return "is not a valid URL"
    if url.scheme not in ("http", "https") or not url.host:
        return "is not a valid http(s) URL (expected https://webhook.myclang.com/...)"
    if "token" in url.params:
        return "carries a token= query parameter; move the token to `token:` (e.g. token: ${CANOPY_TOKEN}) and remove it from the URL"
    if url.userinfo:
        return "carries credentials in the URL; move the token to `token:`"
    if url.scheme != "https" and not is_loopback(url.host):
        return "must use https (plain http is allowed only for loopback hosts such as 127.0.0.1)"
    return None


# --- loading ------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    p = config_path(path)
    shown = str(p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(shown, [f"file not found (create it, pass --config PATH, or set ${CONFIG_ENV})"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(shown, [f"cannot read the file: {e.__class__.__name__}"]) from None
    return parse_config(text, shown)


def parse_config(text: str, shown: str = DEFAULT_CONFIG) -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(shown, [f"{where}: invalid YAML: {problem}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(shown, [f"{shown}: expected a mapping with `connectors:` and `segments:`"])
    index = _line_index(text)
    found: list[tuple[tuple[str | int, ...], str]] = []
    expanded = _expand(raw, (), found)
    env_locs = {loc for loc, _ in found}

    def report(loc: tuple[str | int, ...], msg: str) -> None:
        if loc not in env_locs:  # an unset variable already explains this value
            found.append((loc, msg))

    config = None
    try:
        config = Config.model_validate(expanded)
    except ValidationError as e:
        for err in e.errors(include_url=False, include_input=False):
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see the config reference in the README)"
            report(tuple(err["loc"]), msg)
    # Checks pydantic cannot express run on the raw data too, so one pass lists every problem.
    connectors = expanded.get("connectors") if isinstance(expanded.get("connectors"), dict) else {}
    for name, conn in connectors.items():
        if not isinstance(conn, dict):
            continue
        token = conn.get("token")
        if isinstance(token, str):
            register_secret(token)
            if not token.strip():
                report(("connectors", name, "token"), "token is empty")
        endpoint = conn.get("endpoint")
        bad = endpoint_problem(endpoint) if isinstance(endpoint, str) else None
        if bad:
            report(("connectors", name, "endpoint"), f"endpoint {bad}")
    segments = expanded.get("segments") if isinstance(expanded.get("segments"), dict) else {}
    for key, seg in segments.items():
        ref = seg.get("connector") if isinstance(seg, dict) else None
        if isinstance(ref, str) and ref not in connectors:
            known = ", ".join(sorted(connectors)) or "none"
            report(("segments", key, "connector"), f"unknown connector {ref!r} (known: {known})")
    if found or config is None:
        found.sort(key=lambda f: index.get(f[0], 0))
        raise ConfigError(shown, [f"{_where(shown, index, loc)}: {msg}" for loc, msg in found])
    return config


def resolve(config: Config, segment: str | None, shown: str) -> Resolved:
    """Pick the segment to push: the one named, or the only one configured."""
    if segment is None:
        if len(config.segments) != 1:
            names = ", ".join(sorted(config.segments))
            raise ConfigError(shown, [f"the config has several segments; choose one with --segment ({names})"])
        segment = next(iter(config.segments))
    if segment not in config.segments:
        names = ", ".join(sorted(config.segments))
        raise ConfigError(shown, [f"no segment {segment!r} in the config (known: {names})"])
    seg = config.segments[segment]
    return Resolved(
        config_path=shown,
        connector_name=seg.connector,
        connector=config.connectors[seg.connector],
        segment_key=segment,
        segment=seg,
    )
