"""Crash safety at full size: SIGKILL a real server importing a 1,000,000-row file, and glyph-migrate
migrating a 1,000,000-row legacy database, at random points; check what is left after each kill.

    python benchmarks/crash.py                       # 1M-row import, 5 kills; 1M-row migration, 5 kills each way
    python benchmarks/crash.py --rows 200000 --migrate-rows 200000 --points 3

The checks are those of tests/test_crash.py (which runs the same functions small, in CI): after every kill
and restart PRAGMA integrity_check is ok, earlier batches are identical (row count and content checksum),
nothing of the interrupted batch is stored (or, killed after its commit, all of it), no batch record is
left complete that did not complete, no upload temp file is left, and the next import works; a killed
migration leaves the database at one whole version with every row intact, and the next run finishes.
Any failed check stops the run with an AssertionError.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_crash import import_crash_runs, migration_crash_runs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the file whose import is killed")
    parser.add_argument("--points", type=int, default=5, help="kills per run (import: upload, insert, commit)")
    parser.add_argument("--migrate-rows", type=int, default=1_000_000, help="rows in the legacy database")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-migrate", action="store_true")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--work-dir", help="keep files here (default: a temp dir, removed afterwards)")
    args = parser.parse_args()

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="glyph-crash-"))
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; work dir {work}")
    started = time.monotonic()
    try:
        if not args.skip_import:
            upload_points = max(1, args.points * 2 // 5)
            report = import_crash_runs(
                work / "import",
                rows=args.rows,
                upload_points=upload_points,
                insert_points=args.points - upload_points,
                seed=args.seed,
                log=print,
            )
            kills = report["kills"]
            print(
                f"import: {sum(k.killed for k in kills)} kills survived of {len(kills)} aimed "
                f"({', '.join(f'{k.phase} {k.seconds:.1f}s {k.outcome}' for k in kills)}); "
                f"{report['batches']} batches intact at the end"
            )
        if not args.skip_migrate:
            kills, up, down = migration_crash_runs(
                work / "migrate", rows=args.migrate_rows, points=args.points, seed=args.seed, log=print
            )
            versions = {}
            for k in kills:
                versions.setdefault(k.direction, []).append(k.version_after)
            print(
                f"migrate: {sum(k.killed for k in kills)} kills survived ({len(kills)} aimed); "
                f"versions after the kills: up {versions.get('up')}, down {versions.get('down')}"
            )
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"total {time.monotonic() - started:.0f}s; all checks passed")


if __name__ == "__main__":
    main()
