"""Datasette's own pages while large diffs run: do diffs leave the readers room?

Builds a database with two consecutive snapshots of one market (``tests/snapshots.py``) of ROWS rows each,
serves it with the README's settings, starts three diffs of the two imports at once (each from its own
client), and meanwhile asks for the ``scored_listings`` table page (HTML) and its JSON over and over. Prints
the latency of those pages while the diffs run, and how long each diff took (or that it was stopped by
``read_time_limit_ms``). Target: every table page under 1 s.

    python benchmarks/diff_readers.py                    # 300,000 rows per import
    python benchmarks/diff_readers.py --rows 50000 --read-threads 2 --time-limit-ms 60000
    python benchmarks/diff_readers.py --arranged --db /tmp/diff.db   # the diff page ?sort=change and ?model=

With ``--arranged``: two imports with about 250,000 changes between them (80% of 300,000 listings change price);
the diff page is asked for with ``?sort=change`` and with ``?model=``, one at a time, while ``/-/versions.json``
is asked for over and over; prints its p50 and slowest answer during each page, and the server's resident memory
before and at its peak (VmHWM). ``--db`` keeps the built database for the next run.

This is a benchmark, not a test: it prints numbers and exits 1 if a page took 1 s or more or failed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from datasette_glyph.engine import migrator
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.sqlite import connect
from tests.server import readme_settings, running_server
from tests.snapshots import market_snapshots, write_csv

PAGES = ("/glyph/scored_listings", "/glyph/scored_listings.json?_size=50")
TARGET_SECONDS = 1.0


def build(path: Path, directory: Path, rows: int):
    conn = connect(path)
    migrator.migrate(conn)
    snapshots, _ = market_snapshots(2, rows, seed=7)
    ids = []
    for n, snapshot in enumerate(snapshots):
        csv_path = directory / f"snapshot{n}.csv"
        write_csv(snapshot, csv_path)
        ids.append(import_csv(conn, str(csv_path), source_name="market").import_id)
    conn.close()
    return ids


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def arranged(db: Path, rows: int) -> int:
    """The diff page's own orders over a diff of about 250,000 changes, with /-/versions.json timed meanwhile."""
    if not db.exists():
        conn = connect(db)
        migrator.migrate(conn)
        snapshots, _ = market_snapshots(2, rows, seed=7, changed=0.8, removed=0.02, added=0.02)
        for n, snapshot in enumerate(snapshots):
            csv_path = db.parent / f"snapshot{n}.csv"
            write_csv(snapshot, csv_path)
            import_csv(conn, str(csv_path), source_name="market")
            csv_path.unlink()
        conn.close()
    conn = connect(db)
    a, b = [r[0] for r in conn.execute("SELECT import_id FROM import_batches ORDER BY id")]
    model = conn.execute(
        "SELECT canonical_model FROM import_deltas WHERE import_id = ? GROUP BY 1 ORDER BY COUNT(*) DESC", [b]
    ).fetchone()[0]
    changes = conn.execute("SELECT COUNT(*) FROM import_deltas WHERE import_id = ?", [b]).fetchone()[0]
    conn.close()
    print(f"{changes:,} changes; load average {os.getloadavg()[0]:.1f}")
    bad = False
    with running_server(db, settings=readme_settings(), log_dir=db.parent) as server:
        server.get("/-/versions.json")
        for query in ("?sort=change", f"?model={model}", f"?sort=change&model={model}"):
            before = rss_kib(server.pid, "VmRSS")
            done = threading.Event()
            result = []

            def page(query=query, result=result, done=done):
                t = time.perf_counter()
                response = server.get(f"/-/glyph/imports/{a}/diff/{b}{query}", timeout=600)
                result.append((time.perf_counter() - t, response.status))
                done.set()

            thread = threading.Thread(target=page)
            thread.start()
            waits = []
            while not done.is_set():
                t = time.perf_counter()
                server.get("/-/versions.json", timeout=600)
                waits.append(time.perf_counter() - t)
            thread.join()
            seconds, status = result[0]
            bad = bad or status != 200
            print(
                f"diff page {query}: {status} in {seconds:.1f} s; /-/versions.json x{len(waits)} meanwhile: "
                f"p50 {statistics.median(waits) * 1000:.0f} ms, max {max(waits) * 1000:.0f} ms; "
                f"RSS {before / 1024:.0f} MB before, peak {rss_kib(server.pid, 'VmHWM') / 1024:.0f} MB"
            )
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows per import (default 300,000)")
    parser.add_argument("--diffs", type=int, default=3, help="diffs at once (default 3)")
    parser.add_argument("--read-threads", type=int, default=1, help="the plugin's read_threads (default 1)")
    parser.add_argument("--time-limit-ms", type=int, default=30_000, help="read_time_limit_ms (default 30000)")
    parser.add_argument("--arranged", action="store_true", help="time the diff page's ?sort=change and ?model=")
    parser.add_argument("--db", type=Path, help="with --arranged: the database to build, or to reuse if it exists")
    args = parser.parse_args(argv)
    if args.arranged:
        if args.db is not None:
            return arranged(args.db, args.rows)
        with tempfile.TemporaryDirectory(prefix="glyph-diff-arranged-") as tmp:
            return arranged(Path(tmp) / "glyph.db", args.rows)

    with tempfile.TemporaryDirectory(prefix="glyph-diff-readers-") as tmp:
        directory = Path(tmp)
        path = directory / "glyph.db"
        started = time.perf_counter()
        a, b = build(path, directory, args.rows)
        print(f"built 2 imports of {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
        config = {"read_threads": args.read_threads, "read_time_limit_ms": args.time_limit_ms}
        with running_server(path, plugin_config=config, settings=readme_settings(), log_dir=directory) as server:
            for page in PAGES:  # warm the caches the way a visitor would have
                server.get(page)
            alone = []
            for _ in range(5):
                for page in PAGES:
                    t = time.perf_counter()
                    server.get(page)
                    alone.append(time.perf_counter() - t)
            diffs = []
            diff_done = threading.Event()

            def diff():
                t = time.perf_counter()
                response = server.get(f"/api/imports/{a}/diff/{b}?limit=100", timeout=600)
                diffs.append((time.perf_counter() - t, response.status))

            threads = [threading.Thread(target=diff) for _ in range(args.diffs)]
            for thread in threads:
                thread.start()
            waiter = threading.Thread(target=lambda: ([t.join() for t in threads], diff_done.set()))
            waiter.start()
            during, failures = [], []
            time.sleep(0.2)  # let the diffs start
            while not diff_done.is_set():
                for page in PAGES:
                    t = time.perf_counter()
                    response = server.get(page, timeout=120)
                    during.append(time.perf_counter() - t)
                    if response.status != 200:
                        failures.append(f"{page}: {response.status}")
            waiter.join()
    print(
        f"read_threads {args.read_threads}, read_time_limit_ms {args.time_limit_ms},"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    print(f"table pages alone: p50 {statistics.median(alone) * 1000:.0f} ms, max {max(alone) * 1000:.0f} ms")
    for seconds, status in sorted(diffs):
        print(f"diff of 2 x {args.rows:,} rows: {seconds:.1f} s, status {status}")
    if during:
        print(
            f"table pages during the diffs: {len(during)} requests, p50 {statistics.median(during) * 1000:.0f} ms, "
            f"max {max(during) * 1000:.0f} ms, failures {len(failures)}"
        )
    bad = failures or not during or max(during) >= TARGET_SECONDS
    print("FAIL" if bad else f"OK: every table page under {TARGET_SECONDS:.0f} s while the diffs ran")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
