"""Time the read API on a large database: ``/api/listings`` filters and Datasette's own JSON, served for real.

Builds (or reuses, with ``--work-dir``) a database of ``--rows`` rows in ``--imports`` imports of equal size,
each a file written by ``datasette_glyph.engine.sample`` and imported by the engine as ``datasette glyph-import`` does;
starts ``datasette`` on it and asks each query ``--requests`` times over one keep-alive connection, cycling
through the imports where a query names one. Prints p50 / p95 / max in milliseconds and the rows returned,
then checks the target: ``/api/listings?import_id=...`` p50 under 20 ms.

    python benchmarks/bench_api.py                       # 1,000,000 rows in 100 imports
    python benchmarks/bench_api.py --rows 100000 --imports 10 --work-dir /tmp/bench-api

This is a benchmark, not a test: building the million-row database takes about a minute.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datasette_glyph.engine import migrator
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.sample import write_market
from datasette_glyph.engine.sqlite import connect
from tests.server import running_server  # noqa: E402

TARGET_P50_MS = 20.0

# (label, path template); {import_id} cycles through the imports
QUERIES = [
    ("import_id", "/api/listings?import_id={import_id}"),
    ("import_id, offset 5000", "/api/listings?import_id={import_id}&offset=5000"),
    ("import_id + model", "/api/listings?import_id={import_id}&model=H100"),
    ("no filter", "/api/listings"),
    ("model exact", "/api/listings?model=RTX_4090"),
    ("model partial (3 models)", "/api/listings?model=h100"),
    ("model partial, limit 1000", "/api/listings?model=a100&limit=1000"),
    ("price range", "/api/listings?min_price=20000&max_price=21000"),
    ("price range, no match", "/api/listings?min_price=999999"),
    ("offset 100000", "/api/listings?offset=100000"),
    ("datasette .json import_id", "/glyph/scored_listings.json?import_id={import_id}&_shape=array&_size=100"),
    (
        "datasette .json import_id _nosuggest",
        "/glyph/scored_listings.json?import_id={import_id}&_shape=array&_size=100&_nosuggest=1",
    ),
]


def build(db_path: Path, work_dir: Path, rows: int, imports: int) -> None:
    per_import = rows // imports
    conn = connect(db_path)
    migrator.migrate(conn)
    started = time.perf_counter()
    for i in range(imports):
        csv_path = work_dir / f"part_{i}.csv"
        if not csv_path.exists():
            write_market(csv_path, per_import, seed=i)
        import_csv(conn, csv_path, filename=csv_path.name, source_name=f"source-{i % 5}")
        csv_path.unlink()
    conn.close()
    print(f"built {rows:,} rows in {imports} imports in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def timed(conn: http.client.HTTPConnection, path: str):
    """(milliseconds, body) of one GET over a kept-alive connection; anything but 200 stops the run."""
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {body[:300]!r}")
    return elapsed, body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--imports", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--work-dir", type=Path, help="keep the database here and reuse it on the next run")
    args = parser.parse_args()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="glyph-bench-api-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    db_dir = work_dir / f"{args.rows}_rows_{args.imports}_imports"
    db_dir.mkdir(exist_ok=True)
    db_path = db_dir / "glyph.db"  # the database's name in URLs is "glyph"
    if not db_path.exists():
        build(db_path, db_dir, args.rows, args.imports)
    conn = connect(db_path)
    import_ids = [r[0] for r in conn.execute("SELECT import_id FROM import_batches ORDER BY id")]
    total = conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone()[0]
    conn.close()
    print(f"load average before: {os.getloadavg()[0]:.2f}; {total:,} rows in {len(import_ids)} imports")
    results = {}
    with running_server(db_path, plugin_config={}) as server:
        http_conn = server.connection()
        for label, template in QUERIES:
            timings, counts = [], set()
            timed(http_conn, template.format(import_id=quote(import_ids[0])))  # warm the page cache
            for n in range(args.requests):
                path = template.format(import_id=quote(import_ids[n % len(import_ids)]))
                elapsed, body = timed(http_conn, path)
                count = len(json.loads(body))
                timings.append(elapsed)
                counts.add(count)
            timings.sort()
            results[label] = (
                statistics.median(timings),
                timings[int(len(timings) * 0.95) - 1],
                timings[-1],
                sorted(counts),
            )
        http_conn.close()
    print(f"{'query':40} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  rows")
    for label, (p50, p95, worst, counts) in results.items():
        print(f"{label:40} {p50:8.2f} {p95:8.2f} {worst:8.2f}  {','.join(map(str, counts))}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    p50 = results["import_id"][0]
    ok = p50 < TARGET_P50_MS
    print(f"target: /api/listings?import_id= p50 {p50:.2f} ms < {TARGET_P50_MS} ms: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
