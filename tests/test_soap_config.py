"""Config for Deployteq's SOAP API: ``api: soap`` connectors, ``identifier: email``, ``segments.*.campaign``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.config import Connector, campaign_id, parse_config
from canopycli.errors import ConfigError

from .conftest import TOKEN, grep_token

SOAP = """\
connectors:
  realtime:
    api: soap
    token: ${CANOPY_TOKEN}
    identifier: customer_id
segments:
  PasswordReset:
    connector: realtime
    campaign: Password reset
    id_column: customer_id
"""
WEBHOOK = "https://webhook.myclang.com/app/api/rest/public/v2/project/datahook/data-receiver/32-x"
SECURE = "https://secure.myclang.com/app/api/soap/public/index.php"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.yaml")
    return e.value.problems


def soap(extra: str = "", campaign: str = "campaign: Password reset") -> str:
    """SOAP with lines added to the connector (after identifier, line 6 on)."""
    text = SOAP.replace("    identifier: customer_id\n", "    identifier: customer_id\n" + extra)
    return text.replace("campaign: Password reset", campaign)


def test_a_soap_connector_has_documented_defaults() -> None:
    c = parse_config(SOAP, "c.yaml").connectors["realtime"]
    assert (c.api, c.platform, c.soap_url, c.soap_version, c.auth_fault_codes) == ("soap", "secure", None, "1.24", ())
    assert (c.timeout, c.retries, c.backoff, c.concurrency) == (30, 3, 1.0, 4)
    assert c.is_soap and c.token.get_secret_value() == TOKEN
    assert c.endpoint == f"{SECURE}?version=1.24&type=literal"
    assert c.customer_type == "CLANG_ID"
    assert c.daily_limit is None  # no quota is known for SOAP
    assert TOKEN not in repr(c)


def test_a_webhook_connector_is_what_it_was() -> None:
    text = f"connectors:\n  m:\n    endpoint: {WEBHOOK}\n    token: t0ken-1234\n    identifier: hashed_email\n"
    c = parse_config(text + "segments:\n  S: {connector: m, id_column: email}\n", "c.yaml").connectors["m"]
    assert (c.api, c.endpoint, c.daily_limit, c.customer_type, c.is_soap) == (
        "webhook",
        WEBHOOK,
        50_000,
        "HASHED_EMAIL",
        False,
    )
    assert Connector(endpoint=WEBHOOK, token="t0ken-1234", identifier="customer_id").endpoint == WEBHOOK  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "address"),
    [
        ("    platform: login\n", "https://login.myclang.com/app/api/soap/public/index.php?version=1.24&type=literal"),
        ("    platform: secure\n", f"{SECURE}?version=1.24&type=literal"),
        ('    soap_version: "1.22"\n', f"{SECURE}?version=1.22&type=literal"),
        (
            "    soap_url: http://127.0.0.1:8042/app/api/soap/public/index.php\n",
            "http://127.0.0.1:8042/app/api/soap/public/index.php?version=1.24&type=literal",
        ),
        ("    soap_url: https://soap.example/x\n", "https://soap.example/x?version=1.24&type=literal"),
    ],
)
def test_the_soap_address(extra: str, address: str) -> None:
    assert parse_config(soap(extra), "c.yaml").connectors["realtime"].endpoint == address


def test_email_identifier_auth_fault_codes_and_settings() -> None:
    text = soap(
        "    timeout: 5\n    retries: 1\n    backoff: 0.5\n    concurrency: 16\n    auth_fault_codes: [150, 151]\n"
    )
    c = parse_config(text.replace("identifier: customer_id", "identifier: email"), "c.yaml").connectors["realtime"]
    assert (c.identifier, c.customer_type, c.auth_fault_codes) == ("email", "EMAIL", (150, 151))
    assert (c.timeout, c.retries, c.backoff, c.concurrency) == (5, 1, 0.5, 16)


@pytest.mark.parametrize(
    ("campaign", "value", "as_id"),
    [
        ("campaign: Password reset", "Password reset", None),
        ("campaign: 42", 42, 42),
        ('campaign: "42"', "42", 42),
        ("campaign: ' 7 '", " 7 ", 7),
        ('campaign: "٤٢"', "٤٢", None),  # Arabic-Indic digits: a name, not an id
    ],
)
def test_a_campaign_is_a_name_or_an_id(campaign: str, value: object, as_id: int | None) -> None:
    seg = parse_config(soap(campaign=campaign), "c.yaml").segments["PasswordReset"]
    assert seg.campaign == value and type(seg.campaign) is type(value)
    assert seg.campaign is not None and campaign_id(seg.campaign) == as_id


# Every rule: the config, and exactly the problems it gives (file:line: path: message).
REFUSALS = [
    pytest.param(
        soap()
        .replace("customer_id\n    ", "hashed_email\n    ", 1)
        .replace("identifier: customer_id", "identifier: hashed_email"),
        [
            "c.yaml:5: connectors.realtime.identifier: hashed_email cannot work over SOAP: a hash cannot be looked "
            "up or mailed; use customer_id (the Deployteq externalId) or email (the plain address)"
        ],
        id="hashed_email over SOAP",
    ),
    *(
        pytest.param(
            soap(f"    {key}: {value}\n"),
            [
                f"c.yaml:6: connectors.realtime.{key}: {key} is a webhook setting; a SOAP connector (api: soap) does not take it"
            ],
            id=f"webhook key {key}",
        )
        for key, value in [
            ("endpoint", WEBHOOK),
            ("auth", "bearer"),
            ("batch_size", "900"),  # refused as a key, not also for its value
            ("max_body_bytes", "1000"),
            ("daily_limit", "null"),
            ("partner_number", "1020"),
        ]
    ),
    pytest.param(
        soap("    platform: login\n    soap_url: https://soap.example/x\n"),
        [
            "c.yaml:7: connectors.realtime.soap_url: give platform or soap_url, not both (soap_url is the whole base address)"
        ],
        id="platform and soap_url",
    ),
    pytest.param(
        soap("    platform: staging\n"),
        ["c.yaml:6: connectors.realtime.platform: Input should be 'secure' or 'login'"],
        id="unknown platform",
    ),
    pytest.param(
        soap("    soap_url: http://soap.example/x\n"),
        [
            "c.yaml:6: connectors.realtime.soap_url: soap_url must use https "
            "(plain http is allowed only for loopback hosts such as 127.0.0.1)"
        ],
        id="plain http",
    ),
    pytest.param(
        soap(f"    soap_url: {SECURE}?wsdl\n"),
        [
            "c.yaml:6: connectors.realtime.soap_url: soap_url is the base address without a query (canopycli adds "
            "?version=<soap_version>&type=literal); remove everything from the '?' or '#'"
        ],
        id="a query",
    ),
    pytest.param(
        soap(f"    soap_url: {SECURE}?version=1.24&type=literal\n"),
        [
            "c.yaml:6: connectors.realtime.soap_url: soap_url is the base address without a query (canopycli adds "
            "?version=<soap_version>&type=literal); remove everything from the '?' or '#'"
        ],
        id="the version in the url",
    ),
    pytest.param(
        soap(f"    soap_url: {SECURE}?uuid=abc&token=abc123\n"),
        [
            "c.yaml:6: connectors.realtime.soap_url: soap_url carries a token= query parameter; move the token to "
            "`token:` (e.g. token: ${CANOPY_TOKEN}) and remove it from the URL"
        ],
        id="a token in the url",
    ),
    pytest.param(
        soap("    soap_url: not a url\n"),
        [
            "c.yaml:6: connectors.realtime.soap_url: soap_url contains whitespace or a control character (a stray "
            "space or line break from a copy-paste or an environment variable?); remove it"
        ],
        id="not a url",
    ),
    pytest.param(
        soap("    soap_url: ftp://soap.example/x\n"),
        [
            "c.yaml:6: connectors.realtime.soap_url: soap_url is not a valid http(s) URL "
            "(expected https://secure.myclang.com/app/api/soap/public/index.php)"
        ],
        id="ftp",
    ),
    pytest.param(
        soap("    soap_version: 1.20\n"),
        [
            'c.yaml:6: connectors.realtime.soap_version: write the version in quotes, e.g. soap_version: "1.24" '
            "(YAML reads 1.20 as the number 1.2)"
        ],
        id="a version YAML reads as a number",
    ),
    pytest.param(
        soap('    soap_version: "1.24&type=rpc"\n'),
        ["c.yaml:6: connectors.realtime.soap_version: String should match pattern '^[0-9A-Za-z][0-9A-Za-z.-]*$'"],
        id="a version that would change the query",
    ),
    pytest.param(
        soap("    auth_fault_codes: [auth]\n"),
        [
            "c.yaml:6: connectors.realtime.auth_fault_codes.0: Input should be a valid integer, "
            "unable to parse string as an integer"
        ],
        id="a fault code that is no number",
    ),
    pytest.param(
        SOAP.replace("    campaign: Password reset\n", ""),
        [
            "c.yaml:7: segments.PasswordReset.campaign: Field required: connector 'realtime' speaks SOAP, so the "
            "segment names the campaign its profiles join (a name or id from `canopycli campaigns`)"
        ],
        id="no campaign",
    ),
    pytest.param(
        soap(campaign='campaign: ""'),
        ["c.yaml:9: segments.PasswordReset.campaign: is empty: give a campaign name or id (see `canopycli campaigns`)"],
        id="an empty campaign",
    ),
    pytest.param(
        soap(campaign="campaign: 0"),
        ["c.yaml:9: segments.PasswordReset.campaign: a campaign id is a positive number"],
        id="campaign 0",
    ),
    pytest.param(
        soap(campaign="campaign: true"),
        ["c.yaml:9: segments.PasswordReset.campaign: expected a campaign name or id (see `canopycli campaigns`)"],
        id="campaign true",
    ),
    pytest.param(
        soap(campaign="campaign: [Newsletter]"),
        ["c.yaml:9: segments.PasswordReset.campaign: expected a campaign name or id (see `canopycli campaigns`)"],
        id="a list of campaigns",
    ),
    pytest.param(
        soap().replace("api: soap", "api: rest"),
        ["c.yaml:3: connectors.realtime.api: Input should be 'webhook' or 'soap'"],
        id="an unknown api",
    ),
]

WEBHOOK_CONFIG = f"""\
connectors:
  main:
    endpoint: {WEBHOOK}
    token: ${{CANOPY_TOKEN}}
    identifier: hashed_email
