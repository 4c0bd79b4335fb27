"""The in-process limits of issue 16, measured in one process run (``python -m bench.in_process --ratios``).

1. W1 purchase: batches of 100 ``purchase`` events (plain email and phone, 1-3 items each)
   through the whole gateway app in-process (``bench.in_process.measure``: request, rules,
   SQLite store with ``synchronous = full``, journal, response), CPU per event of the process
   and of the event loop's thread; against ``msgspec.json.decode`` of the same bodies into the
   wire Structs (``AxonBatch``): the least a typed ingest path could do. Target: ≤ 10x.
2. W2 pieces: one Axon event per request; each piece of the request timed alone on the same
   bodies, against the whole request measured in-process.

Results: ``bench/results/in_process.md`` and ``in_process.json``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from bench.bodies import TOKEN, write_body_sets
from bench.in_process import _scope, measure
from bench.procstat import native_status
from bench.servers import REPO
from capigate.axon.profiles import PROFILES
from capigate.axon.schema import AxonBatch
from capigate.http.asgi import Request, json_response
from capigate.http.journal import new_request_id, request_record
from capigate.metrics import Metrics
from capigate.responses import Accepted

try:
    from capigate.http.outcome import Outcome
except ImportError:  # a --ref tree from before the request path was compiled kept it in journal.py
    from capigate.http.journal import Outcome  # type: ignore[attr-defined,no-redef,unused-ignore]

RESULTS = REPO / "bench" / "results" / "in_process"


def _purchase_batches(w1: list[bytes], count: int) -> list[bytes]:
    events = [e for body in w1 for e in json.loads(body)["events"] if e["name"] == "purchase"]
    return [
        json.dumps({"events": events[i * 100 : (i + 1) * 100]}, separators=(",", ":")).encode()
        for i in range(min(count, len(events) // 100))
    ]


def _per_call(fn: Callable[[bytes, int], object], bodies: list[bytes], calls: int) -> float:
    """CPU seconds per call of ``fn(body, n)``, cycling through ``bodies``; best of 3 passes."""
    for n in range(min(calls, 200)):
        fn(bodies[n % len(bodies)], n)
    best = float("inf")
    for _ in range(3):
        start = time.thread_time()
        for n in range(calls):
            fn(bodies[n % len(bodies)], n)
        best = min(best, time.thread_time() - start)
    return best / calls


def _unique(body: bytes, n: int) -> bytes:
    return body.replace(TOKEN.encode(), b"r%d" % n)


def _checker(profile_name: str = "standard") -> Callable[[bytes, int], object]:
    """Decode and rules, as the Axon handler of the tree under test runs them."""
    profile, now_ms = PROFILES[profile_name], time.time_ns() // 1_000_000
    try:
        from capigate.axon.typed import check_body  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # a tree without the typed path
        from capigate.axon.rules import check_batch

        decode = msgspec.json.Decoder().decode
        return lambda body, n: check_batch(decode(body), profile, source="px_bench", now_ms=now_ms)
    return lambda body, n: check_body(body, profile, source="px_bench", now_ms=now_ms)


def _w2_pieces(bodies: list[bytes], calls: int) -> dict[str, float]:
    try:  # the landed commit's Metrics took the routes too
        metrics = Metrics(sources=["px_bench"], exact=["/v1/event"], prefixes=[])  # type: ignore[call-arg,unused-ignore]
        observe: Callable[..., object] = metrics.observe_record
    except TypeError:
        metrics = Metrics(sources=["px_bench"])
        observe = partial(metrics.observe_record, "/v1/event")

    def request(body: bytes, n: int) -> object:
        return Request.from_asgi(_scope(body), _noop_receive, _noop_send, new_request_id())

    request_obj = request(bodies[0], 0)
    assert isinstance(request_obj, Request)
    outcome = Outcome(api="axon")  # a Struct in older trees (--ref), a plain class now: set alike
    outcome.source, outcome.events_received, outcome.events_stored = "px_bench", 1, 1

    def journal(body: bytes, n: int) -> object:
        record = request_record(request_obj, 200, outcome, request_obj.request_id, request_obj.received_at_ms)
        observe(record)
        return record

    def response(body: bytes, n: int) -> object:
        return json_response(200, Accepted(received=1, stored=1, duplicates=0))

    unique = [_unique(b, i) for i, b in enumerate(bodies)]
    return {
        "request object": _per_call(request, unique, calls),
        "decode + rules + hashing": _per_call(_checker(), unique, calls),
        "journal record + metrics": _per_call(journal, unique, calls),
        "response": _per_call(response, unique, calls),
    }


async def _noop_receive() -> dict[str, Any]:
    return {}


async def _noop_send(message: Any) -> None:
    return None


def run(w1_requests: int = 300, w2_requests: int = 20_000) -> dict[str, Any]:
    out: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "native": native_status()}
    with tempfile.TemporaryDirectory(prefix="capigate-ratios-", dir=".") as tmp:
        sets = write_body_sets(Path(tmp) / "bodies", batches=300, singles=1000, population=50_000)
        w1 = [sets["w1"].path(i).read_bytes() for i in range(sets["w1"].count)]
        purchases = _purchase_batches(w1, 100)
        w2 = [sets["w2-axon"].path(i).read_bytes() for i in range(sets["w2-axon"].count)]
        decode = msgspec.json.Decoder(AxonBatch).decode
        typed_s = _per_call(lambda body, n: decode(_unique(body, n)), purchases, 200) / 100
        copy_s = _per_call(_unique, purchases, 200) / 100  # the id rewrite, done in both
        typed_s -= copy_s
        check_s = _per_call(_checker(), [_unique(b, i) for i, b in enumerate(purchases)], 100) / 100
        (Path(tmp) / "w1").mkdir()
        rps, thread_s, process_s = uvloop.run(measure(Path(tmp) / "w1", purchases, w1_requests, 16))
        out["w1_purchase"] = {
            "events_per_s": rps * 100,
            "process_us_per_event": process_s / 100 * 1e6,
            "loop_thread_us_per_event": thread_s / 100 * 1e6,
            "typed_decode_us_per_event": typed_s * 1e6,
            "decode_rules_us_per_event": check_s * 1e6,
            "ratio_process": process_s / 100 / typed_s,
            "ratio_loop_thread": thread_s / 100 / typed_s,
            "ratio_decode_rules": check_s / typed_s,
        }
        (Path(tmp) / "w2").mkdir()
        rps, thread_s, process_s = uvloop.run(measure(Path(tmp) / "w2", w2, w2_requests, 64))
        pieces = _w2_pieces(w2, 5000)
        out["w2"] = {
            "req_per_s": rps,
            "process_us_per_request": process_s * 1e6,
            "loop_thread_us_per_request": thread_s * 1e6,
            "pieces_us": {k: v * 1e6 for k, v in pieces.items()},
        }
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return out


def render(r: dict[str, Any]) -> str:
    w1, w2 = r["w1_purchase"], r["w2"]
    rest = w2["process_us_per_request"] - sum(w2["pieces_us"].values())
    lines = [
        "# In-process limits (one process run: `python -m bench.in_process --ratios`)",
        "",
        f"- **date**: {r['started']} → {r['finished']}",
        f"- **compiled modules** (`capigate native status`): {r.get('native', 'not recorded')}",
        "",
        "## W1 purchase batches (100 events: email, phone, 1-3 items) against the typed decode",
        "",
        "| measure | µs per event | x typed decode |",
        "|---|--:|--:|",
        f"| `msgspec.json.decode` into `AxonBatch` (the limit) | {w1['typed_decode_us_per_event']:.2f} | 1.0x |",
        f"| decode + rules + hashing, alone | {w1['decode_rules_us_per_event']:.2f} | {w1['ratio_decode_rules']:.1f}x |",
        f"| whole gateway in-process, event loop thread | {w1['loop_thread_us_per_event']:.2f} | {w1['ratio_loop_thread']:.1f}x |",
        f"| whole gateway in-process, all its CPU (the SQLite writer process included) | {w1['process_us_per_event']:.2f} | **{w1['ratio_process']:.1f}x** |",
        "",
        f"In-process throughput: {w1['events_per_s']:,.0f} purchase events/s.",
        "",
        "## W2 (1 event per request): where a request's CPU goes",
        "",
        "| piece | µs per request | share |",
        "|---|--:|--:|",
    ]
    total = w2["process_us_per_request"]
    for name, us in w2["pieces_us"].items():
        lines.append(f"| {name} | {us:.1f} | {100 * us / total:.0f} % |")
    lines += [
        f"| the rest: the store (its writer, the commit, the round trip), event loop, ASGI | {rest:.1f} | {100 * rest / total:.0f} % |",
        f"| **whole request, in-process** | **{total:.1f}** | 100 % |",
        "",
        f"In-process throughput: {w2['req_per_s']:,.0f} req/s (event loop thread "
        f"{w2['loop_thread_us_per_request']:.1f} µs per request).",
    ]
    return "\n".join(lines) + "\n"


def main(out: Path = RESULTS, *, quick: bool = False) -> None:
    result = run(30, 500) if quick else run()
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
