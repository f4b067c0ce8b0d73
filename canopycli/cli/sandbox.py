"""sandbox and demo: the local emulators (webhook receiver and SOAP API), and a push to one with the sample."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

from ..config import Config, Connector, EngagementSettings, Param, Segment, resolve
from ..emulators.soap import DEFAULT_CAMPAIGNS
from ..emulators.soap_xml import AUTH_FAILED
from ..emulators.webhook import Sandbox
from ..engagements.pull import pull
from ..engagements.report import by_day, report
from ..errors import UsageError
from ..pipeline.run import PushOptions, run_push
from ..store import Store
from .core import ProgressView, app, emit, handle_errors, say
from .engagements import render_engagements
from .options import QuietOpt, ReportOpt
from .push import check_outputs, finish


@app.command()
@handle_errors
def sandbox(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8042,
    token: Annotated[
        str | None, typer.Option(help="Token to accept. Default: $CANOPY_TOKEN, else a new random one.")
    ] = None,
    daily_limit: Annotated[int, typer.Option(help="Requests per day before 429 (0: no limit).")] = 50_000,
    fail_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of requests answered 500.")] = 0.0,
    fail_first: Annotated[int, typer.Option(min=0, help="Answer the first N requests with 500.")] = 0,
    fail_requests: Annotated[str, typer.Option(help="Answer these requests (1-based, like 2,5) with 500.")] = "",
    drop_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of requests whose connection is dropped.")
    ] = 0.0,
    slow_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of requests answered only after --slow-seconds.")
    ] = 0.0,
    slow_seconds: Annotated[float, typer.Option(min=0, help="Delay for --slow-rate requests.")] = 35.0,
    latency: Annotated[float, typer.Option(min=0, help="Seconds added to every request.")] = 0.0,
    record: Annotated[Path | None, typer.Option(help="Append accepted batches to this JSONL file.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the injected faults (reproducible runs).")] = None,
    max_requests: Annotated[int | None, typer.Option(min=1, help="Stop after this many requests.")] = None,
    duration: Annotated[float | None, typer.Option(min=0.1, help="Stop after this many seconds.")] = None,
    campaigns: Annotated[
        str,
        typer.Option(help="The SOAP emulator's campaigns, comma-separated; '12=Password reset' fixes an id."),
    ] = ",".join(DEFAULT_CAMPAIGNS),
    soap_auth_fault_code: Annotated[
        int, typer.Option(help="Fault code the SOAP emulator answers a wrong token (uuid) with.")
    ] = AUTH_FAILED,
    client_secret: Annotated[
        str | None,
        typer.Option(help="The Analytics Events API's client secret. Default: $DT_CLIENT_SECRET, else a new one."),
    ] = None,
) -> None:
    """Run local emulators of the Deployteq webhook receiver, SOAP API and Analytics Events API on 127.0.0.1."""
    tok = token or os.environ.get("CANOPY_TOKEN") or secrets.token_urlsafe(24)
    secret = client_secret or os.environ.get("DT_CLIENT_SECRET") or f"sandbox-{secrets.token_urlsafe(18)}"
    sb = Sandbox(
        tok,
        port=port,
        daily_limit=daily_limit or None,
        fail_rate=fail_rate,
        fail_first=fail_first,
        fail_requests=_numbers(fail_requests),
        drop_rate=drop_rate,
        slow_rate=slow_rate,
        slow_seconds=slow_seconds,
        latency=latency,
        record=record,
        seed=seed,
        max_requests=max_requests,
        campaigns=campaigns,
        soap_auth_fault_code=soap_auth_fault_code,
        client_secret=secret,
    )
    typer.echo(f"endpoint: {sb.endpoint}")
    typer.echo(f"soap: {sb.soap_url}  (WSDL: ?wsdl; campaigns: {_campaign_list(sb)})")
    typer.echo(
        f"engagements: token_url {sb.analytics.token_url}  api_url {sb.analytics.api_url}  client_id {sb.analytics.client_id}"
    )
    if not (token or os.environ.get("CANOPY_TOKEN")):
        typer.echo(f"token: {tok}  (sandbox only; export CANOPY_TOKEN={tok} and use token: ${{CANOPY_TOKEN}})")
    if not (client_secret or os.environ.get("DT_CLIENT_SECRET")):
        typer.echo(f"client_secret: {secret}  (sandbox only; export DT_CLIENT_SECRET={secret})")
    typer.echo(
        f"stats: {sb.base_url}/_sandbox/stats  soap state: {sb.base_url}/_sandbox/soap"
        f"  engagements: {sb.base_url}/_sandbox/analytics",
        err=True,
    )
    sys.stdout.flush()
    sb.start()
    try:
        sb.serve(duration)  # until --max-requests, --duration or Ctrl-C
    finally:
        sb.stop()
        typer.echo(f"sandbox stopped: {json.dumps(sb.snapshot())}", err=True)
        calls = sb.soap.snapshot()["calls"]
        if calls:
            typer.echo(f"soap calls: {json.dumps(calls)}", err=True)


def _campaign_list(sb: Sandbox) -> str:
    return ", ".join(f"{cid}={name}" for cid, name in sb.soap.campaigns.items()) or "none"


def _numbers(text: str) -> set[int]:
    try:
        return {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise UsageError(f"--fail-requests takes request numbers like 2,5, got {text!r}") from None


DEMO_PARAMS = [
    Param(name="firstName", column="first_name"),
    Param(name="city"),
    Param(name="gender", type="gender"),
    Param(name="newsletter", type="optin"),
    Param(name="birthDate", column="birth_date", type="date"),
]


@app.command()
@handle_errors
def demo(
    quiet: QuietOpt = False,
    report_json: ReportOpt = None,
    keep: Annotated[
        bool,
        typer.Option("--keep", metavar="", help="Keep the demo's folder (what the sandbox received, rejected rows)."),
    ] = False,
    relay: Annotated[
        bool,
        typer.Option("--relay", help="Start a relay too, post sample events in all three shapes, show them arrive."),
    ] = False,
    soap: Annotated[
        bool,
        typer.Option("--soap", help="Real time instead: push sample profiles over SOAP to the emulator's campaign."),
    ] = False,
    engagements: Annotated[
        bool,
        typer.Option(
            "--engagements", help="The loop: push, pull what came back, report it, push again holding back the bounced."
        ),
    ] = False,
) -> None:
    """Push the packaged sample segment to a built-in sandbox: no config, no credentials."""
    check_outputs(report_json)
    workdir = Path(tempfile.mkdtemp(prefix="canopycli-demo-"))
    try:
        if relay + soap + engagements > 1:
            raise UsageError("--relay, --soap and --engagements are separate demos: pick one")
        if engagements:
            _demo_engagements(workdir, quiet, report_json)
        elif relay:
            from .relay import demo_relay

            demo_relay(workdir, quiet)
        elif soap:
            _demo_soap(workdir, quiet, report_json)
        else:
            _demo(workdir, quiet, report_json, keep)
    finally:
        if not keep:  # the rejects file holds the sample's raw addresses: leave nothing behind
            shutil.rmtree(workdir, ignore_errors=True)


def _demo(workdir: Path, quiet: bool, report_json: Path | None, keep: bool) -> None:
    recording = workdir / "received.jsonl"
    rejects = workdir / "rejects.csv"
    token = secrets.token_urlsafe(24)
    if not quiet:
        fate = "kept (--keep)" if keep else "removed when the demo ends (--keep keeps it)"
        say(f"demo: working in {workdir}, {fate}")
    with Sandbox(token, port=0, record=recording) as sb:
        resolved = resolve(demo_config(sb.endpoint, token), "WelcomeFlow", "(demo)")
        sample = resources.files("canopycli") / "data" / "sample_segment.csv"
        with resources.as_file(sample) as sample_path:
            if not quiet:
                say(f"demo: pushing {sample_path.name} to a sandbox webhook at {sb.endpoint}")
            opts = PushOptions(str(sample_path), rejects=rejects, state_dir=workdir / "state")
            with ProgressView(quiet, "demo") as progress:
                report = run_push(resolved, opts, progress=progress)
        stats = sb.snapshot()
    accepted = f"The sandbox accepted {stats['accepted']} batches ({stats['profiles']:,} profiles)"
    after: tuple[str, ...]
    if keep:
        after = (f"{accepted}, recorded in {recording}", f"Rejected rows, with line numbers and reasons: {rejects}")
    else:
        after = (f"{accepted}. Run `canopycli demo --keep` to keep what it received and the rejected rows.",)
    finish(report, report_json, quiet, rejects if keep else None, after, None if keep else "--keep keeps them all")


def demo_config(endpoint: str, token: str, suppress: list[str] | None = None) -> Config:
    """The demo's config, in memory: one sandbox connector and the sample's segment."""
    connector = Connector(endpoint=endpoint, token=token, identifier="hashed_email")  # type: ignore[arg-type]
    segment = Segment(connector="sandbox", id_column="email", params=DEMO_PARAMS, suppress=suppress or [])  # type: ignore[arg-type]
    return Config(connectors={"sandbox": connector}, segments={"WelcomeFlow": segment})


SOAP_DEMO_ROWS = 100


def _demo_soap(workdir: Path, quiet: bool, report_json: Path | None) -> None:
    """The first rows of the sample, pushed twice over SOAP (identifier: email) into the emulator's
    "Password reset" campaign: the second push reuses the customer ids the first one learned."""
    sample = resources.files("canopycli") / "data" / "sample_segment.csv"
    lines = sample.read_text(encoding="utf-8").splitlines(keepends=True)[: SOAP_DEMO_ROWS + 1]
    src = workdir / "sample_head.csv"
    src.write_text("".join(lines), encoding="utf-8")
    token = secrets.token_urlsafe(24)
    with Sandbox(token, port=0) as sb:
        connector = Connector(api="soap", soap_url=sb.soap_url, token=token, identifier="email")  # type: ignore[arg-type]
        segment = Segment(connector="realtime", id_column="email", campaign="Password reset", params=DEMO_PARAMS)
        config = Config(connectors={"realtime": connector}, segments={"PasswordReset": segment})
        resolved = resolve(config, "PasswordReset", "(demo)")
        if not quiet:
            say(f"demo: pushing {SOAP_DEMO_ROWS} sample profiles over SOAP to {sb.soap_url}, campaign 'Password reset'")
        first = run_push(resolved, PushOptions(str(src), state_dir=workdir / "state"))
        report = run_push(resolved, PushOptions(str(src), state_dir=workdir / "state"))
        reset = next(c for c in sb.soap.snapshot()["campaigns"] if c["name"] == "Password reset")
    after = (
        f"First push: {first.calls} SOAP calls for {first.profiles_delivered} profiles (find, insert, add to the"
        f" campaign); the repeat above: {report.calls} (the customer ids were remembered).",
        f"The campaign 'Password reset' now has {len(reset['members'])} members.",
    )
    finish(report, report_json, quiet, None, after, None)


def _demo_engagements(workdir: Path, quiet: bool, report_json: Path | None) -> None:
    """The whole loop on the sandbox: push the sample, pull the engagements the emulator made of
    it, report them, and push again with suppress: [bounce, complaint]."""
    token = secrets.token_urlsafe(24)
    state = workdir / "state"
    with Sandbox(token, port=0) as sb:
        config = demo_config(sb.endpoint, token, suppress=["bounce", "complaint"])
        settings = EngagementSettings(
            client_id=sb.analytics.client_id,
            client_secret=SecretStr(sb.analytics.client_secret),
            token_url=sb.analytics.token_url,
            api_url=sb.analytics.api_url,
        )
        resolved = resolve(config, "WelcomeFlow", "(demo)")
        sample = resources.files("canopycli") / "data" / "sample_segment.csv"
        with resources.as_file(sample) as sample_path:
            if not quiet:
                say(f"demo 1/4: pushing {sample_path.name} to the sandbox (nothing is held back yet)")
            first = run_push(resolved, PushOptions(str(sample_path), state_dir=state))
            if not quiet:
                say(
                    f"demo 2/4: pulling what came back from the sandbox's Analytics Events API at {sb.analytics.api_url}"
                )
            today = dt.datetime.now(dt.UTC).date()
            with Store(state) as store:
                pulled = pull(settings, store)
                figures = report(store, since=today, until=today, by="campaign")
                days = by_day(store, since=today, until=today)
            if not quiet:
                say("demo 3/4: the report (canopycli engagements report --by campaign):")
            emit(lambda out: render_engagements(figures, days, None, out))
            if not quiet:
                say("demo 4/4: pushing the sample again, with suppress: [bounce, complaint] on the segment")
            second = run_push(resolved, PushOptions(str(sample_path), state_dir=state))
    after = (
        f"First push: {first.profiles_delivered:,} profiles delivered. Pulled {pulled.received:,} engagement events"
        f" ({figures['totals']['bounces']:,} bounces, {figures['totals']['complaints']:,} complaints).",
        f"Second push: {second.rows_suppressed:,} profiles held back (hard bounces and complaints), "
        f"{second.profiles_delivered:,} delivered; --no-suppress would send them anyway.",
    )
    finish(second, report_json, quiet, None, after, "the sample has them on purpose")
