"""One formatter per kind of value (money, score, time) and the JSON bodies the CLI and the API share."""

from __future__ import annotations

import datetime
import re
from typing import Any, Optional
from urllib.parse import quote, urlencode

# Keys whose values are timestamps the project records itself (the batch record, an import result, a rollback).
# They are stored as SQLite's CURRENT_TIMESTAMP shape, UTC without a zone (``2026-11-27 13:28:32.852201``), and
# shown in JSON as ISO 8601 UTC with ``Z``. A listing's ``seen_at`` comes from the imported file and is left as sent.
TIMESTAMP_KEYS = frozenset({"imported_at", "started_at", "finished_at", "rolled_back_at", "timestamp", "applied_at"})


def usd(value, cents: bool = True) -> str:
    """``$12,345.67`` (or ``$12,346`` without cents)."""
    if value is None:
        return ""
    return f"${value:,.2f}" if cents else f"${value:,.0f}"


def utc_z(value: Any) -> Any:
    """A stored timestamp as ISO 8601 UTC with ``Z``: ``2026-11-27 13:28:32.852201`` -> ``2026-11-27T13:28:32.852201Z``.

    A value without a zone is UTC (that is how the project stores them); one with an offset is converted to UTC.
    Anything that is not a timestamp (None, a number, free text) is returned unchanged.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds") + "Z"


def plural(count: int, word: str, many: Optional[str] = None) -> str:
    """``1 row``, ``2 rows``, ``1,000 rows``: a count with its noun in the right number (``many`` when the plural is
    not ``word`` plus s)."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def with_utc_z(data: Any) -> Any:
    """A copy of ``data`` (dicts and lists, nested) with every value under a ``TIMESTAMP_KEYS`` key as ``utc_z``."""
    if isinstance(data, dict):
        return {k: utc_z(v) if k in TIMESTAMP_KEYS else with_utc_z(v) for k, v in data.items()}
    if isinstance(data, list):
        return [with_utc_z(v) for v in data]
    return data


TIME = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d(?::\d\d)?)(?:\.\d+)?(Z|\+00:00)?$")


def signed_usd(value) -> str:
    """``+$12.50``, ``−$3.00`` or ``$0.00``."""
    if value is None:
        return ""
    sign = "+" if value > 0 else "\u2212" if value < 0 else ""
    return sign + usd(abs(value))


def utc_time(value) -> str:
    """A stored time as ``2025-05-01 08:00:00 UTC``: no fractions of a second, the zone named. Text that is not a
    time comes back unchanged."""
    if not isinstance(value, str):
        return "" if value is None else str(value)
    match = TIME.match(value)
    if not match:
        return value
    return f"{match.group(1)} {match.group(2)} UTC"


def short_time(value) -> str:
    """``2025-05-01 08:00 UTC``: a time to the minute, for labels."""
    full = utc_time(value)
    match = TIME.match(full[:-4]) if full.endswith(" UTC") else None
    return f"{match.group(1)} {match.group(2)[:5]} UTC" if match else full


def short_usd(value: float) -> str:
    """An axis label: ``$300``, ``$3k``, ``$30k``, ``$1M``."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"${value / size:,.6g}{suffix}"
    return f"${value:,.6g}"


def score(value) -> str:
    """A score to four decimals, ``0.8123``; empty for None."""
    return "" if value is None else f"{value:.4f}"


def short_score(value: float) -> str:
    """An axis label: ``0``, ``0.2``, ``0.85``."""
    return f"{value:.4g}"


def signed(value, fmt: str = "{:,.2f}") -> str:
    """A change with its sign, ``+12.50``, ``-3.00`` or ``0.00``, in ``fmt``; empty for None."""
    if value is None:
        return ""
    return ("+" if value > 0 else "-" if value < 0 else "") + fmt.format(abs(value))


def diff_path(prefix: str, a: str, b: str) -> str:
    """``<prefix>/imports/<a>/diff/<b>`` with each id escaped for a URL path."""
    return f"{prefix}/imports/{quote(a, safe='')}/diff/{quote(b, safe='')}"


def with_query(path: str, **params) -> str:
    """``path`` plus a query string of the params that are not None."""
    query = {k: v for k, v in params.items() if v is not None}
    return path + ("?" + urlencode(query) if query else "")


def diff_body(diff, next_url: Optional[str]) -> dict:
    """The JSON of ``GET /api/imports/<a>/diff/<b>`` (and ``glyph-diff --json``): the diff, ``ok`` and ``next``."""
    return {"ok": True, **with_utc_z(diff.to_dict()), "next": next_url}


def diff_next_path(diff, a: str, b: str) -> Optional[str]:
    """The API path of the diff's next page, or None on the last page."""
    if diff.next_offset is None:
        return None
    return with_query(diff_path("/api", a, b), kind=diff.kind, limit=diff.limit, offset=diff.next_offset)


def import_label(batch: dict) -> str:
    """How a page names an import among others: time, source and file (or description), e.g.
    ``2025-05-01 08:00 UTC · ebay · monday.csv``. The time comes first and holds no-break spaces, so that a
    narrow column (a facet's) never breaks it across lines."""
    name = batch.get("filename") or batch.get("description") or batch.get("import_id")
    when = short_time(batch.get("imported_at")).replace(" ", "\u00a0")
    return " · ".join(part for part in (when, batch.get("source"), name) if part)
