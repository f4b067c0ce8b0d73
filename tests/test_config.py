from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canopycli.config import endpoint_problem, parse_config, redact_url, resolve
from canopycli.errors import ConfigError, UsageError

from .conftest import TOKEN

GOOD = """
connectors:
  main:
    endpoint: https://webhook.myclang.com/app/api/rest/public/v2/project/datahook/data-receiver/32-x
    token: ${CANOPY_TOKEN}
    identifier: hashed_email
segments:
  WelcomeFlow:
    connector: main
    id_column: email
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.yaml")
    return e.value.problems


def test_good_config_has_documented_defaults() -> None:
    cfg = parse_config(GOOD, "c.yaml")
    c = cfg.connectors["main"]
    assert (c.auth, c.batch_size, c.timeout, c.retries, c.concurrency, c.daily_limit) == (
        "query",
        500,
        30,
        3,
        4,
        50_000,
    )
    assert c.token.get_secret_value() == TOKEN
    assert c.effective_partner_number == 1022 and c.customer_type == "HASHED_EMAIL"
    assert TOKEN not in repr(cfg)


def test_customer_id_partner_number_and_override() -> None:
    cfg = parse_config(GOOD.replace("hashed_email", "customer_id"), "c.yaml")
    assert cfg.connectors["main"].effective_partner_number == 1020
    assert cfg.connectors["main"].customer_type == "CLANG_ID"
    cfg = parse_config(
        GOOD.replace("identifier: hashed_email", "identifier: hashed_email\n    partner_number: 7"), "c.yaml"
    )
    assert cfg.connectors["main"].effective_partner_number == 7


def test_env_default_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANOPY_TOKEN")
    cfg = parse_config(GOOD.replace("${CANOPY_TOKEN}", "${CANOPY_TOKEN:-fallback-token}"), "c.yaml")
    assert cfg.connectors["main"].token.get_secret_value() == "fallback-token"


def test_missing_env_var_is_reported_with_location(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANOPY_TOKEN")
    [p] = problems(GOOD)
    assert p.startswith("c.yaml:5: connectors.main.token: environment variable CANOPY_TOKEN is not set")


def test_unknown_key_is_an_error_with_line() -> None:
    [p] = problems(GOOD.replace("    identifier: hashed_email", "    identifier: hashed_email\n    tokn: x"))
    assert p.startswith("c.yaml:7: connectors.main.tokn: unknown key")


def test_token_in_endpoint_is_refused() -> None:
    [p] = problems(GOOD.replace("32-x", "32-x?token=abc"))
    assert "move the token to `token:`" in p and "abc" not in p


@pytest.mark.parametrize(
    ("endpoint", "ok"),
    [
        ("https://webhook.myclang.com/x", True),
        ("http://127.0.0.1:8042/x", True),
        ("http://localhost:8042/x", True),
        ("http://[::1]:8042/x", True),
        ("http://webhook.myclang.com/x", False),
        ("ftp://webhook.myclang.com/x", False),
        ("not a url", False),
        ("https://user:pw@webhook.myclang.com/x", False),
    ],
)
def test_endpoint_rules(endpoint: str, ok: bool) -> None:
    assert (endpoint_problem(endpoint) is None) is ok


def test_every_problem_is_listed_at_once() -> None:
    text = GOOD.replace("identifier: hashed_email", "identifier: phone\n    batch_size: 900").replace(
        "connector: main", "connector: nope"
    )
    ps = problems(text)
    assert any("connectors.main.identifier" in p for p in ps)
    assert any("connectors.main.batch_size" in p and "600" in p for p in ps)


def test_unknown_connector_reference() -> None:
    [p] = problems(GOOD.replace("connector: main", "connector: nope"))
    assert "segments.WelcomeFlow.connector: unknown connector 'nope' (known: main)" in p


def test_invalid_yaml_points_at_line() -> None:
    [p] = problems("connectors:\n  main: [\n")
    assert p.startswith("c.yaml:3:") and "invalid YAML" in p


def test_resolve_picks_the_only_segment_or_asks() -> None:
    cfg = parse_config(GOOD, "c.yaml")
    assert resolve(cfg, None, "c.yaml").segment_name == "WelcomeFlow"
    two = GOOD + "  Other:\n    connector: main\n    id_column: email\n    name: Other Flow\n"
    cfg2 = parse_config(two, "c.yaml")
    with pytest.raises(UsageError, match="--segment"):
        resolve(cfg2, None, "c.yaml")
    assert resolve(cfg2, "Other", "c.yaml").segment_name == "Other Flow"


# --- tokens in the endpoint (#13), and redact_url ------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "where"),
    [
        ("https://h.example/x?Token=abc123", "a token= query parameter"),
        ("https://h.example/x?a=1&TOKEN=abc123", "a token= query parameter"),
        ("https://h.example/x?access_token=abc123", "a token= query parameter"),
        ("https://h.example/x?%54oken=abc123", "a token= query parameter"),
        ("https://h.example/x?a=b%26token%3Dabc123", "a token= query parameter"),
        ("https://h.example/x#token=abc123", "a token= parameter in its #fragment"),
        ("https://h.example/x#/cb?Token=abc123", "a token= parameter in its #fragment"),
        ("https://h.example/x;token=abc123", "a token= parameter in its path"),
        ("https://h.example/x/token=abc123/y", "a token= parameter in its path"),
    ],
)
def test_a_token_anywhere_in_the_endpoint_is_refused(endpoint: str, where: str) -> None:
    [p] = problems(
        GOOD.replace("https://webhook.myclang.com/app/api/rest/public/v2/project/datahook/data-receiver/32-x", endpoint)
    )
    assert p.startswith(f"c.yaml:4: connectors.main.endpoint: endpoint carries {where}; move the token to `token:`")
    assert "abc123" not in p


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://h.example/token/x",  # a path segment named token carries no value
        "https://h.example/x?tokens",
        "https://h.example/x?page=2#section",
    ],
)
def test_token_like_words_without_a_value_are_fine(endpoint: str) -> None:
    assert endpoint_problem(endpoint) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://h.example/x", "https://h.example/x"),
        ("https://h.example/x?page=2&segment=a#top", "https://h.example/x?page=2&segment=a#top"),
        ("https://h.example/x?Token=s3cr3t&a=1", "https://h.example/x?Token=***&a=1"),
        ("https://h.example/x?sig=ab/c+d==&a=1", "https://h.example/x?sig=***&a=1"),
        ("https://h.example/x?API-Key=s3cr3t#Password=pw", "https://h.example/x?API-Key=***#Password=***"),
        ("https://h.example/x;auth=s3cr3t/y", "https://h.example/x;auth=***"),
        ("https://h.example/x#a=1&client_secret=s3cr3t", "https://h.example/x#a=1&client_secret=***"),
        ("https://user:pw@h.example/x", "https://***@h.example/x"),
        (
            "https://h.example/x?X-Amz-Signature=abc&X-Amz-Credential=def",
            "https://h.example/x?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


SECRET_KEYS = [
    "token",
    "access_token",
    "key",
    "api_key",
    "apikey",
    "secret",
    "password",
    "passwd",
    "auth",
    "sig",
    "signature",
    "Authorization",
    "session",
]


@given(
    key=st.sampled_from(SECRET_KEYS).flatmap(lambda k: st.sampled_from([k, k.upper(), k.title()])),
    value=st.text(alphabet=st.characters(blacklist_characters="&;#", blacklist_categories=("Cs",)), min_size=6),
    sep=st.sampled_from(["?", "?a=1&", "#", "#x=1&", ";", "?a=1;"]),
    tail=st.sampled_from(["", "&b=2", "#frag", ";c=3"]),
)
def test_redact_url_never_shows_a_secret_value(key: str, value: str, sep: str, tail: str) -> None:
    shown = redact_url(f"https://h.example/p{sep}{key}={value}{tail}")
    assert value not in shown and f"{key}=***" in shown and shown.endswith(tail)


@given(
    query=st.lists(
        st.tuples(
            st.sampled_from(["a", "page", "id", "segment", "lang", "v"]), st.text(alphabet="abcXYZ019-._~/", max_size=8)
        ),
        max_size=4,
    )
)
def test_redact_url_leaves_other_urls_alone(query: list[tuple[str, str]]) -> None:
    url = "https://h.example/p" + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
    assert redact_url(url) == url


# --- the token itself (#8): checked at load, never quoted --------------------------------


@pytest.mark.parametrize(
    ("token", "auth", "message"),
    [
        ("abc123\n", "query", "token contains whitespace or a control character"),
        ("abc123\r", "bearer", "token contains whitespace or a control character"),
        (" abc123", "query", "token contains whitespace or a control character"),
        ("abc 123", "bearer", "token contains whitespace or a control character"),
        ("abc\u200b123", "query", "token contains whitespace or a control character"),
        ("abc\u00a0123", "query", "token contains whitespace or a control character"),
        ("\ufeffabc123", "bearer", "token contains whitespace or a control character"),
        ("abc\x00123", "query", "token contains whitespace or a control character"),
        ("tök€n-123", "bearer", "token has a non-ASCII character, which an Authorization header cannot carry"),
        ("tokén-123", "bearer", "token has a non-ASCII character"),
        ("“abc123”", "bearer", "token has a non-ASCII character"),
        ("  ", "query", "token is empty"),
    ],
)
def test_bad_tokens_are_config_problems(token: str, auth: str, message: str) -> None:
    text = GOOD.replace("${CANOPY_TOKEN}", json.dumps(token)).replace(
        "identifier: hashed_email", f"identifier: hashed_email\n    auth: {auth}"
    )
    [p] = problems(text)
    assert p.startswith(f"c.yaml:5: connectors.main.token: {message}")
    assert "abc" not in p and "123" not in p


def test_a_token_from_the_environment_with_a_line_break(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANOPY_TOKEN", TOKEN + "\n")
    [p] = problems(GOOD)
    assert p.startswith("c.yaml:5: connectors.main.token: token contains whitespace or a control character")
    assert TOKEN not in p


def test_a_non_ascii_token_is_fine_for_query_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANOPY_TOKEN", "tök€n-123")
    cfg = parse_config(GOOD, "c.yaml")  # sent percent-encoded as UTF-8 (see the e2e test)
    assert cfg.connectors["main"].token.get_secret_value() == "tök€n-123"


# --- choosing the segment (#15): a usage error, not a config problem ---------------------

THREE = GOOD + "".join(f"  {n}:\n    connector: main\n    id_column: email\n" for n in ("Reactivation", "Birthday"))


def test_a_missing_segment_lists_them() -> None:
    cfg = parse_config(THREE, "c.yaml")
    with pytest.raises(UsageError) as e:
        resolve(cfg, None, "c.yaml")
    assert not isinstance(e.value, ConfigError)
    assert (
        e.value.message == "the config has 3 segments; choose one with --segment: Birthday, Reactivation, WelcomeFlow"
    )


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("welcomeflow", "Did you mean --segment WelcomeFlow?"),
        ("Reactivaton", "Did you mean --segment Reactivation?"),
        ("Zzz", None),
    ],
)
def test_an_unknown_segment_lists_them_and_suggests_a_close_one(given: str, hint: str | None) -> None:
    cfg = parse_config(THREE, "c.yaml")
    with pytest.raises(UsageError) as e:
        resolve(cfg, given, "c.yaml")
    assert not isinstance(e.value, ConfigError)
    assert e.value.message == f"no segment {given!r} in c.yaml; the segments are: Birthday, Reactivation, WelcomeFlow"
    assert e.value.hint == hint
