"""The SDK's commands of the ``capigate`` CLI: ``validate`` and ``send``.

Registered on the ``main`` group in ``capigate.cli``. User errors end as one clean message and
exit status 1; problems in events are printed one a line as ``FILE:LINE: error: PATH:
MESSAGE [CODE]``, the form editors and CI annotate.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit

import click
import msgspec
from click.core import ParameterSource

from capigate.appsflyer.schema import ios_prefix_missing
from capigate.axon.profiles import PROFILES, ProfileName
from capigate.axon.rules import MAX_BATCH, check_batch
from capigate.client._base import (
    FailedDelivery,
    Prepared,
    RequestResult,
    SendInterrupted,
    SendResult,
    join_path,
    now_ms,
    prefixed,
    shifted,
    strip_prefix,
)
from capigate.client._http import checked_base_url
from capigate.client._options import config_option
from capigate.client._records import Api, Record, Source, read_source
from capigate.endpoint_path import endpoint_of
from capigate.errors import InvalidEvents, Problem
from capigate.logs import escape_control

__all__ = ["send", "validate"]

_API_CHOICE = click.Choice(["auto", "axon", "appsflyer"])
_FILES = click.Path(exists=True, dir_okay=False, allow_dash=True)


def _api(value: str) -> Api | None:
    return None if value == "auto" else "axon" if value == "axon" else "appsflyer"


def _usable_app_id(app_id: str) -> None:
    """A usage error for an AppsFlyer app id that cannot be right, the same from validate and
    send: an iOS id without its prefix is answered 200 OK and dropped, so no event could pass."""
    if (reason := ios_prefix_missing(app_id)) is not None:
        raise click.UsageError(reason)


_CONFIG_OPTION: Final = config_option(
    "The gateway's configuration, where --pixel's profile is read (unless --profile is given)."
)
_PROFILE_OPTION: Final = click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="standard",
    help="The Axon pixel's profile [default: --pixel's in --config, if it is there; else standard].",
)


def _pixel_profile(pixel: str | None, profile: str, config_path: Path) -> tuple[str, str]:
    """The profile to check --pixel's events with, and where it came from ("" when given, or
    the default): --profile given, else the pixel's in the configuration, when there is one
    that names it, else the default, said so when the file read does not name the pixel. `validate --pixel px_lead` said ok of events the gateway then refused with
    12 problems: px_lead is lead_gen_restricted in capigate.toml, which no command read (a trial).
    A file named (--config, CAPIGATE_CONFIG) that is not there, or one that does not load, is
    a mistake; capigate.toml missing here is none: the events are checked as standard ones."""
    ctx = click.get_current_context()
    if pixel is None or ctx.get_parameter_source("profile") is not ParameterSource.DEFAULT:
        return profile, ""
    if ctx.get_parameter_source("config_path") is ParameterSource.DEFAULT and not config_path.exists():
        return profile, ""
    from capigate.client.cli_gateway import read_config  # imports httpx: only when needed

    try:
        configured = read_config(config_path).pixel(pixel)
    except click.ClickException as exc:
        raise click.ClickException(
            f"{exc.message}\n(--pixel's profile is read from it: give --profile to do without)"
        ) from None
    if configured is None:  # said, not silently standard: a second trial took the ok for the gateway's
        return profile, f"the default: {pixel} is not in {config_path}"
    return configured.profile, f"{pixel}'s in {config_path}"


def _echo_problem(source: Source, record: Record, problem: Problem, level: str = "error") -> None:
    line = source.line_of(record, problem.path)
    # A path names the file's keys, a message may quote them: their control characters escaped.
    said = f"{problem.path or '<record>'}: {problem.message} [{problem.code}]"
    click.echo(f"{escape_control(source.name)}:{line}: {level}: {escape_control(said)}")


def _as_of(record: Record, api: Api, command: str) -> Problem | None:
    """The record's problem once it is taken as one of ``api`` (that --pixel or --app chose): a
    record of neither API is checked as one of it, one of the other API is ``wrong_api``."""
    problem = record.problem
    if problem is not None and problem.code == "unknown_record":
        record.problem, record.api, record.kind = None, api, "event"  # checked as one of this API
        return None
    if problem is None and record.api != api:
        other = "an AppsFlyer event" if record.api == "appsflyer" else "Axon"
        fix = "use --pixel or --app to match" if command == "send" else "leave out --pixel to check it as one"
        return Problem("", "wrong_api", f"{other}, but this {command} is for {api}: {fix}")
    return problem


# --- validate -------------------------------------------------------------------------


def _check_record(record: Record, profile: str, app_id: str) -> tuple[int, list[Problem], list[Problem]]:
    """(events, problems, warnings) of one record, paths from the file's root."""
    if record.problem is not None:
        return 0, [prefixed(record.root, record.problem)], []
    value, now = record.value, now_ms()
    if record.api == "appsflyer":  # as `send` would send it: the same check, the same warnings
        from capigate.client.appsflyer import check_as_sent  # imports httpx: only when needed

        _, problems, warnings = check_as_sent(value, app_id=app_id)
        count = 1
    elif record.kind == "batch":
        report = check_batch(value, PROFILES[profile], source="validate", now_ms=now).report
        problems, warnings = report.problems, report.warnings
        count = len(value["events"]) if isinstance(value.get("events"), list) else 0
    else:
        report = check_batch({"events": [value]}, PROFILES[profile], source="validate", now_ms=now).report
        problems = [strip_prefix("events[0]", p) for p in report.problems]
        warnings = [strip_prefix("events[0]", w) for w in report.warnings]
        count = 1
    return count, [prefixed(record.root, p) for p in problems], [prefixed(record.root, w) for w in warnings]


