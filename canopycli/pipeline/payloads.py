"""Payload adapters: the event shapes other systems send, turned into records.

A *record* is shaped like a line of push's JSONL input for one segment: ``{id_column: identifier,
status_column: NEW|MODIFIED|REMOVED, param: value, ...}``, so the ``Normalizer`` validates and
hashes it exactly as it does a file's line. Two shapes are adapted:

- the custom connector's **engine payload** (``partnerAudienceId`` selects the segment, each of
  ``partnerIds`` is one profile, ``data`` and ``audienceVariables`` are the params);
- **Copernica callbacks**: the legacy Callback URL JSON (``id``, ``action``, ``fields``,
  ``updated``, ``interests``) and Marketing Suite webhooks (``type``, ``profile``, ``fields``,
  ``parameters``, ..., form-encoded: ``copernica_form`` decodes the body).

The relay (``relay/app.py``) calls these per request; ``push --format engine|copernica`` reads
the same payloads from JSON Lines files (``payload_records``). A payload that cannot be adapted
raises ``PayloadError``, whose text is the reason given back: it may name keys, never the value of
an identifier (no raw email address).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ..config import Segment
from ..errors import InputError
from .normalize import STATUSES
from .read import Source
from .records import Record, Unreadable

__all__ = [
    "MAX_FORM_FIELDS",
    "MAX_PARTNER_IDS",
    "PAYLOAD_FORMATS",
    "STATUS_KEYS",
    "PayloadError",
    "adapt_payloads",
    "copernica_form",
    "copernica_record",
    "engine_records",
    "payload_adapter",
    "payload_records",
    "payload_settings",
    "reading_format",
    "select_segment",
]

STATUS_KEYS = ("status", "r42Status")
MAX_PARTNER_IDS = 10_000  # per engine payload: one payload must not become an unbounded batch
MAX_FORM_FIELDS = 10_000  # per form body: parse_qsl refuses more before building them
PAYLOAD_FORMATS = ("engine", "copernica")

# Copernica's verbs -> the webhook's statuses (legacy ``action`` and Marketing Suite ``type``)
_ACTIONS = {"create": "NEW", "update": "MODIFIED", "delete": "REMOVED"}


class PayloadError(ValueError):
    """A payload the adapters cannot turn into records; ``str(e)`` is the reason (no raw email)."""


def _shown(text: object, limit: int = 60) -> str:
    """A key or a non-identifier value for a reason: quoted, cut short, and never an email address."""
    s = str(text)
    if "@" in s:
        return "(a value like an email address)"
    return repr(s if len(s) <= limit else s[:limit] + "...")


_KINDS: dict[type, str] = {dict: "object", list: "array", str: "text", int: "number", float: "number", bool: "boolean"}


def _kind(value: object) -> str:
    """A JSON value's kind, for a reason (never the value itself)."""
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)


# --- the custom connector's engine payload -----------------------------------------------


def select_segment(audience: str, segments: Mapping[str, Segment]) -> str | None:
    """The segment a ``partnerAudienceId`` selects: the one whose ``external_id`` equals it, else
    the one whose key, else whose name equals it (the External ID is free text in the CDP, and
    teams type the segment's name there as often as an id)."""
    for rule in (
        lambda k, s: s.external_id == audience,
        lambda k, s: k == audience,
        lambda k, s: s.name == audience,
    ):
        for key, seg in segments.items():
            if rule(key, seg):
                return key
    return None


def engine_records(
    payload: object, segments: Mapping[str, Segment], url_status: str | None
) -> tuple[str, list[dict[str, Any]]]:
    """``(segment key, one record per partnerId)`` for one engine payload.

    Params are ``data`` (audience-level) with ``audienceVariables`` (profile-level) on top; the
    status is the payload's ``status`` or ``r42Status``, else ``url_status`` (already checked by the
    caller), else NEW. The other keys (siteNumber, profileId, ...) describe the CDP side and are
    not sent."""
    if not isinstance(payload, dict):
        raise PayloadError(f"an engine payload is a JSON object (got {_kind(payload)})")
    key = select_segment(_audience(payload), segments)
    if key is None:
        raise PayloadError(
            f"partnerAudienceId {_shown(_audience(payload))} matches no segment "
            "(set external_id: on the segment it is for)"
        )
    segment = segments[key]
    ids = _partner_ids(payload.get("partnerIds"))
    status = _payload_status(payload) or url_status or "NEW"
    params = _engine_params(payload, segment)
    id_col, status_col = segment.id_column, segment.status_column
    return key, [{id_col: pid, status_col: status, **params} for pid in ids]


def _audience(payload: Mapping[str, Any]) -> str:
    value = payload.get("partnerAudienceId")
    if value is None:
        raise PayloadError("no partnerAudienceId: it selects the segment")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PayloadError(f"partnerAudienceId must be text or a whole number (got {_kind(value)})")
    return str(value).strip()


