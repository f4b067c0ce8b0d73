"""The campaign list of a SOAP connector: resolution, the 10-minute cache, `canopycli campaigns` and
`validate-config --online`, against a fake client (the SOAP client itself has its own tests)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.config import Connector, Segment, parse_config
from canopycli.deployteq import campaigns as mod
from canopycli.deployteq.campaigns import CACHE_SECONDS, campaign_list, resolve_campaign
from canopycli.deployteq.soap import (
    Campaign,
    SoapCredentialsError,
    SoapError,
    SoapFault,
    SoapProtocolError,
    SoapTransient,
)
from canopycli.errors import CredentialsError, ExitCode, ServiceError, UsageError
from canopycli.store import Store, schema

from .conftest import TOKEN, grep_token

CAMPAIGNS = [
    Campaign(id=12, name="Password reset", type="campaign"),
    Campaign(id=14, name="Newsletter", type="campaign"),
    Campaign(id=2031, name="Order confirmation", type="campaign"),
]
WEBHOOK = "https://webhook.myclang.com/app/api/rest/public/v2/project/datahook/data-receiver/32-x"


# --- a fake SOAP client, put where campaigns.py builds its client ----------------------------------


def _error(cls: type[SoapError], text: str, code: str | None = None) -> SoapError:
    """An instance of the client's error class, whatever its constructor takes."""

    class Raised(cls):  # type: ignore[valid-type, misc]
        def __init__(self) -> None:
            Exception.__init__(self, f"fault {code}: {text}" if code else text)
            self.code, self.text = code, text

        def __str__(self) -> str:
            return str(self.args[0])

    return Raised()


REJECTED = _error(SoapCredentialsError, "Invalid uuid", "150")


class FakeClient:
    """Answers ``campaigns()`` with ``answer`` (a list, or an error to raise); records who asked."""

    def __init__(self, log: list[tuple[str, str]], answer: list[Campaign] | SoapError, address: str, token: str):
        self.log, self.answer, self.address, self.token = log, answer, address, token
        self.calls = 0
        self.closed = False

    def campaigns(self) -> list[Campaign]:
        self.calls += 1
        self.log.append((self.address, self.token))
        if isinstance(self.answer, SoapError):
            raise self.answer
        return list(self.answer)

    def close(self) -> None:
        self.closed = True


class Fake:
    def __init__(self) -> None:
        self.answer: list[Campaign] | SoapError = CAMPAIGNS
        self.by_token: dict[str, list[Campaign] | SoapError] = {}
        self.log: list[tuple[str, str]] = []
        self.clients: list[FakeClient] = []

    def __call__(self, connector: Connector, transport: Any = None) -> FakeClient:
        token = connector.token.get_secret_value()
        client = FakeClient(self.log, self.by_token.get(token, self.answer), connector.endpoint, token)
        self.clients.append(client)
        return client


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    f = Fake()
    monkeypatch.setattr(mod, "client_for", f)
    yield f
    assert all(c.closed for c in f.clients)  # every client is closed, whatever happened


def soap_connector(token: str = TOKEN, **extra: Any) -> Connector:
    return Connector.model_validate({"api": "soap", "token": token, "identifier": "customer_id", **extra})


def segment(campaign: int | str | None) -> Segment:
    return Segment(connector="realtime", id_column="customer_id", campaign=campaign)


# --- resolution -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("campaign", "expected"),
    [("Password reset", 12), (14, 14), ("2031", 2031), (" 14 ", 14)],
    ids=["name", "int id", "numeric-string id", "padded id"],
)
def test_a_campaign_resolves_by_name_or_id(campaign: int | str, expected: int) -> None:
    assert resolve_campaign(segment(campaign), CAMPAIGNS) == expected


