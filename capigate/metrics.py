"""Prometheus metrics: plain-dict counters on the hot path, text exposition on scrape.

Hand-written rather than ``prometheus_client``: a request costs a few dict increments and one
``bisect`` (1 to 2 µs, see ``tests/test_metrics.py``), with no lock, since a
worker's requests all run on its one event loop.

Several worker processes: each keeps its own counters and, every ``FLUSH_INTERVAL_S``, writes
them to ``<dir>/worker-<pid>.msgpack`` in a directory shared by the workers of one server;
a scrape, which reaches one worker at random, adds the files of the other live workers to its
own live counters, and those of the workers gone (``retired.msgpack``): a worker that stops (a
SIGHUP's reload) or dies (its file found by the next scrape) folds its counts there, so that a
counter never goes back for the life of the server (a trial saw 930 become 462 after one
kill). Queue depths are gauges read from the store at scrape time.

Series:

    capigate_requests_total{endpoint, status}
    capigate_request_duration_seconds{endpoint}        histogram
    capigate_events_total{source, outcome}             outcome: accepted | refused | duplicate
    capigate_warnings_total{source, code}
    capigate_relay_attempts_total{destination, result} result: delivered | retry | split | dead | interrupted
    capigate_relay_attempt_duration_seconds{destination}  histogram
    capigate_relay_queue_depth{destination, state}     state: pending | dead (gauge)
    capigate_relay_oldest_pending_age_seconds{destination}  gauge
    capigate_worker_respawns_total                     workers started again after they died

Labels stay bounded: an endpoint is a route template or ``other``; a source is a configured
pixel or app id or ``unknown``; a warning code comes from capigate's own list.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from capigate.errors import Problem
from capigate.metric_snapshot import COUNT, LATENCY_BUCKETS_MS, SUM, Histogram, Snapshot, decode_snapshot, encode
from capigate.metric_snapshot import histogram as _histogram
from capigate.store.base import OutboxDepth, RequestRecord

_astuple: Final = msgspec.structs.astuple
# Where a RequestRecord's fields (and a JournalRecord's, which adds its own after them) hold
# what observe_record counts.
_STATUS: Final = 6
_LATENCY_MS: Final = 9
_SOURCE: Final = 3
_RECEIVED: Final = 10
_STORED: Final = 11
_DUPLICATE: Final = 12
_WARNINGS: Final = 14
assert [
    RequestRecord.__struct_fields__[i]
    for i in (_STATUS, _LATENCY_MS, _SOURCE, _RECEIVED, _STORED, _DUPLICATE, _WARNINGS)
] == ["status", "latency_ms", "source", "events_received", "events_stored", "events_duplicate", "warnings"]

__all__ = [
    "CONTENT_TYPE",
    "FLUSH_INTERVAL_S",
    "LATENCY_BUCKETS_MS",
    "METRICS_DIR_ENV",
    "RESPAWNS_FILE",
    "Metrics",
    "remove_stale_shared_dirs",
    "shared_dir",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLUSH_INTERVAL_S = 1.0
METRICS_DIR_ENV = "CAPIGATE_METRICS_DIR"  # the workers' shared directory, when the operator chooses it
RESPAWNS_FILE = "respawns"  # written by the serve process (capigate/serving.py) in the shared directory
UNKNOWN_SOURCE = "unknown"


def _observe(hist: Histogram, value_ms: float) -> None:
    hist[_bucket(value_ms)] += 1
    hist[_SUM] += value_ms
    hist[_COUNT] += 1


def _bucket(value_ms: float) -> int:
    """``bisect_left(LATENCY_BUCKETS_MS, value_ms)`` as a loop mypyc compiles: a call of bisect
    cost a fifth of a request's counting, where the usual latency is in the first few buckets."""
    index = 0
    for bound in _BOUNDS:
        if value_ms <= bound:
            return index
        index += 1
    return index


