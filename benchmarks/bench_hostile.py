"""Server memory around hostile import bodies: RSS before, after each of 10 JSON and multipart bodies, and at the end.

    python benchmarks/bench_hostile.py                # 30 MB bodies, as found by the adversarial pass
    python benchmarks/bench_hostile.py --mb 4         # what CI runs (tests/test_hostile.py)
    python benchmarks/bench_hostile.py --model-text --models 2000   # /-/versions.json under hostile model texts

With ``--model-text``: two clients send ``/api/models?q=`` with 7,000 x U+FDFA (63 KB in the URL) as fast as they are
answered, while ``/-/versions.json`` is timed, idle and under that load, with the sample's models plus enough made-up
ones to reach ``--models``. Passes when every hostile request is answered 200 with ``match: none``.

Each body is refused (400 or 422) and must change nothing. Memory is read from /proc half a second after each
answer. Passes (exit 0) only when every answer has the
expected status, the server logged no traceback, and its resident memory after all ten is within --max-growth-mb
(default 50) of what it was before the first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect
from tests.server import Server, multipart_envelope, running_server  # noqa: E402

GOOD = {
    "canonical_model": "RTX_4090",
    "vram_gb": 24,
    "mig_support": 0,
    "nvlink": False,
    "tdp_watts": 450,
    "price": 1999.5,
    "score": 0.71,
    "seller": "Apex Compute",
    "source_url": "https://example.com/listing/1",
}
HEADER = ",".join(GOOD)
ROW = ",".join(str(v) for v in GOOD.values())


SETTLE_SECONDS = 0.5  # the server gives memory back just after it answers; read RSS once that is done


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB, from /proc, read SETTLE_SECONDS after the last answer."""
    time.sleep(SETTLE_SECONDS)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError("no VmRSS")


def json_records_one_bad_at_the_end(size: int) -> bytes:
    one = json.dumps(GOOD).encode()
    count = size // (len(one) + 1)
    return b"[" + b",".join([one] * count) + b"," + json.dumps(dict(GOOD, price="abc")).encode() + b"]"


def json_broken_at_the_end(size: int) -> bytes:
    return json_records_one_bad_at_the_end(size)[:-2]


def json_nested(size: int) -> bytes:
    depth = size // 6
    return b"[" + b'{"a":' * depth + b"1" + b"}" * depth + b"]"


def json_long_model(size: int) -> bytes:
    return json.dumps([dict(GOOD, canonical_model="A" * size)]).encode()