segments:
  WelcomeFlow:
    connector: main
    id_column: email
"""

REFUSALS += [
    *(
        pytest.param(
            WEBHOOK_CONFIG.replace(
                "    identifier: hashed_email\n", f"    identifier: hashed_email\n    {key}: {value}\n"
            ),
            [f"c.yaml:6: connectors.main.{key}: {key} is a SOAP setting; add api: soap, or remove it"],
            id=f"SOAP key {key} on a webhook",
        )
        for key, value in [
            ("platform", "login"),
            ("soap_url", "https://soap.example/x"),
            ("soap_version", '"1.24"'),
            ("auth_fault_codes", "[150]"),
        ]
    ),
    pytest.param(
        WEBHOOK_CONFIG.replace("identifier: hashed_email", "identifier: email"),
        [
            "c.yaml:5: connectors.main.identifier: email is for SOAP connectors (api: soap); the webhook takes "
            "hashed_email (canopycli hashes the address) or customer_id"
        ],
        id="email on a webhook",
    ),
    pytest.param(
        WEBHOOK_CONFIG.replace(f"    endpoint: {WEBHOOK}\n", ""),
        ["c.yaml:2: connectors.main.endpoint: Field required"],
        id="a webhook without endpoint",
    ),
    pytest.param(
        WEBHOOK_CONFIG.replace(f"    endpoint: {WEBHOOK}\n", "    api: webhook\n"),
        ["c.yaml:2: connectors.main.endpoint: Field required"],
        id="api: webhook without endpoint",
    ),
    pytest.param(
        WEBHOOK_CONFIG + "    campaign: Newsletter\n",
        [
            "c.yaml:10: segments.WelcomeFlow.campaign: campaign is for SOAP connectors; connector 'main' is a "
            "webhook, whose mapping in Deployteq decides what happens to the profiles (remove campaign:, or use a "
            "connector with api: soap)"
        ],
        id="a campaign on a webhook segment",
    ),
]


@pytest.mark.parametrize(("text", "expected"), REFUSALS)
def test_refused(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_every_problem_of_a_soap_config_is_listed_at_once() -> None:
    text = soap(f"    endpoint: {WEBHOOK}\n    timeout: -1\n    soap_version: 1.2\n").replace(
        "    campaign: Password reset\n", ""
    )
    got = problems(text.replace("identifier: customer_id", "identifier: hashed_email"))
    assert [p.split(": ")[1] for p in got] == [
        "segments.PasswordReset.campaign",
        "connectors.realtime.identifier",
        "connectors.realtime.endpoint",
        "connectors.realtime.timeout",
        "connectors.realtime.soap_version",
    ]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (TOKEN + "\n", "token contains whitespace or a control character"),
        ("  ", "token is empty"),
    ],
)
def test_the_soap_token_passes_the_token_checks(monkeypatch: pytest.MonkeyPatch, token: str, message: str) -> None:
    monkeypatch.setenv("CANOPY_TOKEN", token)
    [p] = problems(SOAP)
    assert p.startswith(f"c.yaml:4: connectors.realtime.token: {message}")
    assert TOKEN not in p


def test_a_soap_connector_built_in_code_follows_the_same_rules() -> None:
    with pytest.raises(ValueError, match="batch_size is a webhook setting"):
        Connector.model_validate({"api": "soap", "token": "t0ken-1234", "identifier": "email", "batch_size": 10})
    with pytest.raises(ValueError, match="endpoint: Field required"):
        Connector.model_validate({"token": "t0ken-1234", "identifier": "customer_id"})


# --- validate-config -------------------------------------------------------------------------------

runner = CliRunner()


def test_validate_config_shows_a_soap_connector_and_the_campaigns(tmp_path: Path) -> None:
    text = soap("    soap_url: http://127.0.0.1:8042/soap;session=s3cr3t\n    auth_fault_codes: [150]\n")
    text += "  Welcome:\n    connector: web\n    id_column: email\n"
    text = text.replace(
        "segments:\n",
        f"  web:\n    endpoint: {WEBHOOK}\n    token: ${{CANOPY_TOKEN}}\n    identifier: hashed_email\nsegments:\n",
    )
    text += "  Numbered:\n    connector: realtime\n    id_column: customer_id\n    campaign: '17'\n"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    r = runner.invoke(app, ["validate-config", str(cfg)])
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert "2 connector(s), 3 segment(s)" in out
    assert "api               soap (per profile, real time)" in out
    assert "address           http://127.0.0.1:8042/soap;session=***?version=1.24&type=literal (soap_url)" in out
    assert "identifier        customer_id (customerType CLANG_ID)" in out
    assert "auth_fault_codes  150" in out
    assert "token             *** (set)" in out
    assert "'Password reset'" in out and "id 17" in out
    assert "s3cr3t" not in out and not grep_token(r.stdout, r.stderr)
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["Welcome"], ["PasswordReset"])}
    assert lines["Welcome"].rstrip().endswith("-")


def test_validate_config_without_soap_shows_no_campaign_column(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(WEBHOOK_CONFIG)
    r = runner.invoke(app, ["validate-config", str(cfg)])
    assert r.exit_code == 0 and "campaign" not in r.stdout


def test_the_readme_soap_example_is_valid() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("errors on a webhook connector.")[1].split("```yaml\n")[1].split("```")[0]
    cfg = parse_config(block.replace("${CLANG_TOKEN}", "${CANOPY_TOKEN}"), "README.md")
    assert cfg.connectors["realtime"].is_soap and cfg.segments["PasswordReset"].campaign == "Password reset"
