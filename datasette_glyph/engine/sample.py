"""A deterministic GPU market: realistic scored listings CSV files, and consecutive snapshots of one market.

The tests, the benchmarks and the demo files in ``sample/`` all come from here, and so can anyone's:

    datasette glyph-sample market.csv --rows 1000                 # one snapshot of 1,000 listings
    datasette glyph-sample day.csv --rows 1000 --snapshots 3      # day-1.csv .. day-3.csv, a day apart
    datasette glyph-sample next.csv --after market.csv            # the snapshot after an existing file

A snapshot is a list of listings, each a dict keyed by the scored CSV's 23 columns. The first snapshot is made
from a seed; each next one keeps most listings (same ``source_url``, in the same order), changes the price of
some, removes some and adds new ones at the end, and says exactly which (``Changes``), so that a diff can be
checked against what was done rather than against what the diff itself reports.

Only ``random.Random(seed).random()`` is drawn from and no clock is read, so the same arguments give the same
bytes on every machine and Python version. Listings are drawn one after the other, so the first k listings
of a market are the same whatever its size.
"""

from __future__ import annotations

import bisect
import csv
import io
import random
import re
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from . import columns, importer, migrator
from .sqlite import connect

COLUMNS = list(columns.COLUMNS)  # every column, in the order of the specification

