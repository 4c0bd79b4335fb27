"""The core shared by every client, sync or async: no I/O happens here.

A send goes through three steps, the same for both APIs and both flavours:

1. ``prepare`` checks the events with the server's own rules and profile, hashes PII with the
   same normaliser, and packs them into requests (``Prepared``); any problem raises one
   ``InvalidEvents`` listing every problem with its path, before anything leaves the process.
2. The sync or async client sends each ``PreparedRequest``, pacing with ``Pacer`` if asked.
3. ``Core.outcome`` reads each answer (or transport error) and says whether to retry and when
   (``RetryPolicy``: exponential backoff with full jitter, honouring ``Retry-After``), or
   returns the ``RequestResult``.
"""

from __future__ import annotations

import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import msgspec

from capigate.__version__ import __version__
from capigate.checking import join
from capigate.client._pacing import Pacer, RetryPolicy
from capigate.errors import HTTPStatusError, InvalidEvents, Problem, TransportError
from capigate.responses import MAYBE_STORED_HEADER, Accepted, ErrorBody
from capigate.splitting import split_parts

__all__ = [
    "USER_AGENT",
    "Checked",
    "Core",
    "Delivery",
    "FailedDelivery",
    "OnRequest",
    "Pacer",
    "Prepared",
    "PreparedRequest",
    "RequestResult",
    "RetryPolicy",
    "SendResult",
    "gather_failures",
    "join_path",
    "now_ms",
    "prefixed",
    "shifted",
    "strip_prefix",
    "to_builtins",
]

USER_AGENT: Final = f"capigate-python/{__version__}"

# Errors raised before the request could have reached the server: always safe to retry.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_decode_accepted = msgspec.json.Decoder(Accepted).decode
_decode_error = msgspec.json.Decoder(ErrorBody).decode
_decode_any = msgspec.json.Decoder().decode


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RequestResult(msgspec.Struct, kw_only=True):
    """What became of one HTTP request (one Axon batch, or one AppsFlyer event).

    Paths in ``problems`` and ``warnings`` are those of the request's body, as the server
    gives them: ``events[j]...`` in an Axon batch (event ``first_event + j`` of those given
    to send), the event's own fields for AppsFlyer (event ``first_event``)."""

    ok: bool
    status: int  # HTTP status of the last attempt; 0 when no response came back
    attempts: int
    first_event: int  # index, in the events given to send(), of the request's first event
    events: int  # how many events the request carried
    stored: int | None = None  # None when the server does not say (AppLovin, plain-text AppsFlyer)
    duplicates: int | None = None
    duplicate_events: list[int] = []  # indexes, in the events given to send()
    problems: list[Problem] = []  # the server's reasons for refusing
    # The local check's and capigate's together: the server checks the same rules, but on
    # events hashed or stripped here first. AppLovin and AppsFlyer send none.
    warnings: list[Problem] = []
    answered_warnings: list[Problem] = []  # capigate's alone, as it answered them
    # The test tag capigate says it stored the events with (X-Capigate-Test); None when the
    # answer names none: no tag was sent, or the server is not capigate and ignored it.
    test_tag: str | None = None
    error: str | None = None  # one line: why it failed
    # No answer, but a try may have reached the server (a read timeout, a connection lost
    # after sending): its events may be stored. Not a failure to resend blindly, an unknown.
    maybe_stored: bool = False
    elapsed_s: float = 0.0
    url: str = ""  # where the request went
    body: bytes = b""  # the response body of a failed request, as received

    def raise_for_status(self) -> None:
        """Raise TransportError (no answer) or HTTPStatusError (an answer that is not a
        success: its status_code, body, problems and the server's message) if it failed."""
        if self.ok:
            return
        if self.status == 0:
            raise TransportError(f"POST {self.url}: {self.error or 'no answer'}", url=self.url)
        message = self.error or ""
        for prefix in (f"HTTP {self.status}: ", f"HTTP {self.status} "):
            message = message.removeprefix(prefix)
        raise HTTPStatusError(self.status, message, url=self.url, body=self.body, problems=self.problems)