def _partner_ids(value: object) -> list[str]:
    if value is None:
        raise PayloadError("no partnerIds: the payload names no profile")
    if not isinstance(value, list):
        raise PayloadError(f"partnerIds must be an array (got {_kind(value)})")
    if not value:
        raise PayloadError("partnerIds is empty: the payload names no profile")
    if len(value) > MAX_PARTNER_IDS:
        raise PayloadError(f"partnerIds has {len(value)} entries; at most {MAX_PARTNER_IDS} per payload")
    ids: list[str] = []
    for i, pid in enumerate(value):
        if isinstance(pid, bool) or not isinstance(pid, (str, int)):
            raise PayloadError(f"partnerIds[{i}] must be text (got {_kind(pid)})")
        ids.append(str(pid))
    return ids


def _payload_status(payload: Mapping[str, Any]) -> str | None:
    """The payload's own status (``status`` or ``r42Status``; both must agree), upper-cased."""
    found: dict[str, str] = {}
    for key in STATUS_KEYS:
        value = payload.get(key)
        if value is None:
            continue
        s = value.strip().upper() if isinstance(value, str) else None
        if s not in STATUSES:
            raise PayloadError(f"{key} must be NEW, MODIFIED or REMOVED (got {_shown(value, 20)})")
        found[key] = s
    if len(set(found.values())) > 1:
        raise PayloadError("status and r42Status disagree: send one")
    return next(iter(found.values()), None)


def _engine_params(payload: Mapping[str, Any], segment: Segment) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in ("data", "audienceVariables"):  # profile-level values win over audience-level ones
        value = payload.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise PayloadError(f"{key} must be an object (got {_kind(value)})")
        params.update(value)
    _refuse_reserved(params, segment, "a variable")
    return params


def _refuse_reserved(params: Mapping[str, Any], segment: Segment, what: str) -> None:
    """A param named like the id or status column would replace the identifier or the status:
    refused, with what to change, rather than silently overwritten."""
    for column, role in ((segment.id_column, "id_column"), (segment.status_column, "status_column")):
        if column in params:
            raise PayloadError(
                f"{what} is named {_shown(column)}, the segment's {role}: rename it, or set another {role}"
            )


# --- Copernica callbacks -------------------------------------------------------------------


def copernica_record(payload: Mapping[str, object], segment: Segment) -> dict[str, Any]:
    """One record for a Copernica callback: a legacy Callback URL JSON object or a Marketing Suite
    webhook (as ``copernica_form`` decodes it, or the same keys as JSON).

    The status comes from ``action`` (legacy) or ``type`` (webhook); the fields are ``fields`` with
    the changed values on top (legacy ``updated``, webhook ``parameters``), so the record has the
    new values whichever of the two ``fields`` holds. The identifier is the field named by the
    segment's ``id_column``; the other fields are the params. ``interests`` are not sent: the
    webhook takes params, and a list of interests is not one."""
    if not isinstance(payload, Mapping):
        raise PayloadError(f"a Copernica callback is a JSON object or a form (got {_kind(payload)})")
    verb_key = "action" if "action" in payload else "type"
    status = _copernica_status(payload, verb_key)
    changes = "updated" if verb_key == "action" else "parameters"
    fields = {**_object(payload, "fields"), **_object(payload, changes)}
    id_col = segment.id_column
    identifier = fields.pop(id_col, None)
    if identifier is None or identifier == "":
        raise PayloadError(f"the callback has no field {_shown(id_col)} (the segment's id_column)")
    if isinstance(identifier, bool) or not isinstance(identifier, (str, int)):
        raise PayloadError(f"the callback's field {_shown(id_col)} must be text (got {_kind(identifier)})")
    _refuse_reserved(fields, segment, "a field")
    return {id_col: str(identifier), segment.status_column: status, **fields}


def _copernica_status(payload: Mapping[str, object], key: str) -> str:
    value = payload.get(key)
    if value is None:
        raise PayloadError("no action (Callback URL) or type (webhook): what happened to the profile is not said")
    verb = value.strip().lower() if isinstance(value, str) else None
    if verb not in _ACTIONS:
        raise PayloadError(f"{key} {_shown(value, 20)} is not a profile create, update or delete")
    return _ACTIONS[verb]


def _object(payload: Mapping[str, object], key: str) -> dict[str, Any]:
    value = payload.get(key)
    if value is None or value == "" or value == []:  # a form with no such field, or an empty PHP array
        return {}
    if not isinstance(value, Mapping):
        raise PayloadError(f"{key} must be an object (got {_kind(value)})")
    return dict(value)


# --- Copernica's form-encoded webhooks ----------------------------------------------------

_BRACKETS = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])+)")
_PART = re.compile(r"\[([^\[\]]*)\]")


