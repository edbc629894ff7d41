"""Time CSV imports three ways on the same files, against a minimal reference importer, with peak memory.

For each size (default 100,000 and 1,000,000 rows, written by ``datasette_glyph.engine.sample`` as ``datasette
glyph-sample`` writes them) and each into a freshly migrated database with every index:

  reference  the floor in Python: csv module, type conversion, one executemany, one transaction
  engine     ``datasette_glyph.engine.importer.import_csv``, as ``datasette glyph-import`` runs it (a file of
             ``reading.PARALLEL_MIN_BYTES`` or more is read by a second process)
  server     a real ``datasette`` process; the file is POSTed to ``/api/import`` by curl (``-F file=@...``,
             streamed from disk); the server's RSS is sampled from /proc/<pid>/status during the upload, alone
             and with its reading process's

Then the largest size again, into a store that already holds ``--base-rows`` rows (default 5,000,000): the
market's first five daily snapshots of the largest size (``datasette_glyph.engine.sample``: 10% of prices changed, 5%
of listings removed and 5% added each day), imported by the engine from one source, and copied for each of the
three; the file imported into it is the sixth snapshot. Every import is from that one source (``bench``), so
the engine and the server compare the sixth snapshot with the fifth and keep the deltas, as a nightly import
does; the reference keeps none. Also the rollback of the largest batch in the empty store.

Each of the three runs in its own process, so that one's memory does not count against another. Prints
seconds, rows/s, the ratio to the reference, and peak RSS (VmHWM), then checks the targets: server at least
2.5x the reference into an empty store at the largest size and 1.3x into the large store, server peak RSS under
128 MB, the small upload's peak within 20 MB of the large one's, and the rollback of the largest batch under 3 s.

    python benchmarks/bench_import.py
    python benchmarks/bench_import.py --rows 100000 --no-server --base-rows 0
    python benchmarks/bench_import.py --work-dir /tmp/bench   # keeps (and reuses) the CSV files and the base store

This is a benchmark, not a test: with the 5,000,000-row store it takes ten minutes or more.
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

from datasette_glyph.engine import importer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RSS_LIMIT_MB = 128
RSS_SPREAD_MB = 20
EMPTY_STORE_TARGET = 2.5  # server / reference, largest size into an empty store
LARGE_STORE_TARGET = 1.3  # server / reference, largest size into the base store
ROLLBACK_TARGET_S = 3.0

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


def children(pid) -> list:
    """The process ids of ``pid``'s children (a large upload's reading process)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(child) for child in f.read().split())
    except OSError:
        pass
    return found


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


SOURCE = "bench"  # the source of every import the script makes (the server's upload names it too)


def child(mode: str, path: str, db: str) -> None:
    """Run one import in this process and print seconds, rows and peak RSS as JSON."""
    sys.path.insert(0, ROOT)
    from datasette_glyph.engine.sqlite import connect

    conn = connect(db)
    reader, done = [0.0], threading.Event()

    def sample():  # the RSS of this process's reading process, if it starts one
        while not done.is_set():
            reader.append(sum(current_rss_mb(pid) for pid in children(os.getpid())))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    if mode == "reference":
        rows = reference_import(conn, path)
    elif mode == "queries":
        done.set()
        print(json.dumps(time_queries(conn)))
        return
    elif mode == "rollback":
        from datasette_glyph.engine import lineage

        import_id = conn.execute("SELECT import_id FROM import_batches ORDER BY rowid DESC LIMIT 1").fetchone()[0]
        rows = lineage.rollback_import(conn, import_id).scored_listings
    else:
        rows = importer.import_csv(conn, path, source_name=SOURCE).record_count
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    conn.close()
    peaks = {"peak_rss_mb": peak_rss_mb(), "reader_peak_rss_mb": max(reader)}
    print(json.dumps({"seconds": seconds, "rows": rows, **peaks}))


# Lineage reads timed on the largest store (p50 of QUERY_RUNS, in ms), through the functions the API calls
QUERY_RUNS = 21
QUERY_TARGET_MS = 20.0


