"""Datasette's own pages while large diffs run: do diffs leave the readers room?

Builds a database with two consecutive snapshots of one market (``tests/snapshots.py``) of ROWS rows each,
serves it with the README's settings, starts three diffs of the two imports at once (each from its own
client), and meanwhile asks for the ``scored_listings`` table page (HTML) and its JSON over and over. Prints
the latency of those pages while the diffs run, and how long each diff took (or that it was stopped by
``read_time_limit_ms``). Target: every table page under 1 s.

    python benchmarks/diff_readers.py                    # 300,000 rows per import
    python benchmarks/diff_readers.py --rows 50000 --read-threads 2 --time-limit-ms 60000

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows per import (default 300,000)")
    parser.add_argument("--diffs", type=int, default=3, help="diffs at once (default 3)")
    parser.add_argument("--read-threads", type=int, default=1, help="the plugin's read_threads (default 1)")
    parser.add_argument("--time-limit-ms", type=int, default=30_000, help="read_time_limit_ms (default 30000)")
    args = parser.parse_args(argv)

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