# metric_snapshot's, as statics: a compiled module reads a name it imported from a dict.
_BOUNDS: Final[tuple[float, ...]] = LATENCY_BUCKETS_MS
_SUM: Final[int] = SUM
_COUNT: Final[int] = COUNT


RETIRED_FILE = "retired.msgpack"


@contextlib.contextmanager
def _locked(share_dir: Path, mode: int) -> Iterator[None]:
    """The shared directory's lock: exclusive to retire a worker's counts, shared to read
    them all, so that a scrape never counts a worker twice (its file and the retired sum)."""
    with (share_dir / "retired.lock").open("a") as lock:
        fcntl.flock(lock, mode)
        yield


def _retire(share_dir: Path, file: Path) -> None:
    """Adds a gone worker's counts to the retired file and removes its own: two scrapes
    finding one dead worker at once add it once."""
    with _locked(share_dir, fcntl.LOCK_EX):
        try:
            gone = decode_snapshot(file.read_bytes())
        except FileNotFoundError:  # retired by another worker already
            return
        except msgspec.DecodeError:
            gone = Snapshot({}, {}, {}, {}, {}, {})
        retired = share_dir / RETIRED_FILE
        try:
            total = decode_snapshot(retired.read_bytes())
        except (FileNotFoundError, msgspec.DecodeError):
            total = Snapshot({}, {}, {}, {}, {}, {})
        total.add(gone)
        temp = retired.with_suffix(".tmp")
        temp.write_bytes(encode(total))
        temp.replace(retired)
        file.unlink()


def _worker_files(share_dir: Path) -> list[tuple[Path, int]]:
    return [(file, int(file.stem.removeprefix("worker-"))) for file in share_dir.glob("worker-*.msgpack")]


def shared_dir(server_pid: int | None = None) -> Path:
    """The directory the workers of this server share: named after their parent, the
    ``capigate serve`` process (``CAPIGATE_METRICS_DIR`` overrides it)."""
    explicit = os.environ.get(METRICS_DIR_ENV)
    if explicit:
        return Path(explicit)
    return Path(tempfile.gettempdir()) / f"capigate-metrics-{server_pid or os.getppid()}"


def remove_stale_shared_dirs(server_pid: int) -> None:
    """Before a server starts: the shared directories of servers that did not stop (kill -9,
    an OOM kill) go, their own stop having removed none (a trial found them piling up in
    /tmp); and one named after this server's pid, a dead one's it reuses, whose counters it
    would add to its own. A directory the operator chose (CAPIGATE_METRICS_DIR) is left alone."""
    if os.environ.get(METRICS_DIR_ENV):
        return
    for directory in Path(tempfile.gettempdir()).glob("capigate-metrics-*"):
        pid = directory.name.removeprefix("capigate-metrics-")
        if pid.isdigit() and (int(pid) == server_pid or not _alive(int(pid))) and _ours(directory):
            shutil.rmtree(directory, ignore_errors=True)


def _ours(directory: Path) -> bool:
    """A directory (not a link to one) of this user."""
    try:
        found = directory.lstat()
    except OSError:
        return False
    return found.st_uid == os.getuid() and stat.S_ISDIR(found.st_mode)