@pytest.mark.parametrize(
    ("campaign", "message", "hint"),
    [
        (
            "Pasword reset",
            "segment PasswordReset: no executable campaign is named 'Pasword reset'",
            "Did you mean 'Password reset' (id 12)? See them all with: canopycli campaigns",
        ),
        (
            "password RESET",
            "segment PasswordReset: no executable campaign is named 'password RESET'",
            "Did you mean 'Password reset' (id 12)? See them all with: canopycli campaigns",
        ),
        (
            "Order confirmations",
            "segment PasswordReset: no executable campaign is named 'Order confirmations'",
            "Did you mean 'Order confirmation' (id 2031)? See them all with: canopycli campaigns",
        ),
        (
            "Birthday",
            "segment PasswordReset: no executable campaign is named 'Birthday'",
            "See them all with: canopycli campaigns",
        ),
        (
            99,
            "segment PasswordReset: campaign id 99 is not among the 3 executable campaigns of this token",
            "See them all with: canopycli campaigns",
        ),
        (
            "99",
            "segment PasswordReset: campaign id 99 is not among the 3 executable campaigns of this token",
            "See them all with: canopycli campaigns",
        ),
    ],
)
def test_an_unknown_campaign_is_a_usage_error_with_close_matches(campaign: int | str, message: str, hint: str) -> None:
    with pytest.raises(UsageError) as e:
        resolve_campaign(segment(campaign), CAMPAIGNS, where="segment PasswordReset")
    assert (e.value.message, e.value.hint, e.value.exit_code) == (message, hint, ExitCode.USAGE)


def test_several_close_matches_are_listed_nearest_first() -> None:
    listed = [*CAMPAIGNS, Campaign(id=15, name="Newsletters", type="campaign")]
    with pytest.raises(UsageError) as e:
        resolve_campaign(segment("Newsleter"), listed)
    assert (
        e.value.hint
        == "Did you mean 'Newsletter' (id 14), 'Newsletters' (id 15)? See them all with: canopycli campaigns"
    )


def test_a_name_two_campaigns_share_asks_for_the_id() -> None:
    listed = [*CAMPAIGNS, Campaign(id=40, name="Newsletter", type="campaign")]
    with pytest.raises(UsageError) as e:
        resolve_campaign(segment("Newsletter"), listed)
    assert (e.value.message, e.value.hint) == (
        "2 campaigns are named 'Newsletter' (ids 14, 40)",
        "Give the id instead.",
    )
    assert resolve_campaign(segment(40), listed) == 40


# --- the cache --------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_list_is_cached_ten_minutes(fake: Fake, tmp_path: Path) -> None:
    clock, conn = Clock(), soap_connector()
    assert campaign_list(conn, tmp_path, clock=clock) == CAMPAIGNS
    clock.now += CACHE_SECONDS - 1
    assert campaign_list(conn, tmp_path, clock=clock) == CAMPAIGNS
    assert len(fake.log) == 1
    clock.now += 1  # ten minutes after the fetch: stale
    assert campaign_list(conn, tmp_path, clock=clock) == CAMPAIGNS
    assert len(fake.log) == 2
    clock.now -= 3600  # a clock set back does not make an entry fresh for longer
    campaign_list(conn, tmp_path, clock=clock)
    assert len(fake.log) == 3


def test_fresh_bypasses_the_cache_and_refreshes_it(fake: Fake, tmp_path: Path) -> None:
    clock, conn = Clock(), soap_connector()
    campaign_list(conn, tmp_path, clock=clock)
    fake.answer = CAMPAIGNS[:1]
    assert campaign_list(conn, tmp_path, fresh=True, clock=clock) == CAMPAIGNS[:1]
    assert campaign_list(conn, tmp_path, clock=clock) == CAMPAIGNS[:1]  # the refreshed list
    assert len(fake.log) == 2