class FailedDelivery(msgspec.Struct, kw_only=True):
    """Events that could not be delivered, with why; ``payloads`` can be sent again as is."""

    result: RequestResult
    payloads: list[bytes]  # each event as normalised JSON (PII hashed)

    def events(self) -> list[dict[str, Any]]:
        return [_decode_any(p) for p in self.payloads]


class SendResult(msgspec.Struct, kw_only=True):
    """The result of one ``send``: one RequestResult per request, in the order of the events.

    A request refused as too large (413: a gateway's ``max_body_bytes`` below the client's)
    is sent again as two halves, and each half likewise, down to single events: ``requests``
    holds the halves' results, and ``split`` the 413s of the requests split (their events are
    counted in ``requests``, not again)."""

    requests: list[RequestResult]
    failed: list[FailedDelivery] = []
    split: list[RequestResult] = []

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.requests)

    @property
    def events(self) -> int:
        return sum(r.events for r in self.requests)

    @property
    def stored(self) -> int | None:
        counts = [r.stored for r in self.requests if r.ok]
        return None if None in counts else sum(c for c in counts if c is not None)

    @property
    def failed_events(self) -> int:
        return sum(r.events for r in self.requests if not r.ok)

    @property
    def unconfirmed_events(self) -> int:
        """Events of failed requests that the server may have stored all the same."""
        return sum(r.events for r in self.requests if not r.ok and r.maybe_stored)

    @property
    def warnings(self) -> list[Problem]:
        return [w for r in self.requests for w in r.warnings]

    def raise_for_status(self) -> None:
        """Raise HTTPStatusError for the first request that failed."""
        for r in self.requests:
            r.raise_for_status()


@dataclass(frozen=True, slots=True)
class Checked:
    """One event that passed the rules: its normalised JSON and whether a repeat is dropped."""

    payload: bytes
    repeatable: bool


@dataclass(slots=True)
class PreparedRequest:
    """One request ready to go: checked, hashed and encoded."""

    first_event: int
    payloads: list[bytes]
    body: bytes
    warnings: list[Problem]
    safe_to_repeat: bool  # the server drops a repeat of it (see RetryPolicy)


@dataclass(slots=True)
class Prepared:
    """The result of ``prepare``: what ``send`` accepts without checking again."""

    requests: list[PreparedRequest]

    @property
    def events(self) -> int:
        return sum(len(r.payloads) for r in self.requests)


OnRequest = Callable[[RequestResult], None]

_EVENTS_INDEX = re.compile(r"^events\[(\d+)\]")


def shifted(problem: Problem, offset: int) -> Problem:
    """``events[i]...`` of a batch starting at ``offset`` as ``events[offset+i]...``."""
    if not offset:
        return problem
    path = _EVENTS_INDEX.sub(lambda m: f"events[{int(m.group(1)) + offset}]", problem.path, count=1)
    return Problem(path, problem.code, problem.message)


def join_path(prefix: str, path: str) -> str:
    """``[3]`` + ``user_data.email`` -> ``[3].user_data.email``; ``events`` + ``[0]`` -> ``events[0]``."""
    if not prefix or not path:
        return prefix or path
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def prefixed(prefix: str, problem: Problem) -> Problem:
    """The problem of an object found at ``prefix`` in a larger one."""
    if not prefix:
        return problem
    return Problem(join_path(prefix, problem.path), problem.code, problem.message)


def strip_prefix(prefix: str, problem: Problem) -> Problem:
    """``events[0].user_data`` -> ``user_data`` (checking one event wrapped in a batch)."""
    path = problem.path
    if path == prefix:
        path = ""
    elif path.startswith(prefix + "."):
        path = path[len(prefix) + 1 :]
    elif path.startswith(prefix + "["):
        path = path[len(prefix) :]
    return Problem(path, problem.code, problem.message)


def check_key(name: str, key: str) -> None:
    """ValueError for a key no HTTP header can carry as given: httpx refused it at each try,
    and the send read as timeouts that "may be stored" (a key read from a file ends in \\n)."""
    if key != key.strip():
        raise ValueError(f"{name} starts or ends with whitespace (a newline read from a file?): strip it")
    if not _HEADER_TEXT.fullmatch(key):
        raise ValueError(f"{name} holds characters other than visible ASCII, which an HTTP header does not carry")


