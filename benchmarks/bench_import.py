"""Time CSV imports three ways on the same files, against a minimal reference importer, with peak memory.

For each size (default 100,000 and 1,000,000 rows, written by ``datasette_glyph.market`` as ``datasette
glyph-sample`` writes them) and each into a freshly migrated database with every index:

  reference  the floor in Python: csv module, type conversion, one executemany, one transaction
  engine     ``datasette_glyph.importer.import_csv`` without keeping the original (``--no-keep-file``)
  kept       the same, keeping the original compressed in the store, as ``datasette glyph-import`` does
  server     a real ``datasette`` process; the file is POSTed to ``/api/import`` by curl (``-F file=@...``,
             streamed from disk); the server's RSS is sampled from /proc/<pid>/status during the upload

Each of the three runs in its own process, so that one's memory does not count against another. Prints
seconds, rows/s, the ratio to the reference, and peak RSS (VmHWM), then checks the targets: server at least
as fast as the reference, server peak RSS under 128 MB, the small upload's peak within 20 MB of the
large one's, and keeping the original costing under 10% of the engine's import time (engine and kept run
``--repeat`` times, alternately; the best of each is compared). Also prints the kept file's compressed size.

    python benchmarks/bench_import.py
    python benchmarks/bench_import.py --rows 100000 --no-server
    python benchmarks/bench_import.py --work-dir /tmp/bench   # keeps (and reuses) the CSV files there
    python benchmarks/bench_import.py --rows 1000000 --no-server --repeat 3 --compress-level 6

This is a benchmark, not a test: a million rows take a minute or two for all three.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RSS_LIMIT_MB = 128
RSS_SPREAD_MB = 20
KEEP_COST_LIMIT = 0.10  # keeping the original may cost at most 10% of the import

# Column types for the reference importer, as the CSV header names them.
INTEGERS = {
    "vram_gb",
    "mig_support",
    "tdp_watts",
    "quantity",
    "min_order_qty",
    "cuda_cores",
    "slot_width",
    "pcie_generation",
}
REALS = {"price", "score"}
BOOLEANS = {"nvlink"}


def peak_rss_mb(pid="self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def current_rss_mb(pid) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def reference_import(conn, path: str) -> int:
    """The minimal importer: csv module, a converter per column, one executemany in one transaction."""
    import_id = str(uuid.uuid4())

    def to_int(value):
        return int(value) if value else None

    def to_real(value):
        return float(value) if value else None

    def to_bool(value):
        return value.strip().lower() in ("true", "1", "yes")

    def to_text(value):
        return value or None

    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader)
        converters = [
            to_int if n in INTEGERS else to_real if n in REALS else to_bool if n in BOOLEANS else to_text
            for n in header
        ]
        count = [0]

        def rows():
            for index, row in enumerate(reader, 1):
                count[0] = index
                yield [convert(value) for convert, value in zip(converters, row)] + [import_id, index]

        columns = ", ".join(header + ["import_id", "import_index"])
        marks = ", ".join("?" for _ in range(len(header) + 2))
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO import_batches (import_id) VALUES (?)", [import_id])
        conn.executemany(f"INSERT INTO scored_listings ({columns}) VALUES ({marks})", rows())
        conn.execute("UPDATE import_batches SET record_count = ? WHERE import_id = ?", [count[0], import_id])
        conn.execute("COMMIT")
    return count[0]


def child(mode: str, path: str, db: str, level=None) -> None:
    """Run one import in this process and print seconds, rows, peak RSS (and the kept file's size) as JSON."""
    sys.path.insert(0, ROOT)
    from datasette_glyph import files, importer
    from datasette_glyph.db import connect

    if level is not None:
        files.COMPRESS_LEVEL = level
    conn = connect(db)
    stored = None
    started = time.perf_counter()
    if mode == "reference":
        rows = reference_import(conn, path)
    elif mode == "kept":
        original = files.Original(files.files_dir(db), files.CSV_TYPE)
        rows = importer.import_csv(conn, path, original=original).record_count
        stored = conn.execute("SELECT stored_bytes FROM import_files").fetchone()[0]
    else:
        rows = importer.import_csv(conn, path).record_count
    seconds = time.perf_counter() - started
    conn.close()
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_rss_mb": peak_rss_mb(), "stored_bytes": stored}))


def fresh_database(directory: str) -> str:
    sys.path.insert(0, ROOT)
    from datasette_glyph import migrate
    from datasette_glyph.db import connect

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "glyph.db")
    conn = connect(path)
    migrate.migrate(conn)
    conn.close()
    return path


