"""Benchmark: response streaming through `forkric local` (InvokeWithResponseStream).

    python -m loadtest.bench_streaming [--quick]

1. Time to first byte and per-chunk overhead: `loadtest.handlers.streaming.ticks` yields 100
   chunks of 64 bytes 10 ms apart. Per call, the client (http.client + botocore's event-stream
   decoder) notes when each PayloadChunk arrives. The same generator run in this process, with
   the same sleeps, gives the handler's own span from its first chunk to its last; the
   per-chunk overhead is (streamed span - own span) / 99. Time to first byte is set beside a
   buffered Invoke of the same service's one-chunk stream (its whole round trip). Calls of both
   kinds alternate, so that whatever else the machine does falls on both alike; medians.
2. 100 MiB: `loadtest.handlers.streaming.bulk` streams 100 MiB in 64 KiB chunks to a client
   that reads and drops it; throughput, and the worker's private memory (USS, psutil) sampled
   every 20 ms during the stream, against its USS before.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from botocore.eventstream import EventStreamBuffer

from loadtest.handlers import streaming
from tests.support.local import local

REPO = Path(__file__).resolve().parents[1]
STREAM_PATH = "/2021-11-15/functions/function/response-streaming-invocations"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
CHUNKS, GAP_MS = 100, 10


@dataclass
class Streamed:
    first_s: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    total_s: float = 0.0
    size: int = 0


def stream(conn: http.client.HTTPConnection, event: dict[str, Any],
           keep: bool = True) -> Streamed:
    """One InvokeWithResponseStream call: when each chunk arrived (seconds after the request)."""
    result = Streamed()
    started = time.perf_counter()
    conn.request("POST", STREAM_PATH, json.dumps(event), {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200, response.read()
    decoder = EventStreamBuffer()
    while True:
        data = response.read1(1 << 20)
        assert data, "the stream ended without InvokeComplete"
        decoder.add_data(data)
        for message in decoder:
            now = time.perf_counter() - started
            if message.headers[":event-type"] == "InvokeComplete":
                assert "ErrorCode" not in json.loads(message.payload), message.payload
                response.read()
                result.total_s = now
                return result
            if keep:
                result.arrivals.append(now)
            result.size += len(message.payload)


def buffered(conn: http.client.HTTPConnection, event: dict[str, Any]) -> float:
    started = time.perf_counter()
    conn.request("POST", INVOKE_PATH, json.dumps(event), {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return time.perf_counter() - started


def own_span() -> float:
    """The handler's own time from its first chunk to its last, run in this process."""
    chunks = streaming.ticks({"chunks": CHUNKS, "gap_ms": GAP_MS}, None)
    next(chunks)
    started = time.perf_counter()
    for _ in chunks:
        pass
    return time.perf_counter() - started


def ticks(calls: int) -> dict[str, float]:
    with local("loadtest.handlers.streaming.ticks", REPO, workers=1, timeout=30) as service:
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
        stream(conn, {"chunks": 3})  # warm up
        firsts, spans, owns, trips, chunk_counts = [], [], [], [], []
        for _ in range(calls):
            got = stream(conn, {"chunks": CHUNKS, "gap_ms": GAP_MS})
            firsts.append(got.arrivals[0])
            spans.append(got.arrivals[-1] - got.arrivals[0])
            chunk_counts.append(len(got.arrivals))
            owns.append(own_span())
            trips.append(buffered(conn, {"chunks": 1}))
            firsts_one = stream(conn, {"chunks": 1})
            firsts.append(firsts_one.arrivals[0])
    return {
        "ttfb_ms": statistics.median(firsts) * 1000,
        "buffered_round_trip_ms": statistics.median(trips) * 1000,
        "streamed_span_ms": statistics.median(spans) * 1000,
        "own_span_ms": statistics.median(owns) * 1000,
        "overhead_per_chunk_us": (statistics.median(spans) - statistics.median(owns))
        / (CHUNKS - 1) * 1e6,
        "events_per_call": statistics.median(chunk_counts),
    }


def bulk(mb: int) -> dict[str, float]:
    with local("loadtest.handlers.streaming.bulk", REPO, workers=1, timeout=120) as service:
        slots = service.status()["workers"]["slots"]
        worker = psutil.Process(next(s["pid"] for s in slots if s["pid"]))
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=120)
        stream(conn, {"mb": 1}, keep=False)  # warm up
        before = worker.memory_full_info().uss
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], worker.memory_full_info().uss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            got = stream(conn, {"mb": mb}, keep=False)
        finally:
            done.set()
            sampler.join()
    assert got.size == mb * 1024 * 1024
    return {"mb": mb, "seconds": got.total_s, "mb_per_s": mb / got.total_s,
            "worker_uss_before_mb": before / 2**20, "worker_uss_peak_mb": peak[0] / 2**20}


def run(quick: bool) -> tuple[dict[str, float], dict[str, float]]:
    """The chunk-pace figures and the 100 MiB figures (5 calls and 20 MiB when quick)."""
    return ticks(5 if quick else 20), bulk(20 if quick else 100)


def rows(quick: bool) -> list[dict[str, Any]]:
    """`make bench`'s rows."""
    first, big = run(quick)
    name = "streaming (forkric local)"
    return [
        {"benchmark": name, "metric": "time to first byte (ms)", "forkric": first["ttfb_ms"],
         "peer": first["buffered_round_trip_ms"],
         "ratio": first["ttfb_ms"] / first["buffered_round_trip_ms"], "goal": "-",
         "peer_name": "a buffered invoke's whole round trip"},
        {"benchmark": name, "metric": f"overhead per chunk, {CHUNKS} chunks {GAP_MS} ms apart (us)",
         "forkric": first["overhead_per_chunk_us"], "peer": None, "ratio": None,
         "goal": "< 1000", "peer_name": "the generator's own pace"},
        {"benchmark": name, "metric": f"{big['mb']:.0f} MiB streamed (MiB/s)",
         "forkric": big["mb_per_s"], "peer": None, "ratio": None, "goal": "-", "peer_name": "-"},
        {"benchmark": name, "metric": "worker USS during the stream (MB)",
         "forkric": big["worker_uss_peak_mb"], "peer": big["worker_uss_before_mb"],
         "ratio": big["worker_uss_peak_mb"] / big["worker_uss_before_mb"], "goal": "flat",
         "peer_name": "the same worker before it"},
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 calls and 20 MiB")
    args = parser.parse_args()
    first, big = run(args.quick)
    print(f"{CHUNKS} chunks {GAP_MS} ms apart: time to first byte {first['ttfb_ms']:.1f} ms "
          f"(a buffered invoke's whole round trip: {first['buffered_round_trip_ms']:.1f} ms); "
          f"first to last chunk {first['streamed_span_ms']:.1f} ms against the handler's own "
          f"{first['own_span_ms']:.1f} ms: {first['overhead_per_chunk_us']:.0f} us per chunk; "
          f"{first['events_per_call']:.0f} PayloadChunk events per call")
    print(f"{big['mb']} MiB streamed in {big['seconds']:.2f} s: {big['mb_per_s']:.0f} MiB/s; "
          f"worker USS {big['worker_uss_before_mb']:.1f} MB before, "
          f"{big['worker_uss_peak_mb']:.1f} MB at most during the stream")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