_HEADER_TEXT: Final = re.compile(r"[\x20-\x7e]+")


def _kind(value: Any) -> str:
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _not_a_list(events: Any) -> str | None:
    """Why ``events`` is not what send and prepare take (a list of events), or None: one
    event given alone was a TypeError (a Struct) or read as its keys (a dict)."""
    if isinstance(events, Mapping) and isinstance(events.get("events"), list):
        return 'send takes a list of events; got a request body ({"events": [...]}): send(body["events"])'
    if isinstance(events, (msgspec.Struct, Mapping)):
        return f"send takes a list of events; got one {type(events).__name__}: send([event])"
    if isinstance(events, (str, bytes, bytearray)):
        return f"send takes a list of events (dicts or Structs); got {_kind(events)}: decode it first"
    if not isinstance(events, Iterable):
        return f"send takes a list of events; got {_kind(events)}"
    return None


def _several(count: int) -> str:
    events = "1 event" if count == 1 else f"{count} events"
    return f"add takes one event; got a list of {events}: add each one (or send the list with send)"


def to_builtins(event: Any, path: str, problems: list[Problem]) -> Any:
    """A Struct or mapping as plain JSON-like objects (a type msgspec cannot encode: a problem)."""
    try:
        raw = msgspec.to_builtins(dict(event) if isinstance(event, Mapping) else event)
    except TypeError as exc:
        problems.append(Problem(path, "wrong_type", f"cannot be encoded as JSON: {exc}"))
        return None
    _find_non_finite(raw, path, problems)
    return raw


def _find_non_finite(value: Any, path: str, problems: list[Problem]) -> None:
    """A problem for each infinite or NaN float: JSON has no such number, and msgspec would
    send ``null`` in its place, an event changed without a word."""
    kind = type(value)
    if kind is float and not math.isfinite(value):
        problems.append(
            Problem(path, "not_finite", f"{value} is not a number JSON can carry (it would be sent as null)")
        )
    elif kind is dict:
        for key, item in value.items():
            if type(item) in _CONTAINERS:
                _find_non_finite(item, join(path, key), problems)
    elif kind is list:
        for i, item in enumerate(value):
            if type(item) in _CONTAINERS:
                _find_non_finite(item, join(path, i), problems)


_CONTAINERS: Final = frozenset((dict, list, float))


