"""Copernica's signed callbacks: Digest of the raw body, draft-cavage RSA-SHA256 ``Signature``.

Copernica cannot send a bearer token, so its callbacks are authenticated by what it signs:

- ``Digest: SHA-256=<base64>`` (RFC 3230) of the raw body, recomputed here (SHA-512 also taken);
- ``Signature: keyId="...",algorithm="rsa-sha256",headers="(request-target) host date ...",
  signature="<base64>"`` (draft-cavage HTTP Signatures): the signing string is, for each covered
  name, ``name: trimmed value`` joined by newlines, ``(request-target)`` being the lowercase
  method and the path with its query. It must cover at least ``REQUIRED`` (names compared
  case-insensitively) and may cover more;
- ``Date`` within ``max_skew`` seconds of now, either way (a replayed callback goes stale);
- the key: published by Copernica in DNS as a DKIM TXT record at the ``keyId`` name, which must be
  under ``.copernica.com`` (``DnsKeys``; keys rotate monthly, so they are looked up, cached for an
  hour), or pinned in a PEM file (``PinnedKeys``: tests, and sites that cannot resolve DNS).

Every refusal is a ``SignatureError`` whose text is the short reason the 401 gives. A covered
header given twice is refused (which copy was signed cannot be told); two copies folded into one
line by a proxy before they reach us cannot be told apart from one value, and then the signature
simply fails. ``sign`` makes signed requests for tests and the demo.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from ..errors import UsageError

__all__ = [
    "DOMAIN",
    "KEY_TTL",
    "REQUIRED",
    "DnsKeys",
    "KeySource",
    "PinnedKeys",
    "SignatureError",
    "sign",
    "verify",
]

DOMAIN = ".copernica.com"
REQUIRED = ("(request-target)", "host", "date", "x-copernica-id", "digest")
KEY_TTL = 3600.0  # Copernica rotates its keys monthly: an hour's cache spares a lookup per callback
_ALGORITHMS = {"rsa-sha256", "hs2019"}  # hs2019: the algorithm is the key's, and Copernica's are RSA-SHA256
_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*"([^"]*)"\s*(?:,|$)')


class SignatureError(Exception):
    """A refused signature; ``str(e)`` is the reason for the 401."""


class KeySource(Protocol):
    def keys(self, key_id: str) -> list[RSAPublicKey]:
        """The public keys that may have signed with ``key_id`` (raises ``SignatureError`` if none)."""
        ...


def _check_key_id(key_id: str) -> None:
    name = key_id.rstrip(".").lower()
    if not name.endswith(DOMAIN) or len(name) == len(DOMAIN):
        raise SignatureError(f"keyId {key_id[:80]!r} is not under {DOMAIN}: not Copernica's key")


# --- key sources -----------------------------------------------------------------------------

Resolver = Callable[[str], list[str]]  # a name -> the text of each TXT record there


def dns_txt(name: str) -> list[str]:
    """The TXT records at ``name`` (dnspython: the stdlib has no TXT lookup)."""
    import dns.exception
    import dns.resolver

    try:
        answer = dns.resolver.resolve(name, "TXT", lifetime=5.0)
    except dns.exception.DNSException as e:
        raise SignatureError(f"no key for keyId {name!r} in DNS ({type(e).__name__})") from None
    return [b"".join(r.strings).decode("ascii", "replace") for r in answer]  # type: ignore[attr-defined]


def dkim_keys(records: Iterable[str]) -> list[RSAPublicKey]:
    """The RSA keys of DKIM TXT records (``v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>``);
    a record with an empty ``p=`` (a revoked key) or another key type gives none."""
    keys: list[RSAPublicKey] = []
    for record in records:
        tags: dict[str, str] = {}
        for tag in record.split(";"):
            name, _, value = tag.partition("=")
            tags[name.strip().lower()] = value.strip()
        p = re.sub(r"\s+", "", tags.get("p", ""))
        if not p or tags.get("k", "rsa").lower() != "rsa":
            continue
        try:
            key = serialization.load_der_public_key(base64.b64decode(p, validate=True))
        except (ValueError, binascii.Error):
            continue
        if isinstance(key, RSAPublicKey):
            keys.append(key)
    return keys


FAILED_TTL = 60.0  # seconds a failed key lookup is remembered


class DnsKeys:
    """Copernica's keys from DNS: the DKIM TXT record at the ``keyId`` name, cached for ``ttl``
    seconds per keyId. ``resolve``: the TXT lookup (tests give a fake; the default asks DNS)."""

    def __init__(
        self, resolve: Resolver | None = None, ttl: float = KEY_TTL, clock: Callable[[], float] = time.monotonic
    ):
        self.resolve = resolve or dns_txt
        self.ttl, self.clock = ttl, clock
        self._cache: dict[str, tuple[float, list[RSAPublicKey]]] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def keys(self, key_id: str) -> list[RSAPublicKey]:
        _check_key_id(key_id)
        name = key_id.rstrip(".").lower()
        with self._lock:
            hit = self._cache.get(name)
            failed = self._failed.get(name)
        if hit is not None and self.clock() - hit[0] < self.ttl:
            return hit[1]
        if failed is not None and self.clock() - failed[0] < FAILED_TTL:
            raise SignatureError(failed[1])  # anyone can name a keyId: a failed lookup is not repeated at once
        try:
            records = self.resolve(name)
            keys = dkim_keys(records)
            if not keys:
                raise SignatureError(f"no RSA key in the DNS record at keyId {name!r}")
        except Exception as e:  # a resolver's own failure: the reason, never a crash of the route
            why = str(e) if isinstance(e, SignatureError) else f"no key for keyId {name!r} in DNS ({type(e).__name__})"
            with self._lock:
                if len(self._failed) >= 1024:
                    self._failed.clear()
                self._failed[name] = (self.clock(), why)
            raise SignatureError(why) from None
        with self._lock:
            if len(self._cache) >= 64:  # only Copernica's few live keys get here; bound it anyway
                self._cache.clear()
            self._cache[name] = (self.clock(), keys)
        return keys


_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


class PinnedKeys:
    """Keys pinned in a PEM file (one or more ``PUBLIC KEY``, ``RSA PUBLIC KEY`` or
    ``CERTIFICATE`` blocks): every one of them is tried for any keyId under ``.copernica.com``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        hint = "relay.copernica.public_key_file names a PEM file of RSA public keys or certificates"
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise UsageError(f"{path}: cannot read the pinned Copernica key(s): {e.strerror}", hint=hint) from None
        self._keys = [self._load(kind, block, hint) for kind, block in _blocks(data)]
        if not self._keys:
            raise UsageError(f"{path}: no PUBLIC KEY or CERTIFICATE block", hint=hint)

    def _load(self, kind: bytes, block: bytes, hint: str) -> RSAPublicKey:
        key: object
        try:
            if kind == b"CERTIFICATE":
                key = x509.load_pem_x509_certificate(block).public_key()
            else:
                key = serialization.load_pem_public_key(block)
        except ValueError:
            raise UsageError(f"{self.path}: a {kind.decode()} block cannot be read", hint=hint) from None
        if not isinstance(key, RSAPublicKey):
            raise UsageError(f"{self.path}: a {kind.decode()} block is not an RSA key", hint=hint)
        return key

    def keys(self, key_id: str) -> list[RSAPublicKey]:
        _check_key_id(key_id)
        return list(self._keys)