class Metrics:
    """The counters of one worker. ``sources`` are the configured source ids; an endpoint
    label is a route's path template (``capigate/http/routing.py``)."""

    def __init__(
        self,
        *,
        sources: Iterable[str] = (),
        share_dir: Path | None = None,
    ) -> None:
        self._sources = frozenset(sources)
        self.share_dir = share_dir
        self._mine = Snapshot({}, {}, {}, {}, {}, {})
        # Its dicts counted into on every request, held here too: each read of a Struct's
        # attribute costs a dict look-up's worth.
        self._requests = self._mine.requests
        self._latency = self._mine.latency
        self._events = self._mine.events
        self._warnings = self._mine.warnings

    # --- the hot path ---------------------------------------------------------------------

    def observe_request(self, endpoint: str, status: int, latency_ms: float) -> None:
        requests = self._requests
        key = (endpoint, status)
        requests[key] = requests.get(key, 0) + 1
        hist = self._latency.get(endpoint)
        if hist is None:
            hist = self._latency[endpoint] = _histogram()
        _observe(hist, latency_ms)

    def observe_record(self, endpoint: str, record: RequestRecord) -> None:
        """Everything one journaled request says: its status and latency, its events, its warnings."""
        # Its fields in one call, where each attribute read alone costs a dict look-up's worth.
        fields = _astuple(record)
        status, latency_ms, source = fields[_STATUS], fields[_LATENCY_MS], fields[_SOURCE]
        received, stored, duplicate = fields[_RECEIVED], fields[_STORED], fields[_DUPLICATE]
        self.observe_request(endpoint, status, latency_ms)
        if source not in self._sources:
            source = UNKNOWN_SOURCE
        events = self._events
        if stored:
            key = (source, "accepted")
            events[key] = events.get(key, 0) + stored
        if duplicate:
            key = (source, "duplicate")
            events[key] = events.get(key, 0) + duplicate
        refused = received - stored - duplicate
        if refused > 0:
            key = (source, "refused")
            events[key] = events.get(key, 0) + refused
        said: list[Problem] = fields[_WARNINGS]
        if said:
            warnings = self._warnings
            for warning in said:
                key = (source, warning.code)
                warnings[key] = warnings.get(key, 0) + 1

    def observe_relay_attempt(self, destination: str, result: str, latency_ms: float) -> None:
        """For the relay workers: one delivery attempt and how it ended."""
        key = (destination, result)
        self._mine.relay_attempts[key] = self._mine.relay_attempts.get(key, 0) + 1  # off the requests' path
        _observe(self._mine.relay_latency.setdefault(destination, _histogram()), latency_ms)

    # --- sharing between workers ----------------------------------------------------------

    def flush(self) -> None:
        """Write this worker's counters for the others' scrapes (atomically: temp + rename)."""
        if self.share_dir is None:
            return
        self.share_dir.mkdir(parents=True, exist_ok=True)
        final = self.share_dir / f"worker-{os.getpid()}.msgpack"
        temp = final.with_suffix(".tmp")
        temp.write_bytes(encode(self._mine))
        temp.replace(final)

    def forget(self) -> None:
        """At a clean stop: this worker's counts join the retired ones, its file goes."""
        if self.share_dir is not None:
            with contextlib.suppress(OSError):
                self.flush()
                _retire(self.share_dir, self.share_dir / f"worker-{os.getpid()}.msgpack")

    def total(self) -> Snapshot:
        """This worker's live counters plus the last flushed counters of the other live workers."""
        total = decode_snapshot(encode(self._mine))  # a deep copy
        if self.share_dir is None:
            return total
        # This worker's counts go to its file first: a later scrape by another worker then
        # counts at least as much of them as this one (with its own live counts beside a
        # second-old copy of the others', two workers' scrapes went back and forth, a trial).
        with contextlib.suppress(OSError):
            self.flush()
        me = os.getpid()
        others = [(file, pid) for file, pid in _worker_files(self.share_dir) if pid != me]
        for file, pid in others:
            if not _alive(pid):
                with contextlib.suppress(OSError):
                    _retire(self.share_dir, file)
        # A file retired since it was listed is gone, its counts in the retired sum: the lock
        # keeps the two from being read on either side of a retirement.
        with contextlib.suppress(OSError), _locked(self.share_dir, fcntl.LOCK_SH):
            for file, _ in others:
                with contextlib.suppress(OSError, msgspec.DecodeError):
                    total.add(decode_snapshot(file.read_bytes()))
            with contextlib.suppress(OSError, msgspec.DecodeError):
                total.add(decode_snapshot((self.share_dir / RETIRED_FILE).read_bytes()))
        return total

    # --- exposition -----------------------------------------------------------------------

    def exposition(self, depths: list[OutboxDepth] | None, now_ms: int) -> bytes:
        """The Prometheus text format (version 0.0.4)."""
        snap = self.total()
        out: list[str] = []
        _family(out, "capigate_requests_total", "counter", "HTTP requests by endpoint and status.")
        for (endpoint, status), n in sorted(snap.requests.items()):
            out.append(f"capigate_requests_total{_labels(endpoint=endpoint, status=str(status))} {n}")
        _family(out, "capigate_request_duration_seconds", "histogram", "Time from request to response.")
        for endpoint, hist in sorted(snap.latency.items()):
            _histogram_lines(out, "capigate_request_duration_seconds", {"endpoint": endpoint}, hist)
        _family(out, "capigate_events_total", "counter", "Events by source and outcome (accepted, refused, duplicate).")
        for (source, outcome), n in sorted(snap.events.items()):
            out.append(f"capigate_events_total{_labels(source=source, outcome=outcome)} {n}")
        _family(out, "capigate_warnings_total", "counter", "Warnings given to accepted requests, by source and code.")
        for (source, code), n in sorted(snap.warnings.items()):
            out.append(f"capigate_warnings_total{_labels(source=source, code=code)} {n}")
        _family(out, "capigate_relay_attempts_total", "counter", "Relay delivery attempts by destination and result.")
        for (destination, result), n in sorted(snap.relay_attempts.items()):
            out.append(f"capigate_relay_attempts_total{_labels(destination=destination, result=result)} {n}")
        _family(out, "capigate_relay_attempt_duration_seconds", "histogram", "Time of one upstream delivery attempt.")
        for destination, hist in sorted(snap.relay_latency.items()):
            _histogram_lines(out, "capigate_relay_attempt_duration_seconds", {"destination": destination}, hist)
        _family(out, "capigate_worker_respawns_total", "counter", "Worker processes started again after they died.")
        out.append(f"capigate_worker_respawns_total {self._respawns()}")
        if depths is not None:
            _depth_lines(out, depths, now_ms)
        return ("\n".join(out) + "\n").encode()

    def _respawns(self) -> int:
        if self.share_dir is None:
            return 0
        try:
            return int((self.share_dir / RESPAWNS_FILE).read_text())
        except (OSError, ValueError):
            return 0