# canonical_model, product name, vram_gb, mig_support, nvlink, tdp_watts, generation, cuda_cores, slot_width
# (None for socketed SXM/OAM modules), pcie_generation, form_factor, price new in USD, share of listings
MODELS = [
    ("H100_PCIE_80GB", "NVIDIA H100 80GB PCIe", 80, 7, True, 350, "Hopper", 14592, 2, 5, "PCIe", 25000, 6),
    ("H100_SXM5_80GB", "NVIDIA H100 80GB SXM5", 80, 7, True, 700, "Hopper", 16896, None, 5, "SXM5", 30000, 4),
    ("H200_SXM_141GB", "NVIDIA H200 141GB SXM", 141, 7, True, 700, "Hopper", 16896, None, 5, "SXM5", 35000, 2),
    ("A100_40GB_PCIE", "NVIDIA A100 40GB PCIe", 40, 7, True, 250, "Ampere", 6912, 2, 4, "PCIe", 7000, 5),
    ("A100_80GB_PCIE", "NVIDIA A100 80GB PCIe", 80, 7, True, 300, "Ampere", 6912, 2, 4, "PCIe", 12000, 6),
    ("A100_80GB_SXM4", "NVIDIA A100 80GB SXM4", 80, 7, True, 400, "Ampere", 6912, None, 4, "SXM4", 14000, 3),
    ("A30", "NVIDIA A30 24GB", 24, 4, True, 165, "Ampere", 3584, 2, 4, "PCIe", 4500, 3),
    ("A40", "NVIDIA A40 48GB", 48, 0, True, 300, "Ampere", 10752, 2, 4, "PCIe", 5000, 3),
    ("A10", "NVIDIA A10 24GB", 24, 0, False, 150, "Ampere", 9216, 1, 4, "PCIe", 2500, 4),
    ("A2", "NVIDIA A2 16GB", 16, 0, False, 60, "Ampere", 1280, 1, 4, "PCIe", 1200, 2),
    ("L40S", "NVIDIA L40S 48GB", 48, 0, False, 350, "Ada Lovelace", 18176, 2, 4, "PCIe", 8500, 5),
    ("L4", "NVIDIA L4 24GB", 24, 0, False, 72, "Ada Lovelace", 7424, 1, 4, "PCIe", 2400, 5),
    ("RTX_6000_ADA", "NVIDIA RTX 6000 Ada 48GB", 48, 0, False, 300, "Ada Lovelace", 18176, 2, 4, "PCIe", 6800, 3),
    ("RTX_A6000", "NVIDIA RTX A6000 48GB", 48, 0, True, 300, "Ampere", 10752, 2, 4, "PCIe", 4200, 4),
    ("RTX_A5000", "NVIDIA RTX A5000 24GB", 24, 0, True, 230, "Ampere", 8192, 2, 4, "PCIe", 1900, 3),
    ("RTX_A4000", "NVIDIA RTX A4000 16GB", 16, 0, False, 140, "Ampere", 6144, 1, 4, "PCIe", 900, 4),
    ("RTX_5090", "NVIDIA GeForce RTX 5090 32GB", 32, 0, False, 575, "Blackwell", 21760, 2, 5, "PCIe", 2600, 4),
    ("RTX_4090", "NVIDIA GeForce RTX 4090 24GB", 24, 0, False, 450, "Ada Lovelace", 16384, 3, 4, "PCIe", 1800, 10),
    ("RTX_4080", "NVIDIA GeForce RTX 4080 16GB", 16, 0, False, 320, "Ada Lovelace", 9728, 3, 4, "PCIe", 1100, 5),
    ("RTX_3090", "NVIDIA GeForce RTX 3090 24GB", 24, 0, True, 350, "Ampere", 10496, 3, 4, "PCIe", 800, 8),
    ("T4", "NVIDIA Tesla T4 16GB", 16, 0, False, 70, "Turing", 2560, 1, 3, "PCIe", 700, 5),
    ("V100_32GB", "NVIDIA Tesla V100 32GB PCIe", 32, 0, False, 250, "Volta", 5120, 2, 3, "PCIe", 900, 3),
    ("MI300X", "AMD Instinct MI300X 192GB", 192, 0, False, 750, "CDNA3", 19456, None, 5, "OAM", 15000, 2),
    ("MI210", "AMD Instinct MI210 64GB", 64, 0, False, 300, "CDNA2", 6656, 2, 4, "PCIe", 4500, 1),
]
# condition, as a title says it, price factor against new, share of listings
CONDITIONS = [("new", "New", 1.0, 5), ("used", "Used", 0.7, 4), ("refurbished", "Refurbished", 0.82, 2)]
REGIONS = ["US", "US", "US", "EU", "EU", "APAC", "UK", "CA", "LATAM", "MEA"]
SOURCE_TYPES = ["marketplace", "marketplace", "retailer", "broker"]
# Seller names; some hold commas, double quotes or an apostrophe, so that CSV quoting is exercised.
SELLERS = [
    f"{first} {second}"
    for first in ("Apex", "Blue Ridge", "Cobalt", "Delta", "Falcon", "Granite", "Harbor", "Northwind", "Summit")
    for second in ("Compute", "Systems", "Hardware", "IT Surplus", "Servers LLC", "GPU Depot")
] + ["Smith, Lee & Co", 'The "GPU" Barn', 'Hardware "R" Us, Inc.', "O'Brien Surplus"]
NOTES = ["Includes original box and bracket", 'Tested, "like new"', "Bulk lot; pallet pricing available",
         "Pulled from a working server"]  # fmt: skip
WARNINGS = ["price_outlier", "title_mismatch", "seller_new", "stale_listing", "price_outlier;title_mismatch"]
URL_PREFIX = "https://example.com/listing/"
FIRST_DAY = date(2025, 5, 1)
# What a next snapshot does by default, as fractions of the listings: change price, go, come new.
CHANGED, REMOVED, ADDED = 0.1, 0.05, 0.05
PRICE_STEPS = [0.8, 0.9, 0.95, 1.05, 1.1, 1.25]

_MODEL_CUMULATIVE = []
for _model in MODELS:
    _MODEL_CUMULATIVE.append((_MODEL_CUMULATIVE[-1] if _MODEL_CUMULATIVE else 0) + _model[-1])
_CONDITION_CUMULATIVE = [5, 9, 11]


@dataclass
class Changes:
    """What ``next_snapshot`` did, by source_url: prices changed (url -> (old, new)), listings removed and added."""

    changed: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    removed: List[str] = field(default_factory=list)
    added: List[str] = field(default_factory=list)


def _pick(rnd, items):
    return items[int(rnd() * len(items))]


def _weighted(rnd, items, cumulative):
    return items[bisect.bisect_right(cumulative, rnd() * cumulative[-1])]