def run_child(mode: str, path: str, db: str, level=None) -> dict:
    level_args = ["--compress-level", str(level)] if level is not None else []
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", mode, "--csv", path, "--db", db, *level_args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def has_upload_route() -> bool:
    sys.path.insert(0, ROOT)
    try:
        from datasette_glyph import routes
    except Exception:
        return False
    return any(pattern == r"^/api/import$" for pattern, _ in getattr(routes, "ROUTES", []))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_server(path: str, db: str, work: str) -> dict:
    """Start datasette on ``db``, POST the file with curl, sample the server's RSS; stop the server."""
    port = free_port()
    metadata = os.path.join(work, "metadata.json")
    with open(metadata, "w") as f:
        json.dump({"plugins": {"datasette-glyph": {"database": "glyph", "allow_import": True}}}, f)
    server = subprocess.Popen(
        [sys.executable, "-m", "datasette", "serve", db, "--port", str(port), "--metadata", metadata],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/-/versions.json", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(
                "datasette did not start: " + (server.stderr.read() if server.poll() is not None else "")
            )
        idle_mb = current_rss_mb(server.pid)
        samples, done = [], threading.Event()

        def sample():
            while not done.is_set():
                samples.append(current_rss_mb(server.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        response = subprocess.run(
            ["curl", "-sS", "-F", f"file=@{path};type=text/csv", "-F", "source=bench", base + "/api/import"],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        body = json.loads(response.stdout)
        if not body.get("ok"):
            raise RuntimeError(f"upload failed: {response.stdout[:500]}")
        return {
            "seconds": seconds,
            "rows": body["record_count"],
            "peak_rss_mb": peak_rss_mb(server.pid),
            "sampled_max_mb": max(samples),
            "idle_rss_mb": idle_mb,
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def make_csv(rows: int, seed: int, work: str) -> str:
    from datasette_glyph.market import write_market

    path = os.path.join(work, f"scored_{rows}_seed{seed}.csv")
    if not os.path.exists(path):
        write_market(path, rows, seed)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, action="append", help="rows per file (repeatable; default 100000 and 1000000)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work-dir", help="where CSV files and databases go (default: a temporary folder, removed)")
    parser.add_argument("--no-server", action="store_true", help="skip the datasette upload")
    parser.add_argument("--repeat", type=int, default=1, help="runs of engine and kept each, alternately (best counts)")
    parser.add_argument("--compress-level", type=int, help="zlib level for the kept original (default: the store's)")
    parser.add_argument("--child", choices=["reference", "engine", "kept"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.csv, args.db, args.compress_level)
        return 0

    sizes = args.rows or [100_000, 1_000_000]
    work = args.work_dir or tempfile.mkdtemp(prefix="glyph-bench-import-")
    os.makedirs(work, exist_ok=True)
    server_ok = not args.no_server and has_upload_route()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  (python {sys.version.split()[0]})")
    results = {}
    try:
        for rows in sizes:
            path = make_csv(rows, args.seed, work)
            size_mb = os.path.getsize(path) / 2**20
            print(f"\n{rows:,} rows, {size_mb:.1f} MiB: {path}")
            modes = ["reference"] + ["engine", "kept"] * max(1, args.repeat) + (["server"] if server_ok else [])
            for mode in modes:
                directory = os.path.join(work, f"{mode}_{rows}")
                shutil.rmtree(directory, ignore_errors=True)
                db = fresh_database(directory)
                if mode == "server":
                    result = run_server(path, db, directory)
                else:
                    result = run_child(mode, path, db, args.compress_level)
                if result["rows"] != rows:
                    raise RuntimeError(f"{mode} imported {result['rows']} rows, expected {rows}")
                if (rows, mode) not in results or result["seconds"] < results[rows, mode]["seconds"]:
                    results[rows, mode] = result
                ratio = results[rows, "reference"]["seconds"] / result["seconds"]
                extra = ""
                if mode == "server":
                    extra = f"  (idle {result['idle_rss_mb']:.0f} MB, sampled max {result['sampled_max_mb']:.0f} MB)"
                if mode == "kept":
                    stored = result["stored_bytes"]
                    extra = f"  (kept file {stored / 2**20:.1f} MiB, {stored / os.path.getsize(path):.1%} of the CSV)"
                print(
                    f"  {mode:<9} {result['seconds']:7.2f} s  {rows / result['seconds']:9,.0f} rows/s  "
                    f"{ratio:5.2f}x reference  peak RSS {result['peak_rss_mb']:6.1f} MB{extra}"
                )
                shutil.rmtree(directory, ignore_errors=True)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    checks = []
    for rows in sizes:
        cost = results[rows, "kept"]["seconds"] / results[rows, "engine"]["seconds"] - 1
        checks.append(
            (f"keeping the original costs < {KEEP_COST_LIMIT:.0%} at {rows:,} rows: {cost:+.1%}", cost < KEEP_COST_LIMIT)
        )
    if server_ok:
        for rows in sizes:
            server, reference = results[rows, "server"], results[rows, "reference"]
            speed = reference["seconds"] / server["seconds"]
            checks.append((f"server >= 1.0x reference at {rows:,} rows: {speed:.2f}x", speed >= 1.0))
            peak = server["peak_rss_mb"]
            checks.append((f"server peak RSS < {RSS_LIMIT_MB} MB at {rows:,} rows: {peak:.1f} MB", peak < RSS_LIMIT_MB))
        peaks = [results[rows, "server"]["peak_rss_mb"] for rows in sizes]
        spread = max(peaks) - min(peaks)
        checks.append(
            (f"server peaks within {RSS_SPREAD_MB} MB of each other: {spread:.1f} MB", spread <= RSS_SPREAD_MB)
        )
    else:
        print("  (no server run: " + ("--no-server" if args.no_server else "POST /api/import is not available") + ")")
    for label, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