def time_queries(conn) -> dict:
    import statistics

    from datasette_glyph.engine import lineage
    from datasette_glyph.engine.listings import ListingQuery, find_listings

    rows = conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone()[0]
    queries = {
        "price range alone, few rows (min_price=35000)": ListingQuery(min_price=35_000, limit=100),
        "price range alone, many rows (500-5000)": ListingQuery(min_price=500, max_price=5_000, limit=100),
    }
    # A listing the newest import shares with the store, as GET /api/listings/history reads it
    (url,) = conn.execute(
        "SELECT source_url FROM scored_listings WHERE import_id = (SELECT import_id FROM import_batches "
        "ORDER BY id DESC LIMIT 1) AND source_url IN (SELECT source_url FROM scored_listings WHERE rowid < 1000) "
        "LIMIT 1"
    ).fetchone() or (None,)
    if url is None:  # no listing in common: any of the newest import's
        (url,) = conn.execute("SELECT source_url FROM scored_listings ORDER BY rowid DESC LIMIT 1").fetchone()
    calls = {label: (lambda q=query: find_listings(conn, q)) for label, query in queries.items()}
    calls["listing history by source_url"] = lambda: lineage.listing_history(conn, url, limit=100)
    timings = {}
    for label, call in calls.items():
        spent = []
        for _ in range(QUERY_RUNS):
            started = time.perf_counter()
            call()
            spent.append((time.perf_counter() - started) * 1000)
        timings[label] = statistics.median(spent)
    return {"rows": rows, "p50_ms": timings}


def fresh_database(directory: str) -> str:
    sys.path.insert(0, ROOT)
    from datasette_glyph.engine import migrator
    from datasette_glyph.engine.sqlite import connect

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "glyph.db")
    conn = connect(path)
    migrator.migrate(conn)
    conn.close()
    return path


