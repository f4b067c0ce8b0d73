"""Copernica's signatures: sign and verify, every refusal, the key sources (no network)."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from canopycli.errors import UsageError
from canopycli.relay.signature import DnsKeys, PinnedKeys, SignatureError, dkim_keys, sign, verify

NOW = 1_700_000_000.0
TARGET = "/v1/copernica/WelcomeFlow?x=1"
BODY = b"type=update&profile=42&fields%5Bemail%5D=ann%40example.com"
BASE = {"Host": "relay.example.com", "Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Keys:
    """A KeySource of given keys, for any keyId (the domain rule is PinnedKeys' and DnsKeys')."""

    def __init__(self, *keys: rsa.RSAPrivateKey) -> None:
        self._keys = [k.public_key() for k in keys]
        self.asked: list[str] = []

    def keys(self, key_id: str) -> list[rsa.RSAPublicKey]:
        self.asked.append(key_id)
        return self._keys


def signed(key: rsa.RSAPrivateKey, body: bytes = BODY, **kw: Any) -> dict[str, str]:
    return sign("POST", TARGET, dict(BASE), body, key, now=kw.pop("now", NOW), **kw)


def check(headers: dict[str, str], keys: Any, body: bytes = BODY, now: float = NOW, target: str = TARGET) -> None:
    verify("POST", target, headers, body, keys, 300.0, now=now)


def refused(headers: dict[str, str], keys: Any, body: bytes = BODY, now: float = NOW, target: str = TARGET) -> str:
    with pytest.raises(SignatureError) as e:
        check(headers, keys, body, now, target)
    return str(e.value)


def test_sign_and_verify(key: rsa.RSAPrivateKey) -> None:
    headers = signed(key)
    assert headers["Digest"].startswith("SHA-256=")
    assert 'headers="(request-target) host date x-copernica-id digest content-type"' in headers["Signature"]
    keys = Keys(key)
    check(headers, keys)
    assert keys.asked == ["test._domainkey.copernica.com"]


def test_header_names_any_case(key: rsa.RSAPrivateKey) -> None:
    headers = {k.upper() if k != "Signature" else "sIgNaTuRe": v for k, v in signed(key).items()}
    check(headers, Keys(key))
    listed = signed(key, covered=("(Request-Target)", "Host", "Date", "X-Copernica-ID", "Digest"))
    check({k.lower(): v for k, v in listed.items()}, Keys(key))


def test_extra_covered_headers(key: rsa.RSAPrivateKey) -> None:
    base = {**BASE, "X-Nonce": "abc", "Content-Length": str(len(BODY))}
    covered = (
        "(request-target)",
        "host",
        "date",
        "content-length",
        "content-type",
        "x-copernica-id",
        "digest",
        "x-nonce",
    )
    check(sign("POST", TARGET, base, BODY, key, covered=covered, now=NOW), Keys(key))


def test_another_of_the_keys(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    check(signed(key), Keys(other_key, key))  # keys rotate: any of the source's keys


def test_sha512_and_lowercase_digest(key: rsa.RSAPrivateKey) -> None:
    import hashlib

    digest = "sha-512=" + base64.b64encode(hashlib.sha512(BODY).digest()).decode()
    check(sign("POST", TARGET, {**BASE, "Digest": digest}, BODY, key, now=NOW), Keys(key))


def test_date_within_skew(key: rsa.RSAPrivateKey) -> None:
    check(signed(key), Keys(key), now=NOW + 299)
    check(signed(key), Keys(key), now=NOW - 299)


def drop(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != name}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h: drop(h, "signature"), "unsigned: no Signature header"),
        (lambda h: drop(h, "digest"), "no Digest header"),
        (lambda h: drop(h, "date"), "no Date header"),
        (lambda h: {**h, "Digest": "MD5=abc"}, "the Digest has no SHA-256 or SHA-512 value"),
        (lambda h: {**h, "Digest": "SHA-256=***"}, "the Digest is not base64"),
        (lambda h: {**h, "Date": "yesterday"}, "the Date header is not an HTTP date"),
        (lambda h: {**h, "Signature": "garbage"}, "the Signature header cannot be read"),
        (
            lambda h: {**h, "Signature": h["Signature"] + ',keyId="a.copernica.com"'},
            "the Signature header gives keyId twice",
        ),
        (
            lambda h: {**h, "Signature": h["Signature"].replace("rsa-sha256", "hmac-sha256")},
            "algorithm 'hmac-sha256' is not rsa-sha256",
        ),
        (
            lambda h: {**h, "Signature": h["Signature"].replace('signature="', 'signature="!')},
            "bad signature: not base64",
        ),
        (
            lambda h: {**h, "Signature": h["Signature"].replace("test._domainkey.copernica.com", "")},
            "the Signature header has no keyId",
        ),
        (
            lambda h: {**h, "Signature": h["Signature"].replace("copernica.com", "copernica.com.evil.net")},
            "keyId 'test._domainkey.copernica.com.evil.net' is not under .copernica.com",
        ),
        (
            lambda h: {**h, "Signature": h["Signature"].replace("test._domainkey.copernica.com", "evilcopernica.com")},
            "keyId 'evilcopernica.com' is not under .copernica.com",
        ),
        (lambda h: {**h, "X-Copernica-ID": "account-2"}, "bad signature: no key of the keyId verifies it"),
        (lambda h: {**h, "Host": "other.example.com"}, "bad signature"),
        (lambda h: {**h, "Content-Type": "application/json"}, "bad signature"),
        (lambda h: drop(h, "x-copernica-id"), "the signature covers x-copernica-id, which the request does not have"),
    ],
)
def test_refusals(key: rsa.RSAPrivateKey, change: Any, reason: str) -> None:
    assert refused(change(signed(key)), Keys(key)).startswith(reason)


def test_tampered_body_with_valid_signature(key: rsa.RSAPrivateKey) -> None:
    headers = signed(key)
    assert refused(headers, Keys(key), body=BODY.replace(b"42", b"43")) == "the body does not match its Digest"


def test_other_target(key: rsa.RSAPrivateKey) -> None:
    assert refused(signed(key), Keys(key), target="/v1/copernica/Other").startswith("bad signature")


@pytest.mark.parametrize(
    ("now", "reason"), [(NOW + 301, "stale Date: 301 s old"), (NOW - 301, "Date in the future: 301 s ahead")]
)
def test_stale_and_future_date(key: rsa.RSAPrivateKey, now: float, reason: str) -> None:
    assert refused(signed(key), Keys(key), now=now).startswith(reason)


def test_wrong_key(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    assert refused(signed(key), Keys(other_key)) == "bad signature: no key of the keyId verifies it"


@pytest.mark.parametrize("missing", ["(request-target)", "host", "date", "x-copernica-id", "digest"])
def test_required_coverage(key: rsa.RSAPrivateKey, missing: str) -> None:
    covered = [n for n in ("(request-target)", "host", "date", "x-copernica-id", "digest") if n != missing]
    headers = signed(key, covered=covered)
    assert refused(headers, Keys(key)) == f"the signature does not cover {missing}"


def test_default_coverage_is_date_only(key: rsa.RSAPrivateKey) -> None:
    headers = signed(key)
    headers["Signature"] = headers["Signature"].replace(
        'headers="(request-target) host date x-copernica-id digest content-type",', ""
    )
    assert refused(headers, Keys(key)).startswith("the signature does not cover (request-target), host")


class Repeated(dict[str, str]):
    """Headers as starlette shows them: ``items()`` has each copy of a repeated header."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def items(self) -> Any:
        return self.pairs