def test_the_cache_is_keyed_by_address_and_token_hash_never_the_token(fake: Fake, tmp_path: Path) -> None:
    clock = Clock()
    other = "tok-OTHER-1234567890abcdef"
    fake.by_token[other] = CAMPAIGNS[1:]
    with Store(tmp_path) as store:  # a Store or a state folder
        assert campaign_list(soap_connector(), store, clock=clock) == CAMPAIGNS
        assert campaign_list(soap_connector(other), store, clock=clock) == CAMPAIGNS[1:]
        assert campaign_list(soap_connector(platform="login"), store, clock=clock) == CAMPAIGNS
        assert campaign_list(soap_connector(other), store, clock=clock) == CAMPAIGNS[1:]  # cached
        assert campaign_list(soap_connector(), store, clock=clock) == CAMPAIGNS
        rows = store.db.execute("SELECT address, token_sha256 FROM campaign_cache ORDER BY address").fetchall()
    assert [a for a, _ in fake.log] == [
        "https://secure.myclang.com/app/api/soap/public/index.php?version=1.24&type=literal",
        "https://secure.myclang.com/app/api/soap/public/index.php?version=1.24&type=literal",
        "https://login.myclang.com/app/api/soap/public/index.php?version=1.24&type=literal",
    ]
    assert {h for _, h in rows} == {hashlib.sha256(t.encode()).hexdigest() for t in (TOKEN, other)}
    assert len(rows) == 3
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not any(TOKEN.encode() in p.read_bytes() or other.encode() in p.read_bytes() for p in written)


def test_a_rejected_token_drops_its_entry_and_exits_4(fake: Fake, tmp_path: Path) -> None:
    clock, conn = Clock(), soap_connector()
    campaign_list(conn, tmp_path, clock=clock)
    fake.answer = REJECTED
    with pytest.raises(CredentialsError) as e:
        campaign_list(conn, tmp_path, fresh=True, clock=clock)
    assert e.value.exit_code == ExitCode.CREDENTIALS
    assert e.value.message == (
        "Deployteq rejected the token of the SOAP connector at "
        "https://secure.myclang.com/app/api/soap/public/index.php?version=1.24&type=literal (fault 150: Invalid uuid)"
    )
    with Store(tmp_path) as store:
        assert store.db.execute("SELECT count(*) FROM campaign_cache").fetchone() == (0,)
    with pytest.raises(CredentialsError):  # no stale list stands in for a token that no longer works
        campaign_list(conn, tmp_path, clock=clock)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            _error(SoapTransient, "timed out after 30 s"),
            "cannot get the campaign list from {a} (timed out after 30 s)",
        ),
        (
            _error(SoapProtocolError, "the reply is an HTML page, not XML"),
            "the campaign list from {a} is not a SOAP answer canopycli understands (the reply is an HTML page, not XML)",
        ),
        (
            _error(SoapFault, "Internal error", "999"),
            "Deployteq answered the campaign list call at {a} with a fault (fault 999: Internal error)",
        ),
    ],
)
def test_other_soap_errors_exit_1_and_keep_the_cache(
    fake: Fake, tmp_path: Path, error: SoapError, message: str
) -> None:
    clock, conn = Clock(), soap_connector()
    campaign_list(conn, tmp_path, clock=clock)
    fake.answer = error
    with pytest.raises(ServiceError) as e:
        campaign_list(conn, tmp_path, fresh=True, clock=clock)
    assert e.value.exit_code == ExitCode.FAILED
    assert e.value.message == message.format(a=conn.endpoint)
    assert campaign_list(conn, tmp_path, clock=clock) == CAMPAIGNS  # still cached


def test_client_for_builds_a_client_for_the_connectors_address() -> None:
    client = mod.client_for(soap_connector(soap_url="http://127.0.0.1:9/soap"))
    try:
        assert client.calls == 0
    finally:
        client.close()


# --- the CLI ----------------------------------------------------------------------------------------

runner = CliRunner()


def write(tmp_path: Path, *, soap: int = 1, webhook: bool = False, campaigns: dict[str, Any] | None = None) -> Path:
    lines = ["connectors:"]
    names = ["realtime", "backup"][:soap]
    for name in names:
        lines += [f"  {name}:", "    api: soap", "    token: ${CANOPY_TOKEN}", "    identifier: customer_id"]
    if webhook:
        lines += ["  main:", f"    endpoint: {WEBHOOK}", "    token: ${CANOPY_TOKEN}", "    identifier: hashed_email"]
    lines.append("segments:")
    for key, campaign in (campaigns if campaigns is not None else {"PasswordReset": "Password reset"}).items():
        lines += [f"  {key}:", f"    connector: {names[0]}", "    id_column: customer_id", f"    campaign: {campaign}"]
    if webhook:
        lines += ["  Welcome:", "    connector: main", "    id_column: email"]
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), env={"COLUMNS": "100"})
    assert not grep_token(r.stdout, r.stderr)
    return r.exit_code, r.stdout, r.stderr