def _blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    kinds = (b"PUBLIC KEY", b"RSA PUBLIC KEY", b"CERTIFICATE")
    return [(m.group(1), m.group(0)) for m in _PEM.finditer(data) if m.group(1) in kinds]


# --- verification ----------------------------------------------------------------------------


def verify(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    keys: KeySource,
    max_skew: float,
    now: float | None = None,
) -> None:
    """Accept a signed Copernica request, or raise ``SignatureError`` with the reason.

    ``target``: the path with its query, as received; ``headers``: looked up case-insensitively
    (a starlette ``Headers`` shows each copy of a repeated header)."""
    h, repeated = _lowered(headers)
    if "signature" not in h:
        raise SignatureError("unsigned: no Signature header")
    params = _signature_params(h["signature"])
    covered = params.get("headers", "date").lower().split()
    missing = [n for n in REQUIRED if n not in covered]
    if missing:
        raise SignatureError(f"the signature does not cover {', '.join(missing)}")
    doubled = [n for n in ("signature", "digest", *covered) if n in repeated]
    if doubled:  # which copy was signed cannot be told
        raise SignatureError(f"the header {doubled[0]} is given more than once")
    _check_key_id(params["keyId"])
    _check_date(h.get("date"), max_skew, time.time() if now is None else now)
    _check_digest(h.get("digest"), body)
    signed = _signing_string(method, target, h, covered, params).encode()
    try:
        signature = base64.b64decode(params["signature"], validate=True)
    except binascii.Error:
        raise SignatureError("bad signature: not base64") from None
    for key in keys.keys(params["keyId"]):
        try:
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
            return
        except InvalidSignature:
            continue
    raise SignatureError("bad signature: no key of the keyId verifies it")