@pytest.mark.parametrize("name", ["Date", "Digest", "Signature", "X-Copernica-ID"])
def test_repeated_signed_header(key: rsa.RSAPrivateKey, name: str) -> None:
    headers = signed(key)
    pairs = [*headers.items(), (name.lower(), headers[name])]
    assert refused(Repeated(pairs), Keys(key)) == f"the header {name.lower()} is given more than once"


def test_repeated_unsigned_header_is_fine(key: rsa.RSAPrivateKey) -> None:
    headers = signed(key)
    check(Repeated([*headers.items(), ("Accept", "a"), ("accept", "b")]), Keys(key))


def test_sign_needs_host(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="Host"):
        sign("POST", "/", {}, b"", key)


def test_sign_keeps_given_date(key: rsa.RSAPrivateKey) -> None:
    date = email.utils.formatdate(NOW, usegmt=True)
    headers = sign("POST", TARGET, {**BASE, "date": date}, BODY, key)
    assert headers["date"] == date and "Date" not in headers
    check(headers, Keys(key))


# --- key sources -----------------------------------------------------------------------------


def dkim(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b64 = base64.b64encode(der).decode()
    return f"v=DKIM1; k=rsa; p={b64[:100]} {b64[100:]}"  # DNS splits long records: spaces are dropped


class FakeResolver:
    def __init__(self, answers: dict[str, list[str] | Exception]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, name: str) -> list[str]:
        self.asked.append(name)
        got = self.answers.get(name, [])
        if isinstance(got, Exception):
            raise got
        return got


def test_dns_keys(key: rsa.RSAPrivateKey) -> None:
    resolver = FakeResolver({"one._domainkey.copernica.com": ["some other text", dkim(key)]})
    clock = [0.0]
    keys = DnsKeys(resolver, ttl=3600, clock=lambda: clock[0])
    headers = signed(key, key_id="one._domainkey.copernica.com")
    check(headers, keys)
    check(headers, keys)
    assert resolver.asked == ["one._domainkey.copernica.com"]  # cached
    clock[0] = 3601
    check(headers, keys)
    assert len(resolver.asked) == 2  # looked up again after the ttl


def test_dns_keys_case_and_trailing_dot(key: rsa.RSAPrivateKey) -> None:
    resolver = FakeResolver({"one._domainkey.copernica.com": [dkim(key)]})
    check(signed(key, key_id="One._DomainKey.Copernica.com."), DnsKeys(resolver))


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (TimeoutError("slow"), "no key for keyId 'one._domainkey.copernica.com' in DNS (TimeoutError)"),
        (OSError("down"), "no key for keyId 'one._domainkey.copernica.com' in DNS (OSError)"),
        (SignatureError("no key for keyId x in DNS (NXDOMAIN)"), "no key for keyId x in DNS (NXDOMAIN)"),
        ([], "no RSA key in the DNS record at keyId 'one._domainkey.copernica.com'"),
        (["v=DKIM1; k=rsa; p="], "no RSA key in the DNS record"),  # revoked
        (["v=DKIM1; k=rsa; p=!!!"], "no RSA key in the DNS record"),
        (["v=DKIM1; k=ed25519; p=AAAA"], "no RSA key in the DNS record"),
    ],
)
def test_dns_keys_failures(key: rsa.RSAPrivateKey, answer: Any, reason: str) -> None:
    keys = DnsKeys(FakeResolver({"one._domainkey.copernica.com": answer}))
    assert refused(signed(key, key_id="one._domainkey.copernica.com"), keys).startswith(reason)