def copernica_form(body: bytes) -> dict[str, object]:
    """An ``application/x-www-form-urlencoded`` body, with PHP's brackets: ``fields[k]=v`` ->
    ``{"fields": {"k": "v"}}``, ``interests[]=x`` -> ``{"interests": ["x"]}``. Strict: the body and
    its percent-escapes must be UTF-8, every field ``key=value``, no key given twice (which value
    counts could not be told), at most ``MAX_FORM_FIELDS`` fields."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise PayloadError("the form is not UTF-8 text") from None
    except ValueError as e:  # its text may quote a field, and so an email address: not echoed
        if "Max number of fields" in str(e):
            raise PayloadError(f"the form has more than {MAX_FORM_FIELDS} fields") from None
        raise PayloadError("not a form: a field is not key=value") from None
    form: dict[str, object] = {}
    for key, value in pairs:
        _put(form, key, value)
    return form


def _put(form: dict[str, object], key: str, value: str) -> None:
    m = _BRACKETS.fullmatch(key)
    *outer, last = [m.group(1), *_PART.findall(m.group(2))] if m else [key]
    if last == "":  # name[]=x: one more item of a list
        parent = _dict_at(form, outer[:-1], key)
        items = parent.setdefault(outer[-1], [])
        if not isinstance(items, list):
            raise PayloadError(f"the form gives {_shown(outer[-1])} both as a list and otherwise")
        items.append(value)
        return
    parent = _dict_at(form, outer, key)
    if last in parent:
        raise PayloadError(f"the form gives {_shown(key)} more than once")
    parent[last] = value


def _dict_at(form: dict[str, object], path: list[str], key: str) -> dict[str, object]:
    """The dict ``path`` leads to (made on the way), for ``key``'s value."""
    where = form
    for part in path:
        inner = where.setdefault(part, {})
        if not isinstance(inner, dict):
            raise PayloadError(f"the form gives {_shown(part)} both as a value and as an array (at {_shown(key)})")
        where = inner
    return where


# --- push --format engine|copernica -------------------------------------------------------

Adapter = Callable[[dict[str, Any]], list[dict[str, Any]]]


def reading_format(fmt: str | None) -> str | None:
    """How a file of payloads is read: JSON Lines, one payload a line."""
    return "jsonl" if fmt in PAYLOAD_FORMATS else fmt


def payload_settings(
    fmt: str | None, segment_key: str, segments: Mapping[str, Segment], status: str | None
) -> dict[str, Any] | None:
    """What a run of payloads needs to adapt them again on ``retry`` (kept in the run's settings):
    the push's segment, every segment a payload could select (engine), the default status."""
    if fmt not in PAYLOAD_FORMATS:
        return None
    if fmt == "copernica" and status is not None:
        raise InputError(
            "--status does not apply to --format copernica: each callback's action is its status",
            hint="Drop --status.",
        )
    chosen = {k: s.model_dump(mode="json") for k, s in segments.items()} if fmt == "engine" else {}
    return {"format": fmt, "segment": segment_key, "segments": chosen, "status": status}


def payload_adapter(settings: Mapping[str, Any], segment: Segment) -> Adapter:
    """One payload (a JSONL line's object) -> its records for the push's segment, from
    ``payload_settings``; a payload for another segment is a ``PayloadError``."""
    key = settings["segment"]
    if settings["format"] == "copernica":
        return lambda payload: [copernica_record(payload, segment)]
    segments = {k: Segment.model_validate(s) for k, s in settings["segments"].items()}
    segments[key] = segment  # the push's own segment, as the run resolved it
    status = settings["status"]

    def engine(payload: dict[str, Any]) -> list[dict[str, Any]]:
        got, records = engine_records(payload, segments, status)
        if got != key:
            raise PayloadError(
                f"partnerAudienceId {_shown(_audience(payload))} selects segment {_shown(got)}, not {_shown(key)}"
            )
        return records

    return engine


def adapt_payloads(source: Source, settings: Mapping[str, Any], segment: Segment) -> None:
    """A run of payloads (its settings have ``payloads``): the source's records become the
    records its payloads make. Any other run's source is left as it is."""
    payloads = settings.get("payloads")
    if payloads is not None:
        source.records = payload_records(source.records, payload_adapter(payloads, segment))


def payload_records(records: Iterator[tuple[int, Record]], adapt: Adapter) -> Iterator[tuple[int, Record]]:
    """A file's ``(line, payload)`` -> ``(line, record)``, one per record a payload makes (an engine
    payload: one per partnerId, all with the payload's line); a payload that cannot be adapted is
    ``Unreadable`` with the reason, the line's object as its text (for --rejects)."""
    for line, payload in records:
        if payload.__class__ is not dict:  # Unreadable: not JSON, not an object
            yield line, payload
            continue
        try:
            adapted = adapt(payload)  # type: ignore[arg-type]
        except PayloadError as e:
            yield line, Unreadable(str(e), _json_text(payload))
            continue
        for record in adapted:
            yield line, record


def _json_text(payload: object) -> str:
    try:
        return orjson.dumps(payload).decode()
    except orjson.JSONEncodeError:  # an integer past 64 bits: the stdlib writes it
        return json.dumps(payload, ensure_ascii=False)