@click.command()
@click.argument("files", nargs=-1, required=True, type=_FILES)
@click.option(
    "--api",
    "api_name",
    type=_API_CHOICE,
    default="auto",
    show_default=True,
    help="What the records are (auto: tell from their keys).",
)
@click.option(
    "--pixel",
    help="Axon pixel id: the events are Axon events of this pixel, as send --pixel sends them "
    "(an AppsFlyer event is refused, wrong_api).",
)
@_PROFILE_OPTION
@_CONFIG_OPTION
@click.option(
    "--app",
    "--app-id",
    "app_id",
    default="",
    help="AppsFlyer app id, as send --app takes it (adds iOS/Android hints).",
)
@click.option("--warnings/--no-warnings", "show_warnings", default=True, show_default=True, help="Print warnings too.")
def validate(
    files: tuple[str, ...],
    api_name: str,
    pixel: str | None,
    profile: str,
    config_path: Path,
    app_id: str,
    show_warnings: bool,
) -> None:
    """Check events with the gateway's own rules, as send would send them, without sending.

    FILES hold JSON (a batch, an event, or an array of them) or JSON Lines (one Axon batch,
    Axon event or AppsFlyer event a line); '-' reads standard input. Each problem is printed
    with its file, line and JSON path; the exit status is 1 if any event would be refused."""
    _usable_app_id(app_id)
    if pixel is not None and api_name == "appsflyer":
        raise click.UsageError("--pixel is for Axon events: give --api appsflyer or --pixel, not both")
    profile, configured = _pixel_profile(pixel, profile, config_path)
    of_profile = f"; profile {profile}, {configured}" if configured else ""
    totals: Counter[str] = Counter()
    for name in files:
        source = _read(name, None if pixel is not None else _api(api_name))
        for record in source.records:
            if pixel is not None:
                record.problem = _as_of(record, "axon", "validate")
            count, problems, warnings = _check_record(record, profile, app_id)
            totals.update(events=count, problems=len(problems), warnings=len(warnings))
            if record.problem is not None:  # a record read as no event (of this API)
                totals["wrong_api" if record.problem.code == "wrong_api" else "unread"] += 1
            for problem in problems:
                _echo_problem(source, record, problem)
            for warning in warnings if show_warnings else ():
                _echo_problem(source, record, warning, "warning")
    events, found, warned = totals["events"], totals["problems"], totals["warnings"]
    if not found:
        click.echo(f"ok: {events} event(s) in {len(files)} file(s), 0 problem(s), {warned} warning(s){of_profile}")
        return
    # Problems first: "invalid: 299 event(s) …, 1 problem(s)" read as 299 invalid events (a trial).
    # The records that are no event apart: --pixel on an AppsFlyer file said "among 0 event(s)" (a re-trial).
    among = [f"{events} event(s)"] if events or totals["wrong_api"] + totals["unread"] == 0 else []
    if totals["wrong_api"]:
        among.append(f"{totals['wrong_api']} record(s) that are not Axon events")
    if totals["unread"]:
        among.append(f"{totals['unread']} record(s) read as no event")
    what = " and ".join([", ".join(among[:-1]), among[-1]] if len(among) > 1 else among)
    click.echo(f"invalid: {found} problem(s) among {what} in {len(files)} file(s), {warned} warning(s){of_profile}")
    sys.exit(1)


def _read(name: str, api: Api | None) -> Source:
    """The records of a file; one holding none (empty, blank lines, ``[]``) is a usage error:
    the wrong file, or an export that found nothing, not "ok: 0 events"."""
    try:
        source = read_source(name, api)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {name}: {exc}") from None
    if not source.records:
        raise click.UsageError(f"{source.name} holds no events")
    return source


# --- send ----------------------------------------------------------------------------


