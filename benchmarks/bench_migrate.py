"""Time the lineage migration up and down on a large legacy database, and the memory it takes.

Builds a database as the old store's pre-lineage release left it (its own DDL, from tests/legacy_store.py;
no bookkeeping table) holding ROWS ``scored_listings`` rows: the oldest 2% name no import, the rest are
spread over 100 batches of which two are missing from ``import_batches`` (their records were deleted).
Then it runs ``datasette glyph-migrate`` up to the newest version, ``datasette glyph-deltas`` (which compares
the adopted imports, so that going down has their deltas to keep aside), back to 0001 and up again, each in a
fresh child process, and prints the wall time of each run (and the CPU time the child used, which other
work on the machine disturbs less), the time of each migration step, the child's peak RSS, and whether
going down gave back exactly the original file's schema and rows.

    python benchmarks/bench_migrate.py --rows 1000000
    python benchmarks/bench_migrate.py --rows 100000 --keep /tmp/legacy.db

This is a benchmark, not a test: it takes tens of seconds at a million rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

BATCHES = 100
UNRECORDED_BATCHES = 2  # batches named by rows but missing from import_batches
LEGACY_SHARE = 0.02  # the oldest rows, from before imports were tracked

# canonical_model, vram_gb, mig_support, nvlink, tdp_watts, generation, cuda_cores, slot_width,
# pcie_generation, form_factor, base price in USD
MODELS = [
    ("H100_PCIE_80GB", 80, 7, 1, 350, "Hopper", 14592, 2, 5, "PCIe", 25000),
    ("H100_SXM5_80GB", 80, 7, 1, 700, "Hopper", 16896, None, 5, "SXM5", 30000),
    ("H200_SXM_141GB", 141, 7, 1, 700, "Hopper", 16896, None, 5, "SXM5", 35000),
    ("A100_40GB_PCIE", 40, 7, 1, 250, "Ampere", 6912, 2, 4, "PCIe", 7000),
    ("A100_80GB_PCIE", 80, 7, 1, 300, "Ampere", 6912, 2, 4, "PCIe", 12000),
    ("A100_80GB_SXM4", 80, 7, 1, 400, "Ampere", 6912, None, 4, "SXM4", 14000),
    ("A30", 24, 4, 1, 165, "Ampere", 3584, 2, 4, "PCIe", 4500),
    ("A40", 48, 0, 1, 300, "Ampere", 10752, 2, 4, "PCIe", 5000),
    ("A10", 24, 0, 0, 150, "Ampere", 9216, 1, 4, "PCIe", 2500),
    ("L40S", 48, 0, 0, 350, "Ada Lovelace", 18176, 2, 4, "PCIe", 8500),
    ("L4", 24, 0, 0, 72, "Ada Lovelace", 7424, 1, 4, "PCIe", 2400),
    ("RTX_6000_ADA", 48, 0, 0, 300, "Ada Lovelace", 18176, 2, 4, "PCIe", 6800),
    ("RTX_A6000", 48, 0, 1, 300, "Ampere", 10752, 2, 4, "PCIe", 4200),
    ("RTX_A5000", 24, 0, 1, 230, "Ampere", 8192, 2, 4, "PCIe", 1900),
    ("RTX_5090", 32, 0, 0, 575, "Blackwell", 21760, 2, 5, "PCIe", 2600),
    ("RTX_4090", 24, 0, 0, 450, "Ada Lovelace", 16384, 3, 4, "PCIe", 1800),
    ("RTX_3090", 24, 0, 1, 350, "Ampere", 10496, 3, 4, "PCIe", 800),
    ("T4", 16, 0, 0, 70, "Turing", 2560, 1, 3, "PCIe", 700),
    ("V100_32GB", 32, 0, 0, 250, "Volta", 5120, 2, 3, "PCIe", 900),
    ("MI300X", 192, 0, 0, 750, "CDNA3", 19456, None, 5, "OAM", 15000),
]

# One INSERT ... SELECT over a recursive counter: every value is derived from the row number n, so the
# same --rows gives the same database. Rows arrive in batches, oldest first, as imports append them.
FILL_SQL = """
WITH RECURSIVE counter(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM counter WHERE n < :rows)
INSERT INTO scored_listings (canonical_model, price, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores,
    slot_width, pcie_generation, form_factor, notes, warnings, score, condition, quantity, min_order_qty, seller,
    region, source_url, source_type, seen_at, created_at, updated_at, import_id)