def test_campaigns_prints_a_table(fake: Fake, tmp_path: Path) -> None:
    code, out, err = invoke("campaigns", "-c", str(write(tmp_path, webhook=True)))
    assert code == 0, err
    assert [line.split() for line in out.splitlines()] == [
        ["campaigns", "of", "realtime"],
        ["id", "name", "type"],
        ["12", "Password", "reset", "campaign"],
        ["14", "Newsletter", "campaign"],
        ["2031", "Order", "confirmation", "campaign"],  # no thousands separator: ids are copied into configs
    ]


def test_campaigns_json(fake: Fake, tmp_path: Path) -> None:
    code, out, err = invoke("campaigns", "-c", str(write(tmp_path)), "--json")
    assert code == 0, err
    assert json.loads(out) == [
        {"id": 12, "name": "Password reset", "type": "campaign"},
        {"id": 14, "name": "Newsletter", "type": "campaign"},
        {"id": 2031, "name": "Order confirmation", "type": "campaign"},
    ]


def test_campaigns_bypasses_the_cache_and_refreshes_it(fake: Fake, tmp_path: Path) -> None:
    cfg = write(tmp_path)
    conn = parse_config(cfg.read_text(), "c.yaml").connectors["realtime"]
    state = Path(os.environ["CANOPYCLI_STATE_DIR"])
    assert invoke("campaigns", "-c", str(cfg))[0] == 0
    assert invoke("campaigns", "-c", str(cfg))[0] == 0
    assert len(fake.log) == 2  # each asks Deployteq
    assert campaign_list(conn, state) == CAMPAIGNS and len(fake.log) == 2  # ... and leaves the list for a push


def test_campaigns_with_a_rejected_token_exits_4(fake: Fake, tmp_path: Path) -> None:
    fake.answer = REJECTED
    code, out, err = invoke("campaigns", "-c", str(write(tmp_path)))
    assert (code, out) == (4, "")
    assert err.splitlines() == [
        "Error: Deployteq rejected the token of the SOAP connector at "
        "https://secure.myclang.com/app/api/soap/public/index.php?version=1.24&type=literal (fault 150: Invalid uuid)",
        "Check `token:` (the SOAP token, not the webhook's) and `platform:` (secure or login: the host the token "
        "belongs to); a fault code that means a bad token goes in `auth_fault_codes`.",
    ]


@pytest.mark.parametrize(
    "error", [_error(SoapTransient, "connection refused"), _error(SoapProtocolError, "empty reply")]
)
def test_campaigns_when_deployteq_fails_exits_1(fake: Fake, tmp_path: Path, error: SoapError) -> None:
    fake.answer = error
    code, out, err = invoke("campaigns", "-c", str(write(tmp_path)))
    assert (code, out) == (1, "")
    assert err.startswith("Error: ") and "Traceback" not in err and len(err.splitlines()) == 2


@pytest.mark.parametrize(
    ("soap", "webhook", "args", "message"),
    [
        (0, True, [], "has no SOAP connector (api: soap); only a SOAP connector has a campaign list"),
        (2, False, [], "has 2 SOAP connectors; choose one with --connector: backup, realtime"),
        (1, True, ["--connector", "main"], "connector 'main' is a webhook, which has no campaign list"),
        (1, False, ["--connector", "realtme"], "no connector 'realtme' in"),
    ],
)
def test_campaigns_without_a_soap_connector_to_ask_exits_2(
    fake: Fake, tmp_path: Path, soap: int, webhook: bool, args: list[str], message: str
) -> None:
    cfg = write(tmp_path, soap=soap, webhook=webhook, campaigns={} if soap == 0 else None)
    code, out, err = invoke("campaigns", "-c", str(cfg), *args)
    assert (code, out) == (2, ""), err
    assert message in err and fake.log == []


