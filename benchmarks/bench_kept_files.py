"""What keeping each import's original file costs: the same CSV imported with and without its kept original.

For each size (default 1,000,000 rows, written by ``datasette_glyph.engine.sample`` as ``datasette glyph-sample`` writes
them), into a freshly migrated database each time, each import in its own process:

  engine     ``importer.import_csv`` keeping nothing (``datasette glyph-import --no-keep-file``)
  kept       the same, keeping the original compressed in the store's files database, as ``datasette glyph-import``
             does

The two run ``--repeat`` times, alternately, so that a change in the machine's load falls on both; the best of
each is compared. Prints seconds, CPU seconds and peak RSS of every run, the kept file's size, and checks that
keeping costs under 10% of the import's time.

    python benchmarks/bench_kept_files.py
    python benchmarks/bench_kept_files.py --rows 100000 --repeat 3
    python benchmarks/bench_kept_files.py --work-dir /tmp/bench --compress-level 6   # reuses the CSV files there
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from datasette_glyph.engine import importer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEEP_COST_LIMIT = 0.10  # keeping the original may cost at most 10% of the import


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(mode: str, path: str, db: str, level) -> None:
    """One import in this process; prints seconds, CPU seconds, rows, peak RSS and the kept file's size."""
    sys.path.insert(0, ROOT)
    from datasette_glyph.engine import files
    from datasette_glyph.engine.sqlite import connect

    if level is not None:
        files.COMPRESS_LEVEL = level
    conn = connect(db)
    original = files.Original(files.open_store(conn, db), files.CSV_TYPE) if mode == "kept" else None
    cpu, started = time.process_time(), time.perf_counter()
    rows = importer.import_csv(conn, path, original=original).record_count
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    stored = conn.execute("SELECT stored_bytes FROM import_files").fetchone() if mode == "kept" else None
    conn.close()
    print(
        json.dumps(
            {"seconds": seconds, "cpu": cpu, "rows": rows, "peak_rss_mb": peak_rss_mb(), "stored": stored and stored[0]}
        )
    )


def fresh_database(directory: str) -> str:
    sys.path.insert(0, ROOT)
    from datasette_glyph.engine import migrator
    from datasette_glyph.engine.sqlite import connect

    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    path = os.path.join(directory, "glyph.db")
    conn = connect(path)
    migrator.migrate(conn)
    conn.close()
    return path


def make_csv(rows: int, seed: int, work: str) -> str:
    sys.path.insert(0, ROOT)
    from datasette_glyph.engine.sample import write_market

    path = os.path.join(work, f"scored_{rows}_seed{seed}.csv")
    if not os.path.exists(path):
        write_market(path, rows, seed)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="rows per file (repeatable; default 1000000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, alternately (the best counts)")
    parser.add_argument("--compress-level", type=int, help="zlib level for the kept original (default: the store's)")
    parser.add_argument("--work-dir", help="where CSV files and databases go (default: a temporary folder, removed)")
    parser.add_argument("--child", choices=["engine", "kept"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.csv, args.db, args.compress_level)
        return 0
    work = args.work_dir or tempfile.mkdtemp(prefix="glyph-bench-kept-")
    os.makedirs(work, exist_ok=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    checks = []
    try:
        for rows in args.rows or [1_000_000]:
            path = make_csv(rows, args.seed, work)
            print(f"\n{rows:,} rows, {os.path.getsize(path) / 2**20:.1f} MiB: {path}")
            best = {}
            for mode in ["engine", "kept"] * max(1, args.repeat):
                db = fresh_database(os.path.join(work, f"kept_bench_{mode}_{rows}"))
                level = ["--compress-level", str(args.compress_level)] if args.compress_level is not None else []
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--child", mode, "--csv", path, "--db", db, *level],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                result = json.loads(out.stdout)
                if result["rows"] != rows:
                    raise RuntimeError(f"{mode} imported {result['rows']} rows, expected {rows}")
                extra = ""
                if result["stored"]:
                    size = result["stored"]
                    extra = f"  kept file {size / 2**20:.1f} MiB ({size / os.path.getsize(path):.1%} of the CSV)"
                print(
                    f"  {mode:<6} {result['seconds']:7.2f} s  {result['cpu']:7.2f} s CPU  "
                    f"peak RSS {result['peak_rss_mb']:6.1f} MB{extra}"
                )
                if mode not in best or result["seconds"] < best[mode]["seconds"]:
                    best[mode] = result
                shutil.rmtree(os.path.dirname(db), ignore_errors=True)
            cost = best["kept"]["seconds"] / best["engine"]["seconds"] - 1
            checks.append(
                (
                    f"keeping the original costs < {KEEP_COST_LIMIT:.0%} at {rows:,} rows: {cost:+.1%}",
                    cost < KEEP_COST_LIMIT,
                )
            )
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for label, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