def json_many_numbers(size: int) -> bytes:
    return b"[" + b",".join([b"1"] * (size // 2)) + b"]"


def json_surrogates(size: int) -> bytes:
    one = json.dumps(dict(GOOD, seller="x\ud800")).encode()
    return b"[" + b",".join([one] * (size // (len(one) + 1))) + b"]"


def json_many_keys(size: int) -> bytes:
    record = {f"extra_{i}": i for i in range(2000)}
    return json.dumps([dict(GOOD, **record)]).encode()


def multipart_fields(size: int) -> Tuple[bytes, str]:
    # Text fields of 60 KiB each, far more than allowed, then the file.
    fields = {f"f{i}": "x" * 60_000 for i in range(max(20, size // 60_000))}
    head, tail, content_type = multipart_envelope("file", "listings.csv", fields)
    return head + (HEADER + "\n" + ROW + "\n").encode() + tail, content_type


def multipart_csv_bad_at_the_end(size: int) -> Tuple[bytes, str]:
    line = (ROW + "\n").encode()
    content = (HEADER + "\n").encode() + line * (size // len(line)) + ROW.replace("1999.5", "x").encode() + b"\n"
    head, tail, content_type = multipart_envelope("file", "listings.csv", {})
    return head + content + tail, content_type


def multipart_long_header(size: int) -> Tuple[bytes, str]:
    head, tail, content_type = multipart_envelope("file", "listings.csv", {})
    head = head.replace(b"Content-Type: text/csv", b"X-Padding: " + b"p" * 100_000 + b"\r\nContent-Type: text/csv")
    return head + b"a\n1\n" + tail, content_type


JSON = "application/json"
BODIES: List[Tuple[str, Callable[[int], object], int]] = [
    ("JSON: valid records, one bad at the end", json_records_one_bad_at_the_end, 422),
    ("JSON: cut off at the end", json_broken_at_the_end, 400),
    ("JSON: objects nested deep", json_nested, 400),
    ("JSON: one model id of the whole size", json_long_model, 422),
    ("JSON: an array of numbers", json_many_numbers, 422),
    ("JSON: lone surrogates in every record", json_surrogates, 422),
    ("JSON: 2,000 keys", json_many_keys, 400),
    ("multipart: too many 60 KiB text fields", multipart_fields, 400),
    ("multipart: CSV with a bad row at the end", multipart_csv_bad_at_the_end, 422),
    ("multipart: a part header of 100 KB", multipart_long_header, 400),
]


def send(server: Server, make: Callable[[int], object], size: int) -> Tuple[int, float, int]:
    made = make(size)
    body, content_type = made if isinstance(made, tuple) else (made, JSON)
    started = time.perf_counter()
    answer = server.request("POST", "/api/import", body=body, headers={"Content-Type": content_type}, timeout=600)
    return answer.status, time.perf_counter() - started, len(body)


def run(size_mb: float, max_growth_mb: float, out=print) -> bool:
    """Send the ten bodies of about ``size_mb`` each to a fresh server; report, and say whether it passed."""
    size = int(size_mb * 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="glyph-hostile-"))
    db_path = work / "glyph.db"
    conn = connect(db_path)
    migrator.migrate(conn)
    conn.close()
    config = {"allow_import": True, "max_json_bytes": 2 * size + 10_000_000}
    config["max_upload_bytes"] = 2 * size + 10_000_000
    config["upload_dir"] = str(work / "uploads")
    ok = True
    with running_server(db_path, plugin_config=config, log_dir=work) as server:
        server.get("/api/imports")
        before = rss_mb(server.pid)
        out(f"server RSS before: {before:.1f} MB")
        for name, make, expected in BODIES:
            status, seconds, sent = send(server, make, size)
            good = status == expected
            ok &= good
            out(
                f"  {name:<45} {sent / 1e6:6.1f} MB  {status} {'ok' if good else f'(expected {expected})'}"
                f"  {seconds:5.2f} s  RSS {rss_mb(server.pid):6.1f} MB"
            )
        after = rss_mb(server.pid)
        growth = after - before
        imports = server.get("/api/imports").json()["total"]
        traceback = "Traceback" in server.log()
    out(f"server RSS after: {after:.1f} MB (growth {growth:+.1f} MB, limit {max_growth_mb:.0f} MB)")
    out(f"batches written: {imports}; traceback in the server log: {'yes' if traceback else 'no'}")
    return ok and growth <= max_growth_mb and imports == 0 and not traceback


HOSTILE_MODEL_TEXT = "\ufdfa" * 7000


# One hostile client: sends the request 20 times on one connection each, prints the last status and whether every
# answer said match none.
CLIENT = """
import http.client, json, sys
port, path = int(sys.argv[1]), sys.argv[2]
none = True
for _ in range(20):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", path)
    answer = conn.getresponse()
    body = answer.read()
    none = none and answer.status == 200 and json.loads(body)["match"] == "none"
    conn.close()
print(answer.status, none)
"""


def _p(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _versions_ms(server: Server, count: int) -> List[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        server.get("/-/versions.json", timeout=600)
        times.append((time.perf_counter() - started) * 1000)
    return times


def run_model_text(models: int, count: int = 200, out=print) -> bool:
    """``/-/versions.json`` p50 and p99, idle and while two clients send a 63 KB ``q`` to ``/api/models``."""
    import threading
    from urllib.parse import quote

    from datasette_glyph.engine.importer import import_csv

    work = Path(tempfile.mkdtemp(prefix="glyph-model-text-"))
    db_path = work / "glyph.db"
    conn = connect(db_path)
    migrator.migrate(conn)
    batch = import_csv(conn, Path(__file__).resolve().parents[1] / "sample" / "scored_sample.csv").import_id
    have = conn.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    with conn:
        conn.executemany(
            "INSERT INTO models (model, vram_gb, tdp_watts, import_id, import_index) VALUES (?, 24, 300, ?, ?)",
            [(f"MADE_UP_GPU_{i:05d}_{i % 7 * 8 + 8}GB", batch, 1_000_000 + i) for i in range(max(0, models - have))],
        )
    total = conn.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    conn.close()
    path = "/api/models?q=" + quote(HOSTILE_MODEL_TEXT)
    ok = True
    with running_server(db_path, log_dir=work) as server:
        server.get(path, timeout=600)  # the prepared models are cached from here on
        idle = _versions_ms(server, count)
        stop = threading.Event()
        answers: List[Tuple[int, bool]] = []

        def client():
            # Each client in a process of its own, so that reading the answers does not slow the timing client.
            command = [sys.executable, "-c", CLIENT, str(server.port), path]
            while not stop.is_set():
                status, matched_none = subprocess.run(command, capture_output=True, text=True).stdout.split()
                answers.append((int(status), matched_none == "True"))

        clients = [threading.Thread(target=client) for _ in range(2)]
        for c in clients:
            c.start()
        while not answers:
            time.sleep(0.01)
        loaded = _versions_ms(server, count)
        stop.set()
        for c in clients:
            c.join()
        ok = all(a == (200, True) for a in answers)
    out(f"{total:,} models; q of {len(quote(HOSTILE_MODEL_TEXT)):,} bytes in the URL")
    out(f"  /-/versions.json idle:              p50 {_p(idle, 0.5):7.1f} ms  p99 {_p(idle, 0.99):7.1f} ms")
    out(f"  /-/versions.json, 2 hostile clients: p50 {_p(loaded, 0.5):7.1f} ms  p99 {_p(loaded, 0.99):7.1f} ms")
    out(f"  hostile requests answered: {20 * len(answers)}, all 200 with match none: {'yes' if ok else 'no'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=30, help="size of each body in MB")
    parser.add_argument("--max-growth-mb", type=float, default=50)
    parser.add_argument("--model-text", action="store_true", help="time /-/versions.json under hostile model texts")
    parser.add_argument("--models", type=int, default=24, help="with --model-text: models in the database")
    args = parser.parse_args()
    if args.model_text:
        return 0 if run_model_text(args.models) else 1
    return 0 if run(args.mb, args.max_growth_mb) else 1


if __name__ == "__main__":
    sys.exit(main())
