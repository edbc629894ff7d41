"""Time what people open most, on a million rows in 100 imports, served exactly as the README says.

Builds (or reuses, with ``--work-dir``) the database the way ``benchmarks/bench_api.py`` does: ``--rows`` rows in
``--imports`` imports made by the engine from ``datasette_glyph.engine.sample``
files. Starts ``datasette`` with the serve
command of the README's quick start (its options and ``metadata.yml``, with this database) and asks each query
``--requests`` times over one keep-alive connection, cycling through the imports where a query names one.
Prints p50 / p95 / max in milliseconds and checks the targets; the HTML table page must also report no facet
timed out. ``--compare-default`` adds the same queries against ``datasette glyph.db -m metadata.yml`` with no
settings, to show what the README's settings buy.

    python benchmarks/bench_queries.py
    python benchmarks/bench_queries.py --work-dir /tmp/bench-queries --compare-default
    python benchmarks/bench_queries.py --rows 100000 --imports 10
    python benchmarks/bench_queries.py --work-dir /tmp/bench-queries --only model=
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_api import build, timed  # noqa: E402

from datasette_glyph.engine.sqlite import connect
from tests.server import readme_serve_options, start_server  # noqa: E402

# (label, path template, p50 target in ms or None); {import_id} cycles through the imports
QUERIES = [
    ("/api/listings?import_id= (100 rows)", "/api/listings?import_id={import_id}", 20),
    ("table JSON ?import_id=&_size=100", "/glyph/scored_listings.json?import_id={import_id}&_size=100", 50),
    ("/api/imports", "/api/imports", 50),
    # model= as people type it: resolved against the models table, then read through the canonical_model index
    ("/api/listings?model=rtx 4090 (contains)", "/api/listings?model=rtx%204090", 20),
    ("/api/listings?model=h100 pcie (contains)", "/api/listings?model=h100%20pcie", 20),
    ("/api/listings?model=A100 40GB (contains, 2 models)", "/api/listings?model=A100%2040GB", 20),
    ("/api/listings?model=H1OO_PCIE_80GB (fuzzy)", "/api/listings?model=H1OO_PCIE_80GB", 20),
    ("/api/listings?model=RXT 4090 (fuzzy)", "/api/listings?model=RXT%204090", 20),
    ("/api/listings?model=zzzz (no model)", "/api/listings?model=zzzz", 20),
    ("/api/models?q=H1OO_PCIE_80GB", "/api/models?q=H1OO_PCIE_80GB", 20),
    ("batch page /-/glyph/imports/<id>", "/-/glyph/imports/{import_id}", None),
    ("batch list /-/glyph/imports", "/-/glyph/imports", None),
    ("table HTML with facets", "/glyph/scored_listings", 1000),
    ("table HTML ?import_id= with facets", "/glyph/scored_listings?import_id={import_id}", 1000),
]
HTML_PAGES = {"table HTML with facets", "table HTML ?import_id= with facets"}
TIMED_OUT = re.compile(r'<p class="facets-timed-out">These facets timed out: ([^<]*)</p>')


def measure(db_path: Path, serve_args: list, import_ids: list, requests: int, log_dir: Path, only=None) -> dict:
    results = {}
    server = start_server(db_path, extra_args=serve_args, log_dir=log_dir)
    try:
        conn = server.connection()
        for label, template, target in QUERIES:
            if only and only not in label:
                continue
            timings, timed_out = [], set()
            for warm in range(2):
                timed(conn, template.format(import_id=quote(import_ids[-1 - warm])))
            for n in range(requests):
                elapsed, body = timed(conn, template.format(import_id=quote(import_ids[n % len(import_ids)])))
                timings.append(elapsed)
                if label in HTML_PAGES:
                    timed_out.update(m.group(1) for m in TIMED_OUT.finditer(body.decode("utf-8", "replace")))
            timings.sort()
            results[label] = (statistics.median(timings), timings[max(0, int(len(timings) * 0.95) - 1)], timings[-1])
            results[label] += (target, sorted(timed_out))
        conn.close()
    finally:
        server.stop()
    return results


def report(title: str, results: dict) -> bool:
    print(title)
    print("| query | p50 ms | p95 ms | max ms | target (p50) | facets timed out |\n|---|---:|---:|---:|---|---|")
    ok = True
    for label, (p50, p95, worst, target, timed_out) in results.items():
        met = target is None or p50 < target
        met = met and not timed_out
        ok = ok and met
        target_text = "-" if target is None else f"< {target} ms: {'met' if met else 'MISSED'}"
        print(f"| {label} | {p50:.1f} | {p95:.1f} | {worst:.1f} | {target_text} | {', '.join(timed_out) or 'none'} |")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--imports", type=int, default=100)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--work-dir", type=Path, help="keep the database here and reuse it on the next run")
    parser.add_argument("--compare-default", action="store_true", help="also measure with no --setting options")
    parser.add_argument("--serve-args", help="try these serve options instead of the README's, e.g. '-m metadata.yml'")
    parser.add_argument("--only", help="only the queries whose label contains this text, e.g. 'model='")
    args = parser.parse_args()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="glyph-bench-queries-"))
    db_dir = work_dir / f"{args.rows}_rows_{args.imports}_imports"
    db_dir.mkdir(parents=True, exist_ok=True)
    db_path = db_dir / "glyph.db"  # the database's name in URLs is "glyph", as metadata.yml expects
    if not db_path.exists():
        build(db_path, db_dir, args.rows, args.imports)
    conn = connect(db_path)
    import_ids = [r[0] for r in conn.execute("SELECT import_id FROM import_batches ORDER BY id")]
    total = conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone()[0]
    conn.close()
    serve_args = readme_serve_options()
    if args.serve_args:
        serve_args = [
            str(ROOT / a) if a.endswith((".yml", ".yaml", ".json")) else a for a in shlex.split(args.serve_args)
        ]
    import datasette

    load = os.getloadavg()
    print(
        f"datasette {datasette.__version__}; {total:,} rows in {len(import_ids)} imports; "
        f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    ok = report(
        ("tried" if args.serve_args else "served as the README says") + ": datasette glyph.db"
        f" {' '.join(shlex.quote(a) for a in serve_args)}",
        measure(db_path, serve_args, import_ids, args.requests, work_dir, args.only),
    )
    if args.compare_default:
        plain = [a for a in serve_args if a.endswith((".yml", ".yaml", ".json"))]
        report(
            "\nfor comparison, with no settings: datasette glyph.db -m metadata.yml",
            measure(db_path, ["-m"] + plain, import_ids, args.requests, work_dir, args.only),
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}; targets {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
