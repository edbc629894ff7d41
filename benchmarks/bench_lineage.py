"""Time lineage at size: a diff of two consecutive imports, and the rollback of a big import under read load.

With ``--deltas ROWS``, times the deltas kept at import time instead: two consecutive ROWS-row snapshots of one
market, streamed to CSV and imported; what keeping the deltas adds to the second import (``record_deltas`` run
again on its own, against the whole import's time); the diff's first page and counts and a later page, read
from the kept deltas (engine and ``GET /api/imports/A/diff/B``), beside one on-demand computation; then more
snapshots until the store holds ``--store-rows`` rows, and the history of one listing (engine and
``GET /api/listings/history``), each as the median (p50) of ``--runs`` runs.

    python benchmarks/bench_lineage.py --deltas 1000000 --store-rows 6000000 --runs 20

1. Imports two consecutive snapshots of one market (``datasette_glyph.engine.sample``: same source_urls, some
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
from urllib.parse import urlencode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from datasette_glyph.engine import deltas, lineage, migrator, sample
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.sqlite import connect
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
    print(f"  listing_history of one source_url (through the source_url index): {bench_history(conn, url, 3)}")

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


def p50(fn, runs: int) -> tuple:
    """(median seconds, last result) of ``runs`` calls of ``fn``."""
    times, result = [], None
    for _ in range(runs):
        seconds, result = timed(fn)
        times.append(seconds)
    return statistics.median(times), result


def api_p50(path: str, paths: dict, runs: int) -> dict:
    """Median milliseconds of each GET through Datasette (the test client, no network), by label."""
    from datasette_test import Datasette

    async def run():
        ds = Datasette([path], settings={"suggest_facets": False})
        await ds.invoke_startup()
        result = {}
        for label, url in paths.items():
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                response = await ds.client.get(url)
                times.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text
            result[label] = statistics.median(times) * 1000
        return result

    return asyncio.run(run())


def import_snapshot(conn, directory: str, name: str, rows, source: str = "market"):
    """Write ``rows`` (an iterator) to a CSV file and import it; (seconds of the import, result, file path)."""
    csv_path = os.path.join(directory, f"{name}.csv")
    sample.write_csv(rows, csv_path)
    seconds, result = timed(import_csv, conn, csv_path, source_name=source)
    print(f"  imported {result.record_count:,} rows ({name}) in {seconds:.1f}s")
    return seconds, result, csv_path


def bench_deltas(conn, path: str, directory: str, rows: int, store_rows: int, runs: int) -> None:
    print(f"Deltas kept at import time: two consecutive {rows:,}-row imports")
    _, first, first_csv = import_snapshot(conn, directory, "day-1", sample.iter_market(rows, seed=1))
    second_rows = sample.iter_next_snapshot(sample.iter_csv(first_csv), seed=1001)
    import_seconds, second, second_csv = import_snapshot(conn, directory, "day-2", second_rows)
    os.remove(first_csv)
    a, b = first.import_id, second.import_id
    cost, _ = p50(lambda: deltas.record_deltas(conn, b), 3)
    print(
        f"  keeping the deltas (record_deltas, p50 of 3 recomputations): {cost:.2f}s, "
        f"{cost / import_seconds * 100:.1f}% of the second import ({import_seconds:.1f}s)"
    )
    kept_rows = conn.execute("SELECT COUNT(*) FROM import_deltas WHERE import_id = ?", [b]).fetchone()[0]
    print(f"  kept {kept_rows:,} delta rows")
    first_page, diff = p50(lambda: lineage.diff_imports(conn, a, b), runs)
    print(
        f"  diff, first page of 100 and counts (kept): p50 {first_page * 1000:.1f} ms; {diff.changed:,} changed, "
        f"{diff.added:,} added, {diff.removed:,} removed, {diff.unchanged:,} unchanged"
    )
    later = diff.total - 100
    later_page, _ = p50(lambda: lineage.diff_imports(conn, a, b, offset=later), runs)
    print(f"  diff, page of 100 at offset {later:,} (kept): p50 {later_page * 1000:.1f} ms")
    removed_page, _ = p50(lambda: lineage.diff_imports(conn, a, b, kind="removed", offset=1000), runs)
    print(f"  diff, kind=removed, offset 1,000 (kept): p50 {removed_page * 1000:.1f} ms")
    computed, _ = timed(lineage.computed_changes, conn, a, b, None, 100, 0)
    print(f"  the same first page computed from both imports' rows (once): {computed * 1000:.0f} ms")
    diff_path = f"/api/imports/{a}/diff/{b}"
    for label, ms in api_p50(
        path, {"first page": diff_path + "?limit=100", "later page": f"{diff_path}?offset={later}"}, runs
    ).items():
        print(f"  GET {diff_path.replace(a, 'A').replace(b, 'B')} {label}: p50 {ms:.1f} ms")
    # More snapshots of the same market, until the store holds store_rows rows.
    previous_csv, day = second_csv, 3
    while conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone()[0] + rows <= store_rows:
        next_rows = sample.iter_next_snapshot(sample.iter_csv(previous_csv), seed=1000 + day)
        _, _, csv_path = import_snapshot(conn, directory, f"day-{day}", next_rows)
        os.remove(previous_csv)
        previous_csv, day = csv_path, day + 1
    os.remove(previous_csv)
    total = conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone()[0]
    url = sample.URL_PREFIX + "12345"
    history, points = p50(lambda: lineage.listing_history(conn, url, limit=100), runs)
    print(f"  history of one listing in a {total:,}-row store: p50 {history * 1000:.2f} ms ({len(points)} points)")
    query = urlencode({"source_url": url})
    for _, ms in api_p50(path, {"history": f"/api/listings/history?{query}"}, runs).items():
        print(f"  GET /api/listings/history?source_url=...: p50 {ms:.1f} ms")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diff-rows", type=int, default=100_000, help="rows in each diffed import")
    parser.add_argument("--rollback-rows", type=int, default=1_000_000, help="rows in the import rolled back")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each diff")
    parser.add_argument("--deltas", type=int, metavar="ROWS", help="time the kept deltas with imports of ROWS rows")
    parser.add_argument("--store-rows", type=int, default=6_000_000, help="with --deltas: rows in the history store")
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
        migrator.migrate(conn)
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        if args.deltas:
            bench_deltas(conn, path, directory, args.deltas, args.store_rows, args.runs)
            print(f"load average after: {os.getloadavg()[0]:.2f}")
            return
        print(f"Diff of two {args.diff_rows:,}-row imports")
        a, b = bench_diff(conn, path, directory, args.diff_rows, args.runs)
        print(f"Rollback of a {args.rollback_rows:,}-row import")
        bench_rollback(conn, path, directory, args.rollback_rows, [a, b], readers=not args.no_readers)
        conn.close()
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
