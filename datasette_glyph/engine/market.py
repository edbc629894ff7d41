"""The present tense: which import of each source is the market now, or was at a given moment.

Definitions (``docs/market.md`` gives them to users in the same words):

- the **current import** of a source is its newest import with status ``complete`` (not rolled back, not held,
  not still being written); "newest" orders by ``imported_at``, then by ``import_batches.id``, as
  ``deltas.PREVIOUS_IMPORT_SQL`` does;
- the **current market** is the rows of the current import of every source;
- the market **as of** a moment T is the rows of each source's newest import imported at or before T that is
  complete now (a rolled-back import's rows are gone, so it never counts);
- imports without a source form one source of their own, shown as ``NO_SOURCE_LABEL``.

Synchronous functions over a ``sqlite3.Connection``; nothing here imports Datasette.
"""

from __future__ import annotations

import datetime
import sqlite3
from typing import List, Optional

# How answers and pages name the one source that imports without a source form.
NO_SOURCE_LABEL = "(no source)"

# The import that is the market of each source: its newest complete import, imported at or before :as_of
# (NULL: now). ``{columns}`` names what to select of ``import_batches`` (``b``). Sources group NULL with NULL.
MARKET_IMPORTS_SQL = """
SELECT {columns}
FROM import_batches b
WHERE b.status = 'complete'
    AND (:as_of IS NULL OR b.imported_at <= :as_of)
    AND NOT EXISTS (
        SELECT 1 FROM import_batches n
        WHERE n.status = 'complete'
            AND n.source IS b.source
            AND (:as_of IS NULL OR n.imported_at <= :as_of)
            AND (n.imported_at > b.imported_at OR (n.imported_at = b.imported_at AND n.id > b.id))
    )
ORDER BY b.source IS NULL, b.source
"""

MARKET_COLUMNS = "b.import_id, b.source, b.imported_at, b.filename, b.record_count"


class InvalidMoment(ValueError):
    """A moment that is not an ISO 8601 time; the message says what was given and what is expected."""


def parse_moment(text: str) -> str:
    """An ISO 8601 date or time (``2026-03-01``, ``2026-03-01T12:00``, ``...Z``, ``...+02:00``) as the text
    ``import_batches.imported_at`` holds (UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``), so the two compare as text.

    A time without an offset is UTC; a date alone is its last microsecond (the market "on" that day is the market
    at its end). Raises ``InvalidMoment``.
    """
    raw = (text or "").strip()
    candidate = raw[:-1] + "+00:00" if raw[-1:] in ("Z", "z") else raw
    try:
        if len(candidate) == 10:
            day = datetime.date.fromisoformat(candidate)
            moment = datetime.datetime.combine(day, datetime.time.max)
        else:
            moment = datetime.datetime.fromisoformat(candidate)
    except ValueError:
        raise InvalidMoment(f"{raw!r} is not an ISO 8601 time; give e.g. 2026-03-01T12:00:00Z or 2026-03-01") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def market_imports(conn: sqlite3.Connection, as_of: Optional[str] = None) -> List[dict]:
    """The import that is each source's market now (``as_of`` None) or at ``as_of`` (a ``parse_moment`` text):
    one dict per source with ``import_id``, ``source``, ``imported_at``, ``filename``, ``record_count``; the
    sourceless imports' source last."""
    cursor = conn.execute(MARKET_IMPORTS_SQL.format(columns=MARKET_COLUMNS), {"as_of": as_of})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def current_import(conn: sqlite3.Connection, source: Optional[str]) -> Optional[dict]:
    """The current import of one source (None: the sourceless imports), or None if it has none."""
    for batch in market_imports(conn):
        if batch["source"] == source:
            return batch
    return None