def _seen_at(day: date, rnd) -> str:
    seconds = int(rnd() * 86400)
    return f"{day.isoformat()}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"


def listing(number: int, rng: random.Random, day: date = FIRST_DAY, url_prefix: str = URL_PREFIX) -> dict:
    """One listing, seen on ``day``, whose ``source_url`` ends in ``number``."""
    rnd = rng.random
    model, name, vram, mig, nvlink, tdp, generation, cores, slot, pcie, form, base, _ = _weighted(
        rnd, MODELS, _MODEL_CUMULATIVE
    )
    condition, label, factor, _ = _weighted(rnd, CONDITIONS, _CONDITION_CUMULATIVE)
    noise = (rnd() + rnd() - 1.0) * 0.15  # triangular, +-15% around the condition's price
    score = 0.5 - 2.5 * noise + (rnd() - 0.5) * 0.2  # cheaper than usual scores higher
    extra = rnd()
    title = (
        f"{name} - {label}" if extra < 0.9 else f'{name} "OEM" - {label}' if extra < 0.95 else f"{name}, bulk - {label}"
    )
    return {
        "canonical_model": model,
        "vram_gb": vram,
        "mig_support": mig,
        "nvlink": nvlink,
        "tdp_watts": tdp,
        "price": round(base * factor * (1.0 + noise), 2),
        "score": round(min(1.0, max(0.0, score)), 4),
        "condition": condition,
        "quantity": 1 + int(rnd() ** 2 * 50),  # mostly small lots
        "min_order_qty": _pick(rnd, (1, 1, 1, 1, 1, 1, 2, 5, 10)),
        "seller": _pick(rnd, SELLERS),
        "region": _pick(rnd, REGIONS),
        "source_url": f"{url_prefix}{number}",
        "source_type": _pick(rnd, SOURCE_TYPES),
        "seen_at": _seen_at(day, rnd),
        "generation": generation,
        "cuda_cores": cores,
        "slot_width": slot,
        "pcie_generation": pcie,
        "form_factor": form,
        "notes": _pick(rnd, NOTES) if extra < 0.08 else None,
        "warnings": _pick(rnd, WARNINGS) if 0.5 < extra < 0.56 else None,
        "title": title,
    }


def iter_market(rows: int, seed: int = 1, day: date = FIRST_DAY) -> Iterator[dict]:
    """The first snapshot of a market, one listing at a time (for markets too big to hold in memory).

    ``source_url``s are numbered 1..rows.
    """
    rng = random.Random(seed)
    for number in range(1, rows + 1):
        yield listing(number, rng, day)


def first_snapshot(rows: int, seed: int = 1, day: date = FIRST_DAY) -> List[dict]:
    """The first snapshot of a market of ``rows`` listings, as a list."""
    return list(iter_market(rows, seed, day))


def _url_number(url: str) -> Tuple[str, int]:
    match = re.search(r"(\d+)$", url or "")
    return (url[: match.start()], int(match.group(1))) if match else (url or URL_PREFIX, 0)


def iter_next_snapshot(
    rows: Iterable[dict],
    seed: int,
    changed: float = CHANGED,
    removed: float = REMOVED,
    added: float = ADDED,
    day: date = FIRST_DAY + timedelta(days=1),
    changes: Optional[Changes] = None,
) -> Iterator[dict]:
    """``next_snapshot`` one listing at a time, recording what it did in ``changes`` as it goes."""
    rng = random.Random(seed)
    rnd = rng.random
    changes = Changes() if changes is None else changes
    count, last, prefix = 0, 0, URL_PREFIX
    for row in rows:
        count += 1
        prefix, number = _url_number(row["source_url"])
        last = max(last, number)
        draw = rnd()
        if draw < removed:
            changes.removed.append(row["source_url"])
            continue
        row = dict(row, seen_at=_seen_at(day, rnd))
        if draw < removed + changed:
            old = float(row["price"])
            new_price = round(old * _pick(rnd, PRICE_STEPS), 2)
            row["price"] = new_price
            changes.changed[row["source_url"]] = (old, new_price)
        yield row
    for number in range(last + 1, last + 1 + round(count * added)):
        row = listing(number, rng, day, prefix)
        changes.added.append(row["source_url"])
        yield row