SELECT spec.model, ROUND(spec.base_price * (0.7 + ((n * 7919) % 600) / 1000.0), 2), spec.vram_gb, spec.tdp_watts,
    spec.mig_support, spec.nvlink, spec.generation, spec.cuda_cores, spec.slot_width, spec.pcie_generation,
    spec.form_factor, CASE WHEN n % 50 = 0 THEN 'ships from warehouse ' || (n % 7) END,
    CASE WHEN n % 97 = 0 THEN 'price below market' END, ROUND(((n * 104729) % 10000) / 10000.0, 4),
    CASE n % 3 WHEN 0 THEN 'new' WHEN 1 THEN 'used' ELSE 'refurbished' END, 1 + n % 24, 1 + (n % 5 = 0),
    'Seller ' || (n % 200), CASE n % 10 WHEN 0 THEN 'EU' WHEN 1 THEN 'EU' WHEN 2 THEN 'APAC' WHEN 3 THEN 'UK'
        WHEN 4 THEN 'CA' WHEN 5 THEN 'MEA' ELSE 'US' END,
    'https://example.com/listing/' || n, CASE n % 3 WHEN 0 THEN 'marketplace' WHEN 1 THEN 'retailer' ELSE 'broker' END,
    strftime('%Y-%m-%dT%H:%M:%SZ', 1735689600 + n * 20, 'unixepoch'),
    datetime(1735689600 + n * 20, 'unixepoch'), datetime(1735689600 + n * 20, 'unixepoch'),
    CASE WHEN n <= :legacy_rows THEN NULL
        ELSE printf('00000000-0000-4000-8000-%012d', 1 + (n - :legacy_rows - 1) * :batches / (:rows - :legacy_rows)) END
FROM counter JOIN bench_spec AS spec ON spec.k = (n * 31) % :models
"""


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def build_legacy(path: str, rows: int) -> None:
    """Write the old store's schema and ``rows`` scored listings to a new file at ``path``."""
    from datasette_glyph.engine import migrator
    from datasette_glyph.engine.sqlite import connect, transaction
    from tests.legacy_store import PRE_LINEAGE

    conn = connect(path)
    statements = migrator.split_statements(PRE_LINEAGE)
    # Indexes are built after the rows arrive: one sort each instead of a million random inserts.
    indexes = [s for s in statements if s.startswith("CREATE INDEX")]
    legacy_rows = int(rows * LEGACY_SHARE)
    with transaction(conn):
        for statement in statements:
            if statement not in indexes:
                conn.execute(statement)
        conn.execute(
            "CREATE TEMP TABLE bench_spec (k INTEGER PRIMARY KEY, model, vram_gb, mig_support, nvlink, tdp_watts, "
            "generation, cuda_cores, slot_width, pcie_generation, form_factor, base_price)"
        )
        conn.executemany(
            "INSERT INTO bench_spec VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(k, *m) for k, m in enumerate(MODELS)],
        )
        conn.execute(
            "INSERT INTO models (model, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores, slot_width, "
            "pcie_generation, created_at, updated_at) SELECT model, vram_gb, tdp_watts, mig_support, nvlink, "
            "generation, cuda_cores, slot_width, pcie_generation, '2025-01-01 00:00:00', '2025-01-01 00:00:00' "
            "FROM bench_spec ORDER BY model"
        )
        conn.executemany(
            "INSERT INTO import_batches (import_id, imported_at, source, record_count, description) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (f"00000000-0000-4000-8000-{b:012d}", f"2025-02-{1 + b % 28:02d} 00:00:00", "bench", 0, f"batch {b}")
                for b in range(1, BATCHES + 1 - UNRECORDED_BATCHES)
            ],
        )
        conn.execute(FILL_SQL, {"rows": rows, "legacy_rows": legacy_rows, "batches": BATCHES, "models": len(MODELS)})
        conn.execute(
            "UPDATE import_batches SET record_count = "
            "(SELECT COUNT(*) FROM scored_listings s WHERE s.import_id = import_batches.import_id)"
        )
        for statement in indexes:
            conn.execute(statement)
        conn.execute("DROP TABLE bench_spec")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def fingerprint(path: str) -> str:
    """SHA-256 over sqlite_master (glyph's bookkeeping aside) and every table's rows in rowid order."""
    import hashlib
    import sqlite3

    digest = hashlib.sha256()
    conn = sqlite3.connect(path)
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'glyph\\_%' ESCAPE '\\' "
        "AND name NOT LIKE 'sqlite_autoindex_glyph\\_%' ESCAPE '\\' ORDER BY type, name"
    ).fetchall()
    digest.update(repr(objects).encode())
    for kind, name, _, _ in objects:
        if kind == "table":
            order = "name" if name == "sqlite_sequence" else "rowid"
            for row in conn.execute(f'SELECT rowid, * FROM "{name}" ORDER BY {order}'):
                digest.update(repr(row[1:] if name == "sqlite_sequence" else row).encode())
    conn.close()
    return digest.hexdigest()


