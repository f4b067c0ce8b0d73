"""Numbers outside params take ASCII digits only too: ``str.isdigit()`` and ``\\d`` also take
Arabic-Indic, full-width and superscript digits, and ``int()`` then parses or refuses them."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.deployteq.deliver import parse_retry_after
from canopycli.model import DELIVERED, FAILED

from .test_send import batch, conn, webhook_sender


@pytest.mark.parametrize("value", ["\u00b2", "\u0661\u0662\u0660", "\uff15"])
def test_retry_after_in_other_digits_is_not_a_delay(value: str) -> None:
    assert parse_retry_after(value) is None  # "²" raised ValueError, "١٢٠" was 120 s


@pytest.mark.parametrize("header", ["Retry-After", "X-Clang-Request-Count"])
@pytest.mark.parametrize("value", ["\u00b2", "\u0661\u0662\u0660", "9" * 5000])
def test_a_reply_header_in_other_digits_neither_crashes_nor_counts(header: str, value: str) -> None:
    counted: list[int] = []
    sleeps: list[float] = []
    status = 503 if header == "Retry-After" else 200

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=[(header.encode(), value.encode())], json={})

    snd = webhook_sender(conn(), reply, sleep=sleeps.append, on_count=counted.append)
    got = snd.send(batch())  # was: ValueError out of the sender, "This is a bug" in the CLI
    assert got.outcome == (FAILED if status == 503 else DELIVERED)
    assert counted == []
    assert all(s < 120 for s in sleeps)


@pytest.mark.parametrize("age", ["\u0663\u0660d", "\uff13\uff10d", "1_0d"])
def test_runs_prune_takes_ascii_digits_only(age: str) -> None:
    r = CliRunner().invoke(app, ["runs", "prune", "--older-than", age])
    assert r.exit_code == 2 and "--older-than takes a number and d, h or m" in r.stderr  # "٣٠d" pruned 30 days


@pytest.mark.parametrize("age", ["99999999999d", "999999999d", "9" * 5000 + "d"])
def test_runs_prune_past_the_calendar_is_a_usage_error_not_a_bug(age: str) -> None:
    r = CliRunner().invoke(app, ["runs", "prune", "--older-than", age])
    assert r.exit_code == 2, r.output
    assert "This is a bug" not in r.stderr and r.stderr.startswith("Error: --older-than")


def test_max_remove_takes_ascii_digits_only() -> None:
    r = CliRunner().invoke(app, ["sync", "x.csv", "--max-remove", "\u0665\u0660%"])
    assert r.exit_code == 2 and "--max-remove takes a percentage" in r.stderr  # "٥٠%" was 50%