class Core(ABC):
    """What the sync and async clients of one API share: checking, packing, reading answers."""

    retry: RetryPolicy
    pacer: Pacer | None
    max_batch: int
    max_body_bytes: int | None = None  # None: one event a request, its size the rules' (AppsFlyer)

    def __init__(self, *, retry: RetryPolicy | None, rate_limit_eps: float | None) -> None:
        self.retry = retry if retry is not None else RetryPolicy()
        self.pacer = Pacer(rate_limit_eps) if rate_limit_eps is not None else None

    # --- preparing ---------------------------------------------------------------------

    @abstractmethod
    def check(self, events: list[Any]) -> tuple[list[Checked], list[Problem], list[Problem]]:
        """(checked events, problems, warnings) of the events of one request, paths as in
        its body. When there is any problem, the first list may be incomplete."""

    @abstractmethod
    def in_send(self, first: int, problem: Problem) -> Problem:
        """A problem of the request starting at event ``first``, located in all the events
        given to send: ``events[i]...``."""

    @abstractmethod
    def in_event(self, problem: Problem) -> Problem:
        """A problem of a request carrying one event, located in that event."""

    @abstractmethod
    def body(self, payloads: list[bytes]) -> bytes:
        """The request body carrying ``payloads`` (at most ``max_batch``)."""

    def pack(self, first: int, checked: list[Checked], warnings: list[Problem]) -> PreparedRequest:
        payloads = [c.payload for c in checked]
        return PreparedRequest(
            first_event=first,
            payloads=payloads,
            body=self.body(payloads),
            warnings=warnings,
            safe_to_repeat=all(c.repeatable for c in checked),
        )

    def prepare(self, events: Iterable[Any]) -> Prepared:
        """Check, hash and pack ``events``; raise InvalidEvents listing every problem, each
        at its path among the events given (``events[i]...``)."""
        if (mistake := _not_a_list(events)) is not None:
            raise InvalidEvents([Problem("events", "not_a_list", mistake)])
        items = list(events)
        problems: list[Problem] = []
        requests: list[PreparedRequest] = []
        step = self.max_batch
        for first in range(0, len(items), step):
            checked, found, warnings = self.check(items[first : first + step])
            found = found or self._too_large(checked)
            problems += [self.in_send(first, p) for p in found]
            if not found:
                requests += [
                    self.pack(first + start, checked[start:end], _within(warnings, start, end))
                    for start, end in self.parts(checked)
                ]
        if problems:
            raise InvalidEvents(problems)
        return Prepared(requests)

    def _too_large(self, checked: list[Checked]) -> list[Problem]:
        if self.max_body_bytes is None:
            return []
        limit = self.max_body_bytes - len(self.body([]))
        return [
            Problem(
                f"events[{i}]",
                "payload_too_large",
                f"the event is {len(c.payload):,} bytes once normalised; no request body of at most "
                f"{self.max_body_bytes:,} bytes (max_body_bytes) can carry it",
            )
            for i, c in enumerate(checked)
            if len(c.payload) > limit
        ]

    def parts(self, checked: list[Checked]) -> list[tuple[int, int]]:
        """The events of one check split into requests of at most ``max_body_bytes``: 100
        events of a large cart are more than capigate's 1 MiB, and were a 413 at every try."""
        if self.max_body_bytes is None:
            return [(0, len(checked))]
        empty, parts, start = len(self.body([])), [], 0
        size = empty
        for i, c in enumerate(checked):
            added = len(c.payload) + (i > start)  # and its comma
            if i > start and size + added > self.max_body_bytes:
                parts.append((start, i))
                start, size, added = i, empty, len(c.payload)
            size += added
        parts.append((start, len(checked)))
        return parts

    def halves(self, req: PreparedRequest, result: RequestResult) -> list[PreparedRequest]:
        """The requests to send in place of ``req`` when ``result`` refused it as too large
        (413) and it carries more than one event: its two halves (``capigate.splitting``, the
        relay's rule); else none. A gateway whose ``max_body_bytes`` was below the client's
        refused every request of a send, for good, though each event was fine (a trial)."""
        if result.ok or result.status != 413 or len(req.payloads) < 2:
            return []
        halves = []
        for part in split_parts(range(len(req.payloads))):
            start, end = part[0], part[-1] + 1
            payloads = req.payloads[start:end]
            halves.append(
                PreparedRequest(
                    first_event=req.first_event + start,
                    payloads=payloads,
                    body=self.body(payloads),
                    warnings=_within(req.warnings, start, end),
                    safe_to_repeat=req.safe_to_repeat,
                )
            )
        return halves

    def prepare_one(self, event: Any) -> tuple[Checked, list[Problem]]:
        """One event, checked, and its warnings (paths relative to the event)."""
        if isinstance(event, (list, tuple)):  # else read as one event that is not an object
            raise InvalidEvents([Problem("", "not_an_event", _several(len(event)))])
        checked, problems, warnings = self.check([event])
        problems = problems or self._too_large(checked)
        if problems:
            raise InvalidEvents([self.in_event(p) for p in problems])
        return checked[0], [self.in_event(w) for w in warnings]

    # --- sending -----------------------------------------------------------------------

    @abstractmethod
    def request(self, req: PreparedRequest) -> tuple[str, dict[str, str], dict[str, str]]:
        """(url, query parameters, headers) of a prepared request."""

    def outcome(
        self,
        req: PreparedRequest,
        attempt: int,
        started: float,
        response: httpx.Response | None = None,
        error: httpx.TransportError | None = None,
    ) -> tuple[RequestResult, float | None]:
        """The result of an attempt, and how long to wait before the next (None: final)."""
        elapsed = time.monotonic() - started
        if response is None:
            assert error is not None
            retry = isinstance(error, _NOT_SENT) or req.safe_to_repeat
            result = self._result(req, attempt, elapsed, ok=False, status=0, error=_describe(error))
            result.url, result.maybe_stored = _url_of(error), not isinstance(error, _NOT_SENT)
            return result, self._delay(result, None) if retry else None
        result = self.interpret(req, attempt, elapsed, response)
        result.url = str(response.request.url)
        if not result.ok:
            result.body = response.content
        if response.status_code not in self.retry.retry_statuses:
            return result, None
        if MAYBE_STORED_HEADER in response.headers:  # capigate sent the write, and had no answer
            result.maybe_stored = True
            if not req.safe_to_repeat:
                return result, None
        return result, self._delay(result, response.headers.get("retry-after"))

    def _delay(self, result: RequestResult, retry_after: str | None) -> float | None:
        """The wait before the next try, or None when the retry budget is spent."""
        if result.attempts >= self.retry.max_attempts:
            return None
        delay = self.retry.delay_s(result.attempts, retry_after)
        budget = self.retry.max_elapsed_s
        if budget is not None and result.elapsed_s + delay > budget:
            result.error = f"{result.error}; no retry after {budget:g} s (RetryPolicy.max_elapsed_s)"
            return None
        return delay

    @abstractmethod
    def interpret(self, req: PreparedRequest, attempt: int, elapsed: float, response: httpx.Response) -> RequestResult:
        """The RequestResult of a response."""

    def _result(self, req: PreparedRequest, attempt: int, elapsed: float, **fields: Any) -> RequestResult:
        fields.setdefault("warnings", req.warnings)
        return RequestResult(
            attempts=attempt, first_event=req.first_event, events=len(req.payloads), elapsed_s=elapsed, **fields
        )

    def from_json(self, req: PreparedRequest, attempt: int, elapsed: float, response: httpx.Response) -> RequestResult:
        """A result from capigate's JSON bodies, or from the status alone (AppLovin)."""
        status, content = response.status_code, response.content
        if 200 <= status < 300:
            try:
                body = _decode_accepted(content)
            except msgspec.DecodeError:
                return self._result(req, attempt, elapsed, ok=True, status=status)
            return self._result(
                req,
                attempt,
                elapsed,
                ok=True,
                status=status,
                stored=body.stored,
                duplicates=body.duplicates,
                duplicate_events=[req.first_event + i for i in body.duplicate_events],
                warnings=_merged(req.warnings, body.warnings),
                answered_warnings=body.warnings,
                test_tag=body.test_tag,
            )
        try:
            error = _decode_error(content)
        except msgspec.DecodeError:
            text = content.decode("utf-8", "replace").strip()[:200]
            return self._result(
                req, attempt, elapsed, ok=False, status=status, error=f"HTTP {status} {text or response.reason_phrase}"
            )
        return self._result(
            req,
            attempt,
            elapsed,
            ok=False,
            status=status,
            error=f"HTTP {status}: {error.message}",
            problems=error.problems,
            warnings=_merged(req.warnings, error.warnings),
            answered_warnings=error.warnings,
        )


