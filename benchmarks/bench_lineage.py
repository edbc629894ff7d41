"""Time lineage at size: a diff of two consecutive imports, and the rollback of a big import under read load.

1. Imports two consecutive snapshots of one market (``datasette_glyph.market``: same source_urls, some
   prices changed, some listings removed, some added) of DIFF_ROWS rows each, with the importer, and times
   ``lineage.diff_imports`` between them (engine call, and ``GET /api/imports/A/diff/B`` through Datasette).
2. Imports a third snapshot of ROLLBACK_ROWS rows, then rolls it back on one thread while another thread,
   on its own connection, keeps querying the other two batches; prints the rollback time and the
   latencies of those queries, and checks that the other batches' rows are byte for byte as they were.

    python benchmarks/bench_lineage.py                      # 100,000-row diff, 1,000,000-row rollback
    python benchmarks/bench_lineage.py --row-by-row          # the same, without the index rebuild
    python benchmarks/bench_lineage.py --no-readers          # the rollback alone
    python benchmarks/bench_lineage.py --diff-rows 10000 --rollback-rows 100000 --keep /tmp/lineage.db

This is a benchmark, not a test: at full size it takes a minute or two, most of it importing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from datasette_glyph import lineage, migrate
from datasette_glyph.db import connect
from datasette_glyph.importer import import_csv
from tests.snapshots import iter_market, market_snapshots, write_csv

# What the other batches are asked while the rollback runs: what a person browsing them would ask.
QUERIES = {
    "count + mean price of a batch": "SELECT COUNT(*), AVG(price) FROM scored_listings WHERE import_id = :other",
    "page of 100 rows in file order": (
        "SELECT * FROM scored_listings WHERE import_id = :other AND import_index > 500 ORDER BY import_index LIMIT 100"
    ),
    "batch record": "SELECT * FROM import_batches WHERE import_id = :other",
}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def batch_checksum(conn, import_id: str) -> str:
    digest = hashlib.sha256()
    for table in ("scored_listings", "models", "listings", "quantized_listings", "import_batches"):
        for row in conn.execute(f"SELECT * FROM {table} WHERE import_id = ? ORDER BY id", [import_id]):
            digest.update(repr(row).encode())
    return digest.hexdigest()


def bench_diff(conn, path: str, directory: str, rows: int, runs: int):
    (monday, tuesday), (changes,) = market_snapshots(2, rows, seed=1)
    ids = []
    for name, snapshot in (("monday", monday), ("tuesday", tuesday)):
        csv_path = os.path.join(directory, f"{name}.csv")
        write_csv(snapshot, csv_path)
        seconds, result = timed(import_csv, conn, csv_path, source_name="market")
        print(f"  imported {result.record_count:,} rows ({name}) in {seconds:.1f}s")
        ids.append(result.import_id)
    a, b = ids
    print(
        f"  the snapshots differ by {len(changes.changed):,} changed prices, {len(changes.removed):,} removed, "
        f"{len(changes.added):,} added"
    )
    for label, kwargs in (
        ("all kinds, first page of 100", {}),
        ("kind=removed, offset 1,000", {"kind": "removed", "offset": 1000}),
    ):
        times = []
        for _ in range(runs):
            seconds, diff = timed(lineage.diff_imports, conn, a, b, **kwargs)
            times.append(seconds)
        print(
            f"  diff_imports ({label}): best {min(times):.2f}s, worst {max(times):.2f}s of {runs}; "
            f"{diff.changed:,} changed, {diff.added:,} added, {diff.removed:,} removed, {diff.unchanged:,} unchanged"
        )
    print(f"  GET /api/imports/A/diff/B through Datasette: {bench_diff_api(path, a, b, runs)}")
    return a, b


def bench_diff_api(path: str, a: str, b: str, runs: int) -> str:
    from datasette_test import Datasette

    async def run():
        ds = Datasette([path])
        await ds.invoke_startup()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            response = await ds.client.get(f"/api/imports/{a}/diff/{b}")
            times.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
        return f"best {min(times):.2f}s, worst {max(times):.2f}s of {runs} ({len(response.content):,} bytes)"

    return asyncio.run(run())


def bench_rollback(conn, path: str, directory: str, rows: int, others, readers: bool = True):
    csv_path = os.path.join(directory, "big.csv")
    seconds, _ = timed(write_csv, iter_market(rows, seed=99), csv_path)
    print(f"  wrote {rows:,} rows to {os.path.getsize(csv_path) / 2**20:.0f} MiB of CSV in {seconds:.1f}s")
    seconds, result = timed(import_csv, conn, csv_path, source_name="big")
    os.remove(csv_path)
    big = result.import_id
    print(f"  imported {result.record_count:,} rows in {seconds:.1f}s")
    before = {other: batch_checksum(conn, other) for other in others}
    total = conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone()[0]
    print(f"  scored_listings holds {total:,} rows in {len(others) + 1} batches")
    url = "https://market.example/listing/1"
    print(f"  listing_history of one source_url (a scan: source_url has no index): {bench_history(conn, url, 3)}")

    latencies = {name: [] for name in QUERIES}
    errors = []
    done = threading.Event()

    def reader():
        reader_conn = connect(path)
        i = 0
        while not done.is_set():
            other = others[i % len(others)]
            for name, sql in QUERIES.items():
                start = time.perf_counter()
                try:
                    reader_conn.execute(sql, {"other": other}).fetchall()
                except sqlite3.Error as e:  # a locked or failed read is a finding, not a crash
                    errors.append(f"{name}: {e}")
                latencies[name].append((start, time.perf_counter() - start))
            i += 1
            time.sleep(0.01)
        reader_conn.close()

    thread = threading.Thread(target=reader)
    if readers:
        thread.start()
        time.sleep(0.5)  # let the reader get going first
    writer = connect(path)
    started = time.perf_counter()
    rolled = lineage.rollback_import(writer, big, actor="bench")
    finished = time.perf_counter()
    seconds = finished - started
    writer.close()
    done.set()
    if readers:
        thread.join()
    print(
        f"  rollback_import removed {rolled.scored_listings:,} scored_listings and {rolled.models} models rows "
        f"in {seconds:.2f}s"
    )
    for name, timings in latencies.items() if readers else ():
        # the queries that ran while the rollback did
        values = [duration for start, duration in timings if start + duration > started and start < finished]
        print(
            f"  during it, '{name}' on another connection: {len(values)} queries, "
            f"median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"
        )
    if readers:
        print(f"  failed reads during the rollback: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    after = {other: batch_checksum(conn, other) for other in others}
    print(f"  other batches byte for byte unchanged: {after == before}")
    return seconds


def bench_history(conn, url: str, runs: int) -> str:
    times = []
    for _ in range(runs):
        seconds, points = timed(lineage.listing_history, conn, url)
        times.append(seconds)
    return f"best {min(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms of {runs} ({len(points)} points)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diff-rows", type=int, default=100_000, help="rows in each diffed import")
    parser.add_argument("--rollback-rows", type=int, default=1_000_000, help="rows in the import rolled back")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each diff")
    parser.add_argument("--keep", help="build the database here and keep it (default: a temporary file)")
    parser.add_argument("--no-readers", action="store_true", help="roll back with nothing else reading the database")
    parser.add_argument(
        "--row-by-row",
        action="store_true",
        help="delete row by row even though the batch is most of the table (no index rebuild), for comparison",
    )
    args = parser.parse_args(argv)
    if args.row_by_row:
        lineage.REBUILD_INDEXES_MIN_ROWS = float("inf")
    with tempfile.TemporaryDirectory() as directory:
        path = args.keep or os.path.join(directory, "glyph.db")
        conn = connect(path)
        migrate.migrate(conn)
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print(f"Diff of two {args.diff_rows:,}-row imports")
        a, b = bench_diff(conn, path, directory, args.diff_rows, args.runs)
        print(f"Rollback of a {args.rollback_rows:,}-row import")
        bench_rollback(conn, path, directory, args.rollback_rows, [a, b], readers=not args.no_readers)
        conn.close()
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