def next_snapshot(
    rows: Iterable[dict],
    seed: int,
    changed: float = CHANGED,
    removed: float = REMOVED,
    added: float = ADDED,
    day: date = FIRST_DAY + timedelta(days=1),
) -> Tuple[List[dict], Changes]:
    """The same market on ``day``: the given fractions of listings change price, are removed, or are added.

    Kept listings stay in their order and keep every value but ``price`` and ``seen_at``; new ones, numbered
    after the highest ``source_url`` number so far, go at the end. ``round(len(rows) * added)`` are added.
    """
    changes = Changes()
    result = list(iter_next_snapshot(rows, seed, changed, removed, added, day, changes))
    return result, changes


def market_snapshots(count: int, rows: int, seed: int = 1, **rates) -> Tuple[List[List[dict]], List[Changes]]:
    """``count`` consecutive daily snapshots, and the ``Changes`` from each to the next (``count - 1`` of them).

    ``rates`` are ``changed``, ``removed`` and ``added`` as for ``next_snapshot``.
    """
    snapshots = [first_snapshot(rows, seed)]
    all_changes = []
    for i in range(1, count):
        snapshot, changes = next_snapshot(snapshots[-1], seed * 1000 + i, day=FIRST_DAY + timedelta(days=i), **rates)
        snapshots.append(snapshot)
        all_changes.append(changes)
    return snapshots, all_changes


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def write_csv(rows: Iterable[dict], out: Union[str, Path, IO[str]]) -> None:
    """Write listings as a scored listings CSV (all 23 columns, ``\\r\\n`` line ends) to a path or text stream."""
    if isinstance(out, (str, Path)):
        with open(out, "w", encoding="utf-8", newline="") as f:
            write_csv(rows, f)
        return
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows([cell(row.get(c)) for c in COLUMNS] for row in rows)


def write_market(path: Union[str, Path], rows: int, seed: int = 1) -> Path:
    """Write the first snapshot of a ``rows``-listing market to ``path`` (same rows and seed, same bytes)."""
    write_csv(iter_market(rows, seed), path)
    return Path(path)


def iter_csv(path: Union[str, Path]) -> Iterator[dict]:
    """Listings of a scored listings CSV, as ``next_snapshot`` takes them: cells as text, empty cells None."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            yield {k: (v if v != "" else None) for k, v in row.items()}


def why_not_continued(path: Union[str, Path]) -> Optional[str]:
    """Why the CSV file at ``path`` cannot be the market a next snapshot follows: the first error an import of it
    gives, or a missing ``source_url`` column; None when it can. The file is imported into a scratch database in a
    private temporary folder, which is then removed."""
    with tempfile.TemporaryDirectory(prefix="glyph-sample-") as folder:
        conn = connect(Path(folder) / "check.db", wal=False)
        try:
            migrator.migrate(conn)
            importer.import_csv(conn, path, max_errors=1)
        except importer.ImportFailed as e:
            return e.errors[0]["message"]
        finally:
            conn.close()
    if not _has_column(path, "source_url"):
        return "it has no source_url column, which matches a listing from one snapshot to the next"
    return None


def _has_column(path: Union[str, Path], name: str) -> bool:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return name in next(csv.reader(f), [])


def read_csv(path: Union[str, Path]) -> List[dict]:
    """``iter_csv`` as a list."""
    return list(iter_csv(path))


def day_after(rows: Iterable[dict]) -> date:
    """The day after the latest ``seen_at`` of the listings (the day after ``FIRST_DAY`` when none has one)."""
    days = [str(row.get("seen_at") or "")[:10] for row in rows]
    latest = max((d for d in days if re.fullmatch(r"\d{4}-\d\d-\d\d", d)), default=FIRST_DAY.isoformat())
    return date.fromisoformat(latest) + timedelta(days=1)


def csv_text(rows: Iterable[dict]) -> str:
    """Listings as the text of a scored listings CSV."""
    out = io.StringIO()
    write_csv(rows, out)
    return out.getvalue()
