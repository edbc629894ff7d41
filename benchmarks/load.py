"""Load at full size: 8 clients import 50,000-row files 3 times each while 4 clients read /api/listings and
Datasette's JSON views, against a real server; print the read latency and every failure.

    python benchmarks/load.py
    python benchmarks/load.py --importers 4 --rounds 1 --rows 5000 --readers 2   # what CI runs

Passes (exit 0) only with zero failed requests, zero "database is locked", distinct import ids and every
batch holding exactly its file's rows numbered 1..n in file order (tests/test_load.py, the same function).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_load import load_run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--importers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--setting", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--work-dir")
    args = parser.parse_args()

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="glyph-load-"))
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    try:
        report = load_run(
            work,
            importers=args.importers,
            rounds=args.rounds,
            rows=args.rows,
            readers=args.readers,
            settings=dict(args.setting) if args.setting else None,  # default: the README's settings
            log=print,
        )
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print("read latency by path (ms): requests, p50, p99")
    for path, values in sorted(report.reads.items()):
        values = sorted(values)
        p50 = values[len(values) // 2] * 1000
        p99 = values[min(len(values) - 1, int(0.99 * (len(values) - 1) + 0.5))] * 1000
        print(f"  {path}: {len(values)}, {p50:.1f}, {p99:.1f}")
    ids = [r["import_id"] for r in report.imports]
    ok = (
        not report.failures
        and report.locked == 0
        and len(set(ids)) == len(ids) == args.importers * args.rounds
        and not report.batch_problems
    )
    for failure in report.failures[:20]:
        print("FAILED:", failure)
    for problem in report.batch_problems[:20]:
        print("BAD BATCH:", problem)
    print(
        f"imports {len(ids)} ({len(set(ids))} distinct ids), reads {len(report.read_latencies)}, "
        f"failures {len(report.failures)}, locked {report.locked}, bad batches {len(report.batch_problems)}: "
        + ("OK" if ok else "NOT OK")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