def _within(warnings: list[Problem], start: int, end: int) -> list[Problem]:
    """The warnings of events ``start`` … ``end - 1`` of a check, as paths of the request
    carrying them (a warning of no event, the request's first's)."""
    kept = []
    for w in warnings:
        found = _EVENTS_INDEX.match(w.path)
        index = int(found.group(1)) if found else 0
        if start <= index < end:
            kept.append(shifted(w, -start))
    return kept


def _merged(local: list[Problem], answered: list[Problem]) -> list[Problem]:
    """The local check's warnings and the server's: the server checks the same rules, but on
    events this SDK hashed or stripped first, so some (a phone without country code, plain PII
    dropped) only the local check can see."""
    seen = {(w.path, w.code) for w in local}
    return [*local, *(w for w in answered if (w.path, w.code) not in seen)]


def _url_of(error: httpx.TransportError) -> str:
    try:
        return str(error.request.url)
    except RuntimeError:  # raised before a request was made
        return ""


def _describe(error: httpx.TransportError) -> str:
    text = str(error) or "no detail"
    return f"{type(error).__name__}: {text}"


class SendInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sync ``send``: ``result`` says what became of each request, those not
    sent (``error`` "not sent") and those in flight (``maybe_stored``) among the failed. A
    KeyboardInterrupt, so that code that does not look for it stops as before."""

    def __init__(self, result: SendResult) -> None:
        self.result = result
        super().__init__("the send was interrupted")


class Progress:
    """Where a request's delivery stands, for an interrupt to say what became of it."""

    __slots__ = ("attempts", "posting", "reached")

    def __init__(self) -> None:
        self.attempts = 0
        self.posting = False  # a try is under way: it may reach the server
        self.reached = False  # a try may have reached it (sent, and no answer, or a maybe-stored one)