def test_campaigns_picks_the_connector_asked_for(fake: Fake, tmp_path: Path) -> None:
    code, out, err = invoke("campaigns", "-c", str(write(tmp_path, soap=2)), "--connector", "backup", "--json")
    assert code == 0, err and len(json.loads(out)) == 3


# --- validate-config --online -----------------------------------------------------------------------


def test_online_check_passes(fake: Fake, tmp_path: Path) -> None:
    cfg = write(tmp_path, webhook=True, campaigns={"PasswordReset": "Password reset", "Orders": "'2031'"})
    code, out, err = invoke("validate-config", str(cfg), "--online")
    assert code == 0, err
    assert out.endswith(
        "online: connector realtime: the token works; 3 executable campaigns\n"
        "online: segment PasswordReset: campaign 'Password reset' is id 12\n"
        "online: segment Orders: campaign '2031' is id 2031\n"
        "online: connector main: not checked online (the webhook has no cheap call)\n"
    )
    assert len(fake.log) == 1


def test_online_check_ignores_the_cache(fake: Fake, tmp_path: Path) -> None:
    cfg = write(tmp_path)
    assert invoke("campaigns", "-c", str(cfg))[0] == 0
    assert invoke("validate-config", str(cfg), "--online")[0] == 0
    assert len(fake.log) == 2


def test_online_check_lists_every_unknown_campaign_and_exits_2(fake: Fake, tmp_path: Path) -> None:
    cfg = write(tmp_path, campaigns={"PasswordReset": "Pasword reset", "Orders": 99, "News": "Newsletter"})
    code, out, err = invoke("validate-config", str(cfg), "--online")
    assert code == 2
    assert "online: segment News: campaign 'Newsletter' is id 14\n" in out
    assert err.splitlines() == [
        "Error: the online check found 2 problems:",
        "  segment PasswordReset: no executable campaign is named 'Pasword reset'",
        "    Did you mean 'Password reset' (id 12)? See them all with: canopycli campaigns",
        "  segment Orders: campaign id 99 is not among the 3 executable campaigns of this token",
        "    See them all with: canopycli campaigns",
    ]


def test_online_check_with_a_rejected_token_exits_4(fake: Fake, tmp_path: Path) -> None:
    fake.answer = REJECTED
    code, out, err = invoke("validate-config", str(write(tmp_path, webhook=True)), "--online")
    assert code == 4
    assert "online: connector main: not checked online (the webhook has no cheap call)" in out
    assert err.startswith("Error: connector realtime: Deployteq rejected the token of the SOAP connector at https://")


def test_online_check_ranks_a_rejected_token_above_an_unknown_campaign(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "tok-OTHER-1234567890abcdef"
    monkeypatch.setenv("OTHER_TOKEN", other)
    cfg = write(tmp_path, soap=2, campaigns={"PasswordReset": "Nope"})
    cfg.write_text(cfg.read_text().replace("token: ${CANOPY_TOKEN}", "token: ${OTHER_TOKEN}", 1))
    fake.by_token[TOKEN] = REJECTED  # backup's token
    code, out, err = invoke("validate-config", str(cfg), "--online")
    assert code == 4
    assert err.splitlines()[0] == "Error: the online check found 2 problems:"
    assert "  segment PasswordReset: no executable campaign is named 'Nope'" in err
    assert "  connector backup: Deployteq rejected the token" in err and other not in err


def test_online_check_when_deployteq_does_not_answer_exits_1(fake: Fake, tmp_path: Path) -> None:
    fake.answer = _error(SoapTransient, "timed out after 30 s")
    code, _, err = invoke("validate-config", str(write(tmp_path)), "--online")
    assert code == 1 and err.startswith("Error: connector realtime: cannot get the campaign list from https://")


def test_without_online_nothing_is_asked(fake: Fake, tmp_path: Path) -> None:
    assert invoke("validate-config", str(write(tmp_path)))[0] == 0
    assert fake.log == []


def test_the_cache_table_comes_with_migration_6(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        names = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "campaign_cache" in names
        assert store.db.execute("PRAGMA user_version").fetchone()[0] >= 6
        assert schema.MIGRATIONS[5].__name__ == "_campaign_cache"  # migration 6 brings it