def _lowered(headers: Mapping[str, str]) -> tuple[dict[str, str], set[str]]:
    """The headers by lowercase name, and the names given more than once (in any case)."""
    h: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in headers.items():
        low = name.lower()
        if low in h:
            repeated.add(low)
        h[low] = value
    return h, repeated


def _signature_params(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        m = _PARAM.match(value, pos)
        if m is None or m.end() == pos:
            raise SignatureError("the Signature header cannot be read")
        if m.group(1) in params:
            raise SignatureError(f"the Signature header gives {m.group(1)} twice")
        params[m.group(1)] = m.group(2)
        pos = m.end()
    for needed in ("keyId", "signature"):
        if not params.get(needed):
            raise SignatureError(f"the Signature header has no {needed}")
    algorithm = params.get("algorithm", "hs2019").lower()
    if algorithm not in _ALGORITHMS:
        raise SignatureError(f"algorithm {algorithm[:40]!r} is not rsa-sha256")
    return params


def _check_date(value: str | None, max_skew: float, now: float) -> None:
    if value is None:
        raise SignatureError("no Date header")
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        raise SignatureError("the Date header is not an HTTP date") from None
    off = when - now
    if off < -max_skew:
        raise SignatureError(f"stale Date: {-off:.0f} s old, more than {max_skew:.0f} s (relay.copernica.max_skew)")
    if off > max_skew:
        raise SignatureError(f"Date in the future: {off:.0f} s ahead, more than {max_skew:.0f} s")


def _check_digest(value: str | None, body: bytes) -> None:
    """Every SHA-256 or SHA-512 digest in the header must be the body's; at least one must be there."""
    if value is None:
        raise SignatureError("no Digest header")
    checked = 0
    for part in value.split(","):
        algorithm, _, encoded = part.strip().partition("=")
        make = _DIGESTS.get(algorithm.strip().lower())
        if make is None:
            continue
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            raise SignatureError("the Digest is not base64") from None
        if given != make(body).digest():
            raise SignatureError("the body does not match its Digest")
        checked += 1
    if not checked:
        raise SignatureError("the Digest has no SHA-256 or SHA-512 value")


def _signing_string(
    method: str, target: str, h: Mapping[str, str], covered: Sequence[str], params: Mapping[str, str]
) -> str:
    lines = []
    for name in covered:
        if name == "(request-target)":
            value = f"{method.lower()} {target}"
        elif name in ("(created)", "(expires)"):
            value = params.get(name[1:-1], "")
        elif name in h:
            value = h[name].strip()
        else:
            raise SignatureError(f"the signature covers {name[:40]}, which the request does not have")
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


# --- signing (tests and the demo) ------------------------------------------------------------


def sign(
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
    private_key: RSAPrivateKey,
    key_id: str = "test._domainkey.copernica.com",
    covered: Sequence[str] | None = None,
    now: float | None = None,
) -> dict[str, str]:
    """``headers`` with what Copernica adds: ``Date`` (``now``), ``Digest``, ``X-Copernica-ID``
    where absent, and a ``Signature`` over ``covered`` (default: ``REQUIRED``, and
    ``content-type`` when there is one). ``headers`` must hold ``Host``."""
    out = dict(headers)
    names = {n.lower() for n in out}
    if "host" not in names:
        raise ValueError("sign() needs a Host header")
    if "date" not in names:
        out["Date"] = email.utils.formatdate(time.time() if now is None else now, usegmt=True)
    if "digest" not in names:
        out["Digest"] = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    if "x-copernica-id" not in names:
        out["X-Copernica-ID"] = "account-1"
    if covered is None:
        covered = (*REQUIRED, "content-type") if "content-type" in names else REQUIRED
    h, _ = _lowered(out)
    text = _signing_string(method, target, h, [c.lower() for c in covered], {}).encode()
    signature = base64.b64encode(private_key.sign(text, padding.PKCS1v15(), hashes.SHA256())).decode()
    out["Signature"] = f'keyId="{key_id}",algorithm="rsa-sha256",headers="{" ".join(covered)}",signature="{signature}"'
    return out