def interrupted(req: PreparedRequest, progress: Progress | None) -> RequestResult:
    """The result of a request an interrupt stopped (``progress`` None: not started). Stopped
    during a try, or between tries after one that may have reached the server, its events may
    be stored; between tries that were all refused before sending (a trial: a refused
    connection, then Ctrl-C during the back-off), they were not sent."""
    if progress is None or progress.attempts == 0:
        error, maybe_stored = "not sent: interrupted", False
    elif progress.posting:
        error, maybe_stored = "interrupted while in flight", True
    elif progress.reached:
        error, maybe_stored = "interrupted between tries, after one that may have reached the server", True
    else:
        error, maybe_stored = "not sent: interrupted between tries, none of which reached the server", False
    return RequestResult(
        ok=False,
        status=0,
        attempts=0 if progress is None else progress.attempts,
        first_event=req.first_event,
        events=len(req.payloads),
        warnings=req.warnings,
        error=error,
        maybe_stored=maybe_stored,
    )


class Delivery:
    """One prepared request's delivery: the request, or, once refused as too large, its
    halves (``Core.halves``), sent one after another. ``done``: the requests answered for
    good, with their results, in the order of their events; ``split``: the 413s of those
    split; ``current``: the one being sent, ``progress`` how far; ``todo``: those to send.
    An interrupted send reads it from another thread than the one sending: under a lock."""

    __slots__ = ("_lock", "current", "done", "progress", "split", "todo")

    def __init__(self, req: PreparedRequest) -> None:
        self.todo = [req]
        self.done: list[tuple[PreparedRequest, RequestResult]] = []
        self.split: list[RequestResult] = []
        self.current: PreparedRequest | None = None
        self.progress = Progress()
        self._lock = threading.Lock()

    def next(self) -> PreparedRequest | None:
        """The next request to send (now ``current``), or None when all are answered."""
        with self._lock:
            if not self.todo:
                return None
            self.current, self.progress = self.todo.pop(0), Progress()
            return self.current

    def settle(self, core: Core, result: RequestResult) -> bool:
        """The result of ``current``: True when it is final (a request's of ``done``), False
        when the request was refused as too large and its halves go next."""
        req = self.current
        assert req is not None
        halves = core.halves(req, result)
        with self._lock:
            self.current = None
            if halves:
                self.split.append(result)
                self.todo[:0] = halves
                return False
            self.done.append((req, result))
            return True

    def results(self) -> list[tuple[PreparedRequest, RequestResult]]:
        """Each request's result: those done, then, when an interrupt stopped the delivery,
        the one being sent as far as it went and the rest as not sent (``interrupted``)."""
        with self._lock:
            stopped = [] if self.current is None else [(self.current, interrupted(self.current, self.progress))]
            return [*self.done, *stopped, *((r, interrupted(r, None)) for r in self.todo)]

    def unsent(self) -> list[PreparedRequest]:
        """The requests not answered: the one being sent, and those to send."""
        with self._lock:
            return [*([] if self.current is None else [self.current]), *self.todo]


def gather_failures(deliveries: list[Delivery]) -> SendResult:
    """The SendResult of a send's deliveries, each request's result in the order of the events."""
    pairs = [pair for d in deliveries for pair in d.results()]
    return SendResult(
        requests=[r for _, r in pairs],
        failed=[FailedDelivery(result=r, payloads=req.payloads) for req, r in pairs if not r.ok],
        split=[r for d in deliveries for r in d.split],
    )
