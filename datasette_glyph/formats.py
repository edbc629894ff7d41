"""How values read when shown: money on pages, timestamps in JSON. Nothing here imports Datasette."""

from __future__ import annotations

import datetime
from typing import Any

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


def with_utc_z(data: Any) -> Any:
    """A copy of ``data`` (dicts and lists, nested) with every value under a ``TIMESTAMP_KEYS`` key in ``utc_z`` form."""
    if isinstance(data, dict):
        return {k: utc_z(v) if k in TIMESTAMP_KEYS else with_utc_z(v) for k, v in data.items()}
    if isinstance(data, list):
        return [with_utc_z(v) for v in data]
    return data