def run_child(mode: str, path: str, db: str) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", mode, "--csv", path, "--db", db],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def has_upload_route() -> bool:
    sys.path.insert(0, ROOT)
    try:
        from datasette_glyph.web import routes
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
        samples, with_children, done = [], [], threading.Event()

        def sample():
            while not done.is_set():
                samples.append(current_rss_mb(server.pid))
                with_children.append(samples[-1] + sum(current_rss_mb(child) for child in children(server.pid)))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        response = subprocess.run(
            ["curl", "-sS", "-F", f"file=@{path};type=text/csv", "-F", f"source={SOURCE}", base + "/api/import"],
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
            "with_reader_mb": max(with_children),
            "idle_rss_mb": idle_mb,
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def base_store(base_rows: int, rows: int, seed: int, work: str) -> tuple:
    """A migrated store holding ``base_rows // rows`` consecutive daily snapshots of the ``rows``-listing market,
    imported by the engine (kept in ``work``), and the path of the next snapshot's file."""
    count = max(1, base_rows // rows)
    files = snapshot_files(count + 1, rows, seed, work)
    path = os.path.join(work, f"base_{count}x{rows}_seed{seed}.db")
    if not os.path.exists(path):
        building = fresh_database(os.path.join(work, "base_building"))
        started = time.perf_counter()
        for csv_path in files[:count]:
            run_child("engine", csv_path, building)
        print(f"  (built the store of {count} snapshots in {time.perf_counter() - started:.0f} s)")
        os.replace(building, path)
    return path, files[count]


def snapshot_files(count: int, rows: int, seed: int, work: str) -> list:
    """The market's first ``count`` daily snapshots as CSV files; the first is ``make_csv``'s file."""
    from datetime import timedelta

    from datasette_glyph.engine import sample

    paths = [make_csv(rows, seed, work)]
    for day in range(1, count):
        path = os.path.join(work, f"scored_{rows}_seed{seed}_day{day + 1}.csv")
        if not os.path.exists(path):
            snapshot = sample.iter_next_snapshot(
                sample.iter_csv(paths[-1]), seed=seed * 1000 + day, day=sample.FIRST_DAY + timedelta(days=day)
            )
            sample.write_csv(snapshot, path + ".part")
            os.replace(path + ".part", path)
        paths.append(path)
    return paths


def make_csv(rows: int, seed: int, work: str) -> str:
    from datasette_glyph.engine.sample import write_market

    path = os.path.join(work, f"scored_{rows}_seed{seed}.csv")
    if not os.path.exists(path):  # written whole or not at all: an interrupted run leaves no short file to reuse
        write_market(path + ".part", rows, seed)
        os.replace(path + ".part", path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, action="append", help="rows per file (repeatable; default 100000 and 1000000)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work-dir", help="where CSV files and databases go (default: a temporary folder, removed)")
    parser.add_argument("--no-server", action="store_true", help="skip the datasette upload")
    parser.add_argument(
        "--base-rows",
        type=int,
        default=5_000_000,
        help="rows already in the store for the last run (0 to skip it; default 5000000)",
    )
    parser.add_argument("--child", choices=["reference", "engine", "rollback", "queries"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.csv, args.db)
        return 0

    sizes = args.rows or [100_000, 1_000_000]
    work = args.work_dir or tempfile.mkdtemp(prefix="glyph-bench-import-")
    os.makedirs(work, exist_ok=True)
    server_ok = not args.no_server and has_upload_route()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  (python {sys.version.split()[0]})")
    results = {}
    largest = max(sizes)
    base = None
    try:
        runs = [(rows, 0) for rows in sizes] + ([(largest, args.base_rows)] if args.base_rows else [])
        for rows, base_rows in runs:
            path = make_csv(rows, args.seed, work)
            if base_rows:
                base, path = base_store(base_rows, rows, args.seed, work)
            size_mb = os.path.getsize(path) / 2**20
            into = f" into a store of {base_rows:,} rows (earlier snapshots)" if base_rows else " into an empty store"
            print(f"\n{rows:,} rows, {size_mb:.1f} MiB{into}: {path}")
            modes = ["reference", "engine"] + (["server"] if server_ok else [])
            for mode in modes:
                directory = os.path.join(work, f"{mode}_{rows}_{base_rows}")
                shutil.rmtree(directory, ignore_errors=True)
                if base_rows:
                    os.makedirs(directory)
                    db = os.path.join(directory, "glyph.db")
                    shutil.copyfile(base, db)
                else:
                    db = fresh_database(directory)
                if mode == "server":
                    result = run_server(path, db, directory)
                else:
                    result = run_child(mode, path, db)
                expected = results[rows, base_rows, "reference"]["rows"] if mode != "reference" else result["rows"]
                if result["rows"] != expected or (not base_rows and result["rows"] != rows):
                    raise RuntimeError(f"{mode} imported {result['rows']} rows, expected {expected}")
                results[rows, base_rows, mode] = result
                ratio = results[rows, base_rows, "reference"]["seconds"] / result["seconds"]
                count = result["rows"]
                extra = ""
                if result.get("reader_peak_rss_mb"):
                    extra = f"  (its reading process {result['reader_peak_rss_mb']:.0f} MB)"
                if mode == "server":
                    extra = (
                        f"  (idle {result['idle_rss_mb']:.0f} MB, sampled max {result['sampled_max_mb']:.0f} MB, "
                        f"with its reading process {result['with_reader_mb']:.0f} MB)"
                    )
                print(
                    f"  {mode:<9} {result['seconds']:7.2f} s  {count / result['seconds']:9,.0f} rows/s  "
                    f"{ratio:5.2f}x reference  peak RSS {result['peak_rss_mb']:6.1f} MB{extra}"
                )
                if mode == "engine" and base_rows:
                    out = subprocess.run(
                        [sys.executable, os.path.abspath(__file__), "--child", "queries", "--csv", path, "--db", db],
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    queries = json.loads(out.stdout)
                    results["queries"] = queries
                    for label, ms in queries["p50_ms"].items():
                        print(f"  query     {ms:7.2f} ms p50  {label}, {queries['rows']:,} rows")
                if mode == "engine" and rows == largest and not base_rows:
                    rollback = run_child("rollback", path, db)
                    results["rollback"] = rollback
                    print(f"  rollback  {rollback['seconds']:7.2f} s  of the {rollback['rows']:,}-row batch")
                shutil.rmtree(directory, ignore_errors=True)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if server_ok:
        checks = []
        for rows, base_rows in runs:
            server, reference = results[rows, base_rows, "server"], results[rows, base_rows, "reference"]
            speed = reference["seconds"] / server["seconds"]
            target = LARGE_STORE_TARGET if base_rows else EMPTY_STORE_TARGET if rows == largest else 1.0
            where = f"into {base_rows:,} rows" if base_rows else "into an empty store"
            checks.append((f"server >= {target}x reference at {rows:,} rows {where}: {speed:.2f}x", speed >= target))
            peak = server["peak_rss_mb"]
            checks.append(
                (f"server peak RSS < {RSS_LIMIT_MB} MB at {rows:,} rows {where}: {peak:.1f} MB", peak < RSS_LIMIT_MB)
            )
        for label, ms in results.get("queries", {}).get("p50_ms", {}).items():
            checks.append((f"{label} < {QUERY_TARGET_MS:g} ms p50: {ms:.2f} ms", ms < QUERY_TARGET_MS))
        if "rollback" in results:
            seconds = results["rollback"]["seconds"]
            checks.append(
                (
                    f"rollback of the {largest:,}-row batch < {ROLLBACK_TARGET_S} s: {seconds:.2f} s",
                    seconds < ROLLBACK_TARGET_S,
                )
            )
        peaks = [results[rows, 0, "server"]["peak_rss_mb"] for rows in sizes]
        spread = max(peaks) - min(peaks)
        checks.append(
            (f"server peaks within {RSS_SPREAD_MB} MB of each other: {spread:.1f} MB", spread <= RSS_SPREAD_MB)
        )
        for label, ok in checks:
            print(f"  {'PASS' if ok else 'FAIL'}  {label}")
        return 0 if all(ok for _, ok in checks) else 1
    print("  (no server run: " + ("--no-server" if args.no_server else "POST /api/import is not available") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