def _depth_lines(out: list[str], depths: list[OutboxDepth], now_ms: int) -> None:
    _family(out, "capigate_relay_queue_depth", "gauge", "Outbox deliveries waiting (pending) or given up (dead).")
    for d in depths:
        out.append(f"capigate_relay_queue_depth{_labels(destination=d.destination, state='pending')} {d.pending}")
        out.append(f"capigate_relay_queue_depth{_labels(destination=d.destination, state='dead')} {d.dead}")
    _family(out, "capigate_relay_oldest_pending_age_seconds", "gauge", "Age of the oldest undelivered event.")
    for d in depths:
        age = 0.0 if d.oldest_pending_at is None else max(0.0, (now_ms - d.oldest_pending_at) / 1000)
        out.append(f"capigate_relay_oldest_pending_age_seconds{_labels(destination=d.destination)} {age:.3f}")


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def _histogram_lines(out: list[str], name: str, labels: dict[str, str], hist: Histogram) -> None:
    running = 0.0
    for bound, n in zip(LATENCY_BUCKETS_MS, hist, strict=False):
        running += n
        out.append(f"{name}_bucket{_labels(**labels, le=_seconds(bound))} {running:.0f}")
    count = hist[COUNT]
    out.append(f"{name}_bucket{_labels(**labels, le='+Inf')} {count:.0f}")
    out.append(f"{name}_sum{_labels(**labels)} {hist[SUM] / 1000:.6f}")
    out.append(f"{name}_count{_labels(**labels)} {count:.0f}")


def _seconds(ms: float) -> str:
    return f"{ms / 1000:g}"


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