def run_child(path: str, args: list, command: str = "glyph_migrate") -> dict:
    """Run glyph-migrate (or another glyph command) in a fresh process; its wall time, step times and peak RSS
    (KiB)."""
    code = (
        "import json, resource, sys, time\n"
        f"from datasette_glyph.cli import {command}\n"
        "started = time.perf_counter()\n"
        "try:\n"
        f"    {command}.main(sys.argv[1:], standalone_mode=False)\n"
        "finally:\n"
        "    usage = resource.getrusage(resource.RUSAGE_SELF)\n"
        "    print(json.dumps({'seconds': time.perf_counter() - started, 'max_rss_kib': usage.ru_maxrss,\n"
        "        'cpu_seconds': usage.ru_utime + usage.ru_stime}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, path, *args], capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    figures["steps"] = [line for line in lines[:-1] if re.match(r"^(Applied|Rolled back) ", line)]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="scored_listings rows (default 1,000,000)")
    parser.add_argument("--keep", metavar="PATH", help="build the database here and keep it")
    options = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="bench_migrate_")
    path = options.keep or os.path.join(workdir, "legacy.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    started = time.perf_counter()
    build_legacy(path, options.rows)
    print(
        f"built legacy database: {options.rows:,} scored_listings rows, "
        f"{os.path.getsize(path) / 2**20:.0f} MiB in {time.perf_counter() - started:.1f}s"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    original = fingerprint(path)
    adopted = None
    runs = (
        ("up (0001 -> newest)", [], "glyph_migrate"),
        ("glyph-deltas (the adopted imports' deltas)", [], "glyph_deltas"),
        ("down (newest -> 0001)", ["--to", "0001"], "glyph_migrate"),
        ("up again", [], "glyph_migrate"),
    )
    for label, args, command in runs:
        figures = run_child(path, args, command)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"{label}: {figures['seconds']:.1f}s ({figures['cpu_seconds']:.1f}s CPU), "
            f"peak RSS {figures['max_rss_kib'] / 1024:.0f} MiB (load {load})"
        )
        for step in figures["steps"]:
            print(f"    {step}")
        if command == "glyph_deltas":
            with sqlite3.connect(path) as conn:
                kept = conn.execute("SELECT COUNT(*) FROM import_deltas").fetchone()[0]
            print(f"    {kept:,} import_deltas rows kept")
            adopted = fingerprint(path)  # what up again must give back
            continue
        now = fingerprint(path)
        if label.startswith("up ("):
            adopted = now
        elif label.startswith("down"):
            print(f"    down gave back the original schema and rows exactly: {'yes' if now == original else 'NO'}")
        else:
            print(f"    up again gave the first up's schema and rows exactly: {'yes' if now == adopted else 'NO'}")
    if not options.keep:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        os.rmdir(workdir)


if __name__ == "__main__":
    main()