def _events_to_send(
    file: str, api: Api
) -> tuple[Source, list[Any], list[tuple[Record, str]], list[tuple[Record, Problem]]]:
    """The file's records, and its events of ``api`` as ``_flatten`` gives them."""
    source = _read(file, None)
    if source.unconfirmed:
        click.echo(
            f"note: {source.name} holds {source.unconfirmed} event(s) under '# not confirmed' lines: an earlier "
            "send may have stored them; "
            + (
                "an Axon event with a dedupe_id is dropped as a duplicate if so, one without may be stored twice"
                if api == "axon"
                else "AppsFlyer deduplicates nothing: look them up first (capigate events), or delete them"
            ),
            err=True,
        )
    return (source, *_flatten(source, api))


@contextmanager
def _interrupted_before_sending(file: str) -> Iterator[None]:
    """Ctrl-C while the file is read and checked exits 130, as one during sending does (click
    said "Aborted!" with status 1, a failure's): nothing was sent, and there is no failed file."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"interrupted while checking {file}: nothing was sent", err=True)
        sys.exit(130)


def _flatten(source: Source, api: Api) -> tuple[list[Any], list[tuple[Record, str]], list[tuple[Record, Problem]]]:
    """The events of ``api`` in a file, where each came from, and the problems of the records
    refused (said once its events are checked: ``_echo_in_order``)."""
    events: list[Any] = []
    origins: list[tuple[Record, str]] = []
    refused: list[tuple[Record, Problem]] = []
    for record in source.records:
        problem = _as_of(record, api, "send")
        if problem is not None:
            refused.append((record, prefixed(record.root, problem)))
            continue
        if record.kind == "batch":
            batch = record.value.get("events")
            if not isinstance(batch, list):
                path = join_path(record.root, "events")
                refused.append((record, Problem(path, "wrong_type", "`events` must be an array of events")))
                continue
            for i, event in enumerate(batch):
                events.append(event)
                origins.append((record, join_path(record.root, f"events[{i}]")))
        else:
            events.append(record.value)
            origins.append((record, record.root))
    return events, origins, refused


def _located(origins: list[tuple[Record, str]], error: InvalidEvents) -> list[tuple[Record, Problem]]:
    """The problems of the events checked, each with its record and its path in the file."""
    located: list[tuple[Record, Problem]] = []
    for problem in error.problems:
        head, _, rest = problem.path.partition("]")  # events[12].user_data -> 12, .user_data
        index = int(head.removeprefix("events[")) if head.startswith("events[") else 0
        record, root = origins[index]
        located.append((record, Problem(join_path(root, rest.removeprefix(".")), problem.code, problem.message)))
    return located


def _echo_in_order(source: Source, problems: list[tuple[Record, Problem]]) -> None:
    """``problems`` in the file's order, as validate prints them: a record's own problem (not
    JSON, the other API's) was said while reading, before the problems of earlier lines' events
    (a trial). Within a record, in the order found."""
    order = {id(record): i for i, record in enumerate(source.records)}
    for record, problem in sorted(problems, key=lambda found: order[id(found[0])]):
        _echo_problem(source, record, problem)


class _Progress:
    """A rich progress bar on stderr: events done, delivered events/s, failures."""

    def __init__(self, total: int, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.started = time.monotonic()
        self.failed = 0
        self.progress = Progress(
            TextColumn("[bold]sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} delivered/s"),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self.task = self.progress.add_task("send", total=total, rate="0", failed=0)

    def __call__(self, result: RequestResult) -> None:
        self.failed += 0 if result.ok else result.events
        self.progress.advance(self.task, result.events)
        delivered = self.progress.tasks[0].completed - self.failed
        rate = delivered / max(time.monotonic() - self.started, 1e-6)
        self.progress.update(self.task, rate=f"{rate:,.0f}", failed=self.failed)


def _duplicates(result: SendResult) -> str:
    """The duplicates the gateway answered, and how many came from a request sent again after
    a try that may have stored it: those are most likely send's own events, stored by that try
    (a trial read "duplicates: 3" of events it had sent once)."""
    answered = [r for r in result.requests if r.ok and r.duplicates]
    total = sum(r.duplicates or 0 for r in answered)
    repeated = sum(r.duplicates or 0 for r in answered if r.maybe_stored)
    if not repeated:
        return str(total)
    share = "all" if repeated == total else str(repeated)
    return f"{total} ({share} in requests sent again after a try that may have stored them: most likely by that try)"


def _summary(result: SendResult, prepared: Prepared, url: str, elapsed_s: float) -> None:
    """What was delivered and what failed, and why: the rate counts delivered events only."""
    delivered = result.events - result.failed_events
    rate = f" ({delivered / max(elapsed_s, 1e-6):,.0f} events/s)" if delivered else ""
    made = sum(1 for r in result.requests if r.attempts)  # an interrupt leaves some not started
    unmade = f" ({len(result.requests) - made} more not started)" if made < len(result.requests) else ""
    click.echo(
        f"delivered {delivered} of {result.events} event(s) in {made} request(s){unmade} "
        f"to {url} in {elapsed_s:.2f} s{rate}"
    )
    if result.stored is not None and delivered:
        click.echo(f"  stored: {result.stored}, duplicates: {_duplicates(result)}")
    if result.split:
        click.echo(f"  {_too_large(result)}")
    refused = [r for r in result.requests if not r.ok and not r.maybe_stored]
    unconfirmed = [r for r in result.requests if not r.ok and r.maybe_stored]
    refused_events = result.failed_events - result.unconfirmed_events
    click.echo(f"  failed: {refused_events}" + (f" event(s) in {len(refused)} request(s)" if refused else ""))
    _reasons(refused)
    _problems(refused)
    if unconfirmed:
        click.echo(
            f"  not confirmed: {result.unconfirmed_events} event(s) in {len(unconfirmed)} request(s): the gateway "
            f"may have stored them (no answer, or one saying so); {_if_resent(unconfirmed, prepared)}"
        )
        _reasons(unconfirmed)
    _warnings(result, prepared)


def _too_large(result: SendResult) -> str:
    """What the summary says of the requests the gateway refused as too large (413), which the
    client sent again in halves: the batch size the gateway takes (a trial's every request was
    refused, for good, reported as "events[0]: the body is 142602 bytes", a problem to mend)."""
    reason = escape_control(result.split[0].error or f"HTTP {result.split[0].status}")
    said = f"batches too large for the gateway ({reason}): sent again in halves, {len(result.split)} request(s) refused on the way"
    fits = _batch_size_taken(result)
    return f"{said}; --batch-size {fits} sends batches it takes at once" if fits else said


def _batch_size_taken(result: SendResult) -> int | None:
    """The most events a request carried that the gateway took, after it refused larger ones
    as too large, and fewer than any it refused (events of different sizes: a second trial was
    told the --batch-size refused); None when it refused none, or took none."""
    if not result.split:
        return None
    taken = max((r.events for r in result.requests if r.ok), default=None)
    refused = min(r.events for r in result.split)
    return None if taken is None else max(1, min(taken, refused - 1))


@dataclass(frozen=True, slots=True)
class _Run:
    """How this send sends: what its summary's advice and its resend command name."""

    base_url: str
    endpoint: str  # the path added to base_url
    pixel: str | None
    app: str | None
    profile: str
    profile_from: str  # "given with --profile", "px_lead's in capigate.toml", or "the default"
    test_tag: str | None
    batch_size: int | None  # --batch-size given

    def resend(self, target: Path, profile: str | None = None, batch_size: int | None = None) -> str:
        """The command that sends the failed file as this run sent its events: the test tag
        and the profile too (the hint left them out, and its events went as real ones, a
        trial); ``profile``, ``batch_size``: other ones."""
        options = ["--to", self.base_url, *(["--pixel", self.pixel] if self.pixel else ["--app", self.app or ""])]
        if self.pixel and (profile or self.profile) != "standard":
            options += ["--profile", profile or self.profile]
        if batch_size or self.batch_size:
            options += ["--batch-size", str(batch_size or self.batch_size)]
        if self.test_tag is not None:
            options += ["--test-tag", self.test_tag]
        return f"capigate send {shlex.quote(str(target))} {shlex.join(options)} --key ..."


def _report(result: SendResult, prepared: Prepared, run: _Run, elapsed_s: float, wanted: Path) -> bool:
    """The summary, and the undelivered events written to a failed file: whether any failed."""
    url, endpoint = run.base_url, run.endpoint
    _summary(result, prepared, url, elapsed_s)
    if not result.failed:
        return False
    target = _write_failed(result, wanted)
    if target != wanted:
        click.echo(_left_as_they_are([p for _, p in _earlier(wanted) if p != target]))
    profile = _profile_refusing(result, run)
    command = run.resend(target, profile or None, _batch_size_taken(result))
    unconfirmed = [r for r in result.requests if not r.ok and r.maybe_stored]
    if unconfirmed and not _safe_to_repeat(unconfirmed, prepared):  # as the summary advised (a trial)
        advice = (
            f"the {result.unconfirmed_events} not confirmed may be stored already: look them up first (capigate "
            f"events), delete from the file those stored, then send the rest with: {command}"
        )
    else:
        advice = f"send them again with: {command}"
    refused = [r for r in result.requests if not r.ok and 400 <= r.status < 500 and r.status not in (408, 429)]
    if any(r.status in (404, 405) for r in refused):  # the URL, not the events (a base URL ending in /v1)
        posted = f"{url.rstrip('/')}{endpoint} (--to {url} and the endpoint's path {endpoint})"
        advice = f"nothing answers at {posted}: check --to, then " + advice
    elif too_large := [r for r in refused if r.status == 413]:  # split down to single events: each too large
        events = sum(r.events for r in too_large)
        advice = (
            f"{events} event(s) are each larger than the gateway takes in a request (HTTP 413, its [server] "
            "max_body_bytes): shorten them, or have its max_body_bytes raised, then " + advice
        )
    elif (fix := _options_to_fix(refused)) is not None:  # a wrong key: the events are fine (a trial)
        advice = (
            "the events were refused for what they were sent with, not for what they hold (the problems above): "
            f"fix {fix}, then " + advice
        )
    elif profile is not None and run.pixel is not None:  # events the local check passed (a trial)
        passed = (
            f"the gateway refused events that passed the local check with profile {run.profile} ({run.profile_from})"
        )
        if profile:
            validate = (
                f"capigate validate {shlex.quote(str(target))} --pixel {shlex.quote(run.pixel)} --profile {profile}"
            )
            advice = (
                f"{passed}: it checks {run.pixel} with profile {profile}, it seems (its rules find every problem "
                f"above): mend those first (`{validate}` lists them), then " + advice
            )
        else:
            advice = (
                f"{passed}: does it check {run.pixel} with another profile (--profile), or other rules? Mend those "
                "first, then " + advice
            )
    elif any(r.problems for r in refused):
        advice = "some were refused (the problems above): mend those first, then " + advice
    elif refused:
        advice = "some were refused (the reasons above): mend their cause first, then " + advice
    click.echo(f"failed events written to {target}; {advice}")
    return True


def _profile_refusing(result: SendResult, run: _Run) -> str | None:
    """None, unless the gateway refused Axon events for problems of their own (a 400 or 422
    listing them), which passed the local check with ``run.profile``: then the profile whose
    rules find every problem it answered, if one does, else "". `send --pixel px_lead` was
    refused with 12 problems of lead_gen_restricted's, and the summary said "mend those
    first", nothing of --profile (a trial)."""
    if run.pixel is None:
        return None

    def of_events(failure: FailedDelivery) -> set[tuple[str, str]]:  # not the request's, nor the body's
        return {(p.path, p.code) for p in failure.result.problems if p.path.startswith("events[")}

    refused = [f for f in result.failed if f.result.status in (400, 422) and of_events(f)]
    if not refused:
        return None
    now = now_ms()

    def found(profile: str, payloads: list[bytes]) -> set[tuple[str, str]]:
        events = [msgspec.json.decode(p) for p in payloads]
        report = check_batch({"events": events}, PROFILES[profile], source="send", now_ms=now).report
        return {(p.path, p.code) for p in report.problems}

    answered = [(of_events(f), f) for f in refused]
    for profile in sorted(PROFILES):
        if profile != run.profile and all(said <= found(profile, f.payloads) for said, f in answered):
            return profile
    return ""


def _safe_to_repeat(unconfirmed: list[RequestResult], prepared: Prepared) -> bool:
    """Whether sending them again is safe: only where a repeat is dropped (each event with a
    dedupe_id, on Axon); AppsFlyer deduplicates nothing (a trial stored 7 of 8 twice)."""
    firsts = {r.first_event for r in unconfirmed}
    return all(req.safe_to_repeat for req in prepared.requests if req.first_event in firsts)


def _if_resent(unconfirmed: list[RequestResult], prepared: Prepared) -> str:
    """What sending them again does (``_safe_to_repeat``)."""
    if _safe_to_repeat(unconfirmed, prepared):
        return "sending them again is safe: each has a dedupe_id, and a repeat is dropped"
    return (
        "sending them again may store them twice (AppsFlyer deduplicates nothing, nor does Axon without "
        "a dedupe_id): look them up first (capigate events), and send only those missing"
    )


def _problems(refused: list[RequestResult]) -> None:
    """The server's reasons for refusing, at their paths among the events sent: a 400 said
    only "the batch was refused", and the resend it suggested failed the same way (a trial)."""
    problems = [
        shifted(p, r.first_event) if p.path.startswith("events[") else prefixed(f"events[{r.first_event}]", p)
        for r in refused
        for p in r.problems
        if not _of_the_request(r, p)
    ]
    # A header's or a query parameter's problem is the request's, not its first event's (a wrong
    # key read "events[0].authorization"), and so is one of a whole body of several events (a
    # 413's read "events[0]: the body is 142602 bytes"): said once, with the number of requests.
    of_requests = Counter(str(p) for r in refused for p in r.problems if _of_the_request(r, p))
    for said, count in of_requests.most_common():
        click.echo(f"    request: {escape_control(said)}" + (f" ({count} requests)" if count > 1 else ""))
    for problem in problems[:10]:  # the gateway's problems name the keys sent: control characters escaped
        click.echo(f"    {escape_control(str(problem))}")
    if len(problems) > 10:
        click.echo(f"    ... and {len(problems) - 10} more problem(s)")


def _of_the_request(result: RequestResult, problem: Problem) -> bool:
    """Whether ``problem`` is the request's, not one of its events': a header's or a query
    parameter's, or the body's (path "") when it carries several events."""
    return problem.path in _REQUEST_PARTS or (not problem.path and result.events > 1)


# The parts of a request that are not its events (http/axon.py, http/appsflyer.py, http/outcome.py).
_REQUEST_PARTS: Final = frozenset({"authorization", "authentication", "pixel_id", "app_id", "x-capigate-test"})
# The options of send that set each: an unknown pixel and a wrong key are one answer (authorization).
_OPTIONS_OF_PARTS: Final = {
    "authorization": ("--pixel", "--key"),
    "authentication": ("--app", "--key"),
    "pixel_id": ("--pixel",),
    "app_id": ("--app",),
    "x-capigate-test": ("--test-tag",),
}


def _options_to_fix(refused: list[RequestResult]) -> str | None:
    """The options of send to fix when every refusal is of the request's parts (its key, pixel
    or app id, test tag), none of its events; else None, and when none was refused (a dead URL:
    "fix , then" was printed)."""
    parts = [p.path for r in refused for p in r.problems]
    if not parts or not all(r.problems for r in refused) or not all(part in _REQUEST_PARTS for part in parts):
        return None
    options = list(dict.fromkeys(option for part in parts for option in _OPTIONS_OF_PARTS[part]))
    return " or ".join(options)


def _warnings(result: SendResult, prepared: Prepared) -> None:
    """The warnings of the local check and the gateway's: once when they agree, else each named.
    Only capigate's JSON answers carry warnings (they say ``stored``, or list problems when
    refusing); AppLovin's and AppsFlyer's own answers carry none."""
    local = Counter(w.code for req in prepared.requests for w in req.warnings)
    answered = [r for r in result.requests if r.stored is not None or r.problems]
    gateway = Counter(w.code for r in answered for w in r.answered_warnings)
    if not answered:
        _echo_codes("warnings of the local check", local)
    elif local == gateway:
        _echo_codes("warnings", local, ", from the local check and the gateway alike")
    else:
        _echo_codes("warnings of the local check", local, always=True)
        _echo_codes("warnings of the gateway", gateway, always=True)


def _echo_codes(label: str, codes: Counter[str], after: str = "", *, always: bool = False) -> None:
    if codes or always:
        listed = f" ({', '.join(f'{c} x{n}' for c, n in codes.most_common())})" if codes else ""
        click.echo(f"  {label}: {sum(codes.values())}{listed}{after}")


def _reasons(requests: list[RequestResult]) -> None:
    reasons = Counter((r.error or f"HTTP {r.status}", r.attempts) for r in requests)
    for (error, attempts), count in reasons.most_common(5):
        click.echo(f"    {count} request(s), {attempts} attempt(s) each: {escape_control(error)}")


def _earlier(path: Path) -> list[tuple[int, Path]]:
    """The files earlier runs wrote for ``path`` with their numbers, by number: itself (1) and
    each ``STEM.N.SUFFIX``."""
    numbered = re.compile(re.escape(path.stem) + r"\.([0-9]{1,9})" + re.escape(path.suffix))
    found = [(1, path)] if path.exists() else []
    for other in path.parent.glob(f"{glob.escape(path.stem)}.*{glob.escape(path.suffix)}"):
        if (number := numbered.fullmatch(other.name)) is not None and int(number[1]) > 1:
            found.append((int(number[1]), other))
    return sorted(found)


def _unused(path: Path) -> Path:
    """``path``, or if earlier runs wrote files for it, ``STEM.N.SUFFIX`` past the highest N:
    the newest failures under the highest number, not in a gap a deleted file left (a trial)."""
    earlier = _earlier(path)
    if not earlier:
        return path
    return path.with_name(f"{path.stem}.{earlier[-1][0] + 1}{path.suffix}")


def _left_as_they_are(skipped: list[Path]) -> str:
    """Says which earlier runs' files are there (it named the first alone, beside a
    ``.3`` written: ``.2`` was there too, a trial)."""
    if len(skipped) == 1:
        return f"{skipped[0]} is there from an earlier run and was left as it is"
    if len(skipped) <= 3:
        named = ", ".join(str(p) for p in skipped[:-1]) + f" and {skipped[-1]}"
    else:
        named = f"{skipped[0]} to {skipped[-1]} ({len(skipped)} files)"
    return f"{named} are there from earlier runs and were left as they are"


def _write_failed(result: SendResult, wanted: Path) -> Path:
    """The undelivered events, one a line, in a file no earlier run wrote; those the gateway
    may have stored follow a ``#`` line saying so (``send`` and ``validate`` skip such lines)."""
    target = _unused(wanted)
    with target.open("wb") as out:
        for failure in result.failed:
            if failure.result.maybe_stored:
                why = failure.result.error or "no answer"
                out.write(
                    f"# not confirmed, may be stored ({why}): the next {len(failure.payloads)} event(s)\n".encode()
                )
            for payload in failure.payloads:
                out.write(payload + b"\n")
    return target


def _checked_to(base_url: str, app: str | None) -> str:
    """The endpoint's path send adds to --to, once --to is a base URL; a usage error naming
    --to (or CAPIGATE_URL, where it came from) if not: the SDK's said "base URL", and which
    option held it was left to guess (a trial)."""
    source = click.get_current_context().get_parameter_source("base_url")
    try:
        checked_base_url(base_url, "CAPIGATE_URL" if source is ParameterSource.ENVIRONMENT else "--to")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return endpoint_of(app)


# The vendors' own APIs, which read no X-Capigate-Test: a test event sent there is a real one.
_VENDOR_DOMAINS: Final = {"applovin.com": "AppLovin", "appsflyer.com": "AppsFlyer"}


def _tag_for_a_gateway(base_url: str) -> None:
    """A usage error when --to is a vendor's real API: `--test-tag ci --to https://b.applovin.com`
    sent the events, which AppLovin counted as real conversions (a trial)."""
    host = (urlsplit(base_url).hostname or "").rstrip(".").lower()
    for domain, vendor in _VENDOR_DOMAINS.items():
        if host == domain or host.endswith(f".{domain}"):
            raise click.UsageError(
                f"--test-tag marks events as test events in a capigate gateway only: {host} is {vendor}'s real "
                "API, which ignores the tag and counts the events as real conversions; send them to a gateway "
                "(--to its URL), or leave --test-tag out"
            )


def _tag_not_honoured(result: SendResult, url: str) -> None:
    """A warning when events were delivered with --test-tag and no answer named the tag, as
    capigate's do: a server that is not capigate said OK, and took them as real events (a
    trial read "delivered 2 of 2" and nothing else)."""
    untagged = sum(r.events for r in result.requests if r.ok and r.test_tag is None)
    if untagged:
        click.echo(
            f"capigate send: warning: {url} answered {untagged} delivered event(s) without naming the test "
            "tag, as capigate's answers do: it is likely not capigate, ignored --test-tag, and may have "
            "taken them as real events",
            err=True,
        )


def _required_to_and_key(base_url: str | None, key: str | None, axon: bool) -> tuple[str, str]:
    """--to and --key, which their variables may give: a missing one says so ("Missing option
    '--key'" did not, and `capigate env` exports the keys under other names, a trial)."""
    if not base_url:
        raise click.UsageError(
            "Missing option '--to' (or CAPIGATE_URL): the base URL of a capigate gateway or of the API; "
            'eval "$(capigate env)" exports the gateway\'s as CAPIGATE_URL'
        )
    if not key:
        what, variable, first = (
            ("the pixel's API key", "AXON_KEY", "pixel")
            if axon
            else ("the app's dev key or S2S token", "APPSFLYER_KEY", "app")
        )
        raise click.UsageError(
            f"Missing option '--key' (or CAPIGATE_KEY): {what}; `capigate env` exports the first {first}'s "
            f'as {variable}: eval "$(capigate env)", then --key "${variable}"'
        )
    return base_url, key


@click.command()
@click.argument("file", type=_FILES)
@click.option(
    "--to",
    "base_url",
    envvar="CAPIGATE_URL",
    show_envvar=True,
    help="Base URL: a capigate gateway (http://localhost:8080), https://b.applovin.com or https://api2.appsflyer.com. "
    "Required.",
)
@click.option("--pixel", help="Axon pixel id: send Axon events.")
# --app-id too: validate's name for it, which a trial gave send (validate takes --app too).
@click.option("--app", "--app-id", "app", help="AppsFlyer app id: send AppsFlyer events.")
@click.option(
    "--key",
    envvar="CAPIGATE_KEY",
    show_envvar=True,
    help="Axon API key, or AppsFlyer dev key / S2S token. Required. `capigate env` exports the first pixel's as "
    'AXON_KEY, the first app\'s as APPSFLYER_KEY: --key "$AXON_KEY".',
)
@_PROFILE_OPTION
@_CONFIG_OPTION
@click.option(
    "--rate", "rate_eps", type=click.FloatRange(min=0, min_open=True), help="At most this many events per second."
)
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=4, show_default=True, help="Requests in flight at once."
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH),
    help=f"Axon events a request carries at most [default: {MAX_BATCH}, within 1 MiB]. A request the gateway "
    "refuses as too large (HTTP 413) is sent again in halves all the same.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Retries of a request that failed for a retryable reason.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Timeout of each attempt, in seconds.",
)
@click.option("--timeout-s", "deprecated_timeout_s", type=click.FloatRange(min=0, min_open=True), hidden=True)
@click.option("--test-tag", help="Mark the events as test events in capigate (X-Capigate-Test; at most 64 characters).")
@click.option(
    "--failed-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write undelivered events [default: FILE's name with .failed.jsonl, e.g. events.failed.jsonl].",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar on stderr.")
def send(
    file: str,
    base_url: str | None,
    pixel: str | None,
    app: str | None,
    key: str | None,
    profile: str,
    config_path: Path,
    rate_eps: float | None,
    concurrency: int,
    batch_size: int | None,
    retries: int,
    timeout_s: float,
    deprecated_timeout_s: float | None,
    test_tag: str | None,
    failed_file: Path | None,
    progress: bool,
) -> None:
    """Check, batch and send the events of FILE (as for validate) to a gateway or the real API.

    Nothing is sent if any event is invalid (exit status 1). Events that could not be
    delivered are written, normalised and hashed, to the failed file, which this command
    accepts again; the exit status is then 1."""
    from capigate.client._base import RetryPolicy
    from capigate.client.appsflyer import AppsFlyerClient
    from capigate.client.axon import AxonClient

    if (pixel is None) == (app is None):
        raise click.UsageError("give exactly one of --pixel (Axon) or --app (AppsFlyer)")
    if app is not None and batch_size is not None:
        raise click.UsageError("--batch-size is for Axon events (--pixel): AppsFlyer takes one event a request")
    base_url, key = _required_to_and_key(base_url, key, pixel is not None)
    _usable_app_id(app or "")
    if deprecated_timeout_s is not None:  # its former name, kept so that scripts using it still run
        if click.get_current_context().get_parameter_source("timeout_s") is not ParameterSource.DEFAULT:
            raise click.UsageError("give --timeout only (--timeout-s is its deprecated name)")
        click.echo("capigate send: --timeout-s is deprecated; use --timeout (seconds)", err=True)
        timeout_s = deprecated_timeout_s
    api: Api = "axon" if pixel else "appsflyer"
    endpoint = _checked_to(base_url, app)
    profile, configured = _pixel_profile(pixel, profile, config_path)
    given = click.get_current_context().get_parameter_source("profile") is not ParameterSource.DEFAULT
    origin = configured or ("given with --profile" if given else "the default")
    run = _Run(base_url, endpoint, pixel, app, profile, origin, test_tag, batch_size)
    if test_tag is not None:
        _tag_for_a_gateway(base_url)
    with _interrupted_before_sending(file):
        source, events, origins, refused = _events_to_send(file, api)
    options: dict[str, Any] = {
        "base_url": base_url,
        "timeout": timeout_s,
        "retry": RetryPolicy(max_attempts=retries + 1),
        "max_concurrency": concurrency,
        "rate_limit_eps": rate_eps,
        "test_tag": test_tag,
    }
    try:
        client = (
            AxonClient(pixel, key, profile=cast(ProfileName, profile), max_batch=batch_size or MAX_BATCH, **options)
            if pixel
            else AppsFlyerClient(app or "", key, **options)
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with client:
        problems = refused
        with _interrupted_before_sending(file):
            try:
                prepared = client.prepare(events)
            except InvalidEvents as exc:
                problems = [*refused, *_located(origins, exc)]
        if problems:
            _echo_in_order(source, problems)
            of_profile = f" (profile {profile}, {configured})" if configured else ""
            click.echo(f"invalid: {len(problems)} problem(s){of_profile}; nothing was sent")
            sys.exit(1)
        bar = _Progress(prepared.events, progress)
        started = time.monotonic()
        wanted = failed_file or Path(f"{Path(file).with_suffix('')}.failed.jsonl" if file != "-" else "failed.jsonl")
        try:
            with bar.progress:
                result = client.send(prepared, on_request=bar)
        except SendInterrupted as stopped:
            # Said and written before exiting, without waiting for the requests in flight (a
            # trial waited 28 s): they are recorded as not confirmed.
            in_flight = stopped.result.unconfirmed_events
            said = (
                f"{in_flight} event(s) of requests it stopped mid-way may be stored"
                if in_flight
                else "no request it stopped had reached the gateway"
            )
            click.echo(f"interrupted: requests not yet started were not sent; {said}", err=True)
            _report(stopped.result, prepared, run, time.monotonic() - started, wanted)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
    failed = _report(result, prepared, run, time.monotonic() - started, wanted)
    if test_tag is not None:
        _tag_not_honoured(result, base_url)
    if failed:
        sys.exit(1)