def test_dns_keys_refuse_other_domains_without_asking(key: rsa.RSAPrivateKey) -> None:
    resolver = FakeResolver({})
    with pytest.raises(SignatureError, match="is not under .copernica.com"):
        DnsKeys(resolver).keys("one._domainkey.example.com")
    with pytest.raises(SignatureError, match="is not under .copernica.com"):
        DnsKeys(resolver).keys(".copernica.com")
    assert resolver.asked == []


def test_dkim_keys_ignores_non_rsa() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = ec_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert dkim_keys([f"v=DKIM1; p={base64.b64encode(der).decode()}"]) == []


def pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "copernica test")])
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_pinned_keys(tmp_path: Path, key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "copernica.pem"
    path.write_bytes(b"comment\n" + pem(other_key) + certificate(key))
    keys = PinnedKeys(path)
    assert len(keys.keys("any.copernica.com")) == 2
    check(signed(key, key_id="whatever._domainkey.copernica.com"), keys)
    check(signed(other_key), keys)
    bad = signed(key, key_id="k.example.org")
    assert refused(bad, keys) == "keyId 'k.example.org' is not under .copernica.com: not Copernica's key"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the pinned Copernica key(s)"),
        (b"nothing here", "no PUBLIC KEY or CERTIFICATE block"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "a PUBLIC KEY block cannot be read"),
        ("ec", "a PUBLIC KEY block is not an RSA key"),
    ],
)
def test_pinned_keys_refused(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "k.pem"
    if content == "ec":
        content = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PinnedKeys(path)


def test_a_failed_key_lookup_is_not_repeated_for_a_minute() -> None:
    resolver = FakeResolver({"random1._domainkey.copernica.com": OSError("timeout")})
    clock = [0.0]
    keys = DnsKeys(resolver, clock=lambda: clock[0])
    for _ in range(3):
        with pytest.raises(SignatureError, match="no key for keyId"):
            keys.keys("random1._domainkey.copernica.com")
    assert len(resolver.asked) == 1  # anyone can name a keyId: not a DNS lookup per request
    clock[0] = 61
    with pytest.raises(SignatureError):
        keys.keys("random1._domainkey.copernica.com")
    assert len(resolver.asked) == 2
