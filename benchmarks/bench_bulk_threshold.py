"""Where the bulk path starts to pay: an import into a table of T rows, with its indexes kept up to date row by row
and with them dropped and built again, for batches of several sizes relative to T.

For each table size (``--table-rows``, default 1,000,000 and 5,000,000) a store of that many rows is built once by
the engine; for each ratio (``--ratios``, default 0.05 0.1 0.25 0.5) a batch of ratio x T rows is imported into a
copy of it both ways, each in its own process. Prints wall and CPU seconds (user + system: on a busy machine the CPU
time is the steadier figure) for both, and which took less CPU; the crossing ratios are what
``importer.BULK_RATIOS`` holds (docs/benchmarks.md, "The bulk path").

    python benchmarks/bench_bulk_threshold.py
    python benchmarks/bench_bulk_threshold.py --table-rows 100000 --ratios 0.2 0.5 --work-dir /tmp/bulk
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from datasette_glyph.engine import batch, importer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(mode: str, csv_path: str, db: str) -> None:
    sys.path.insert(0, ROOT)
    from datasette_glyph.engine.sqlite import connect

    if mode == "row-by-row":
        batch.BULK_MIN_ROWS = 10**12
    else:
        batch.BULK_MIN_ROWS, batch.BULK_RATIOS = 0, ((1, 0.0), (2, 0.0))
    conn = connect(db)
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    # Each file is a source of its own: a batch is compared with no earlier import (no deltas kept), so that only
    # the writing is timed
    rows = importer.import_csv(conn, csv_path, source_name=os.path.basename(csv_path)).record_count
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = used.ru_utime - cpu.ru_utime + used.ru_stime - cpu.ru_stime
    print(json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": cpu_seconds, "rows": rows}))


def run(mode: str, csv_path: str, db: str) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", mode, "--csv", csv_path, "--db", db],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def market_file(rows: int, seed: int, work: str) -> str:
    sys.path.insert(0, ROOT)
    from datasette_glyph.engine.sample import write_market

    path = os.path.join(work, f"market_{rows}_seed{seed}.csv")
    if not os.path.exists(path):  # written whole or not at all: an interrupted run leaves no short file to reuse
        write_market(path + ".part", rows, seed)
        os.replace(path + ".part", path)
    return path


def store(rows: int, work: str) -> str:
    sys.path.insert(0, ROOT)
    from datasette_glyph.engine import migrator
    from datasette_glyph.engine.sqlite import connect

    path = os.path.join(work, f"store_{rows}.db")
    if not os.path.exists(path):
        building = path + ".building"
        conn = connect(building)
        migrator.migrate(conn)
        conn.close()
        run("bulk", market_file(rows, 100, work), building)
        os.replace(building, path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table-rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5])
    parser.add_argument("--work-dir", help="keeps (and reuses) the files and stores there")
    parser.add_argument("--child", choices=["row-by-row", "bulk"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.csv, args.db)
        return 0
    work = args.work_dir or tempfile.mkdtemp(prefix="glyph-bench-bulk-")
    os.makedirs(work, exist_ok=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'table rows':>12} {'batch rows':>11} {'ratio':>6}  {'row by row (wall / CPU)':>24}"
        f"  {'bulk (wall / CPU)':>19}  less CPU"
    )
    try:
        for table_rows in args.table_rows:
            base = store(table_rows, work)
            for ratio in args.ratios:
                batch = max(1, int(table_rows * ratio))
                csv_path = market_file(batch, 7, work)
                took = {}
                for mode in ("row-by-row", "bulk"):
                    db = os.path.join(work, "copy.db")
                    shutil.copyfile(base, db)
                    took[mode] = run(mode, csv_path, db)
                    os.remove(db)
                cheaper = min(took, key=lambda mode: took[mode]["cpu_seconds"])
                row, bulk = took["row-by-row"], took["bulk"]
                print(
                    f"{table_rows:>12,} {batch:>11,} {ratio:>6.2f}"
                    f"  {row['seconds']:>13.2f}s / {row['cpu_seconds']:>6.2f}s"
                    f"  {bulk['seconds']:>8.2f}s / {bulk['cpu_seconds']:>6.2f}s  {cheaper}",
                    flush=True,
                )
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
