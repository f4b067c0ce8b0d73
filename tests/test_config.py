from __future__ import annotations

import pytest

from canopycli.config import endpoint_problem, parse_config, resolve
from canopycli.errors import ConfigError

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
    with pytest.raises(ConfigError, match="--segment"):
        resolve(cfg2, None, "c.yaml")
    assert resolve(cfg2, "Other", "c.yaml").segment_name == "Other Flow"
