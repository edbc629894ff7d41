"""Writing one import: the ``import_batches`` row, the records in chunks (row by row, or on the bulk path with
the secondary indexes built again afterwards), the per-model summary and the deltas, in one transaction."""

from __future__ import annotations

import datetime
import itertools
import math
import os
import re
import sqlite3
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import schema
from .columns import MODEL_SPEC_COLUMNS
from .deltas import record_deltas
from .errors import ImportFailed, located_error
from .lineage import summarise_import
from .sqlite import transaction
from .validate import RecordChecks

# Page cache while an import runs (KiB): the random-order indexes need it; more bought little and cost memory
# (docs/benchmarks.md, "Tuned constants")
IMPORT_CACHE_KIB = 32 * 1024


# Page cache while the per-model summary sorts (KiB): the sorter's memory follows it, and it ran faster
# (docs/benchmarks.md, "Tuned constants")
SUMMARY_CACHE_KIB = 2 * 1024


# Records written by one INSERT statement of many VALUES rows: each execution of a statement has a cost of its own
# (reset, step, updating sqlite_sequence for the AUTOINCREMENT id), paid once for this many rows.
ROWS_PER_STATEMENT = 100


# The bulk path (see _DeferredIndexes): a batch expected to hold at least BULK_MIN_ROWS rows and at least
# bulk_ratio(T) times the T rows already in scored_listings is written without the table's secondary indexes, which
# are then built in one sorted pass each, in the same transaction. BULK_RATIOS holds the two measured crossings of
# the two ways' costs, a little above each; between them the ratio follows log(T) (docs/benchmarks.md, "The bulk path")
BULK_MIN_ROWS = 100_000
BULK_RATIOS = ((1_000_000, 0.12), (5_000_000, 0.06))


# Helper threads for SQLite's sorter once the rows are written: the reading has left the other core free
# (docs/benchmarks.md, "Tuned constants")
SORT_THREADS = 2 if (os.cpu_count() or 1) > 1 else 0


# Page cache while the bulk path builds indexes (KiB): the sorter's memory follows it, and it was fastest
# (docs/benchmarks.md, "Tuned constants")
INDEX_BUILD_CACHE_KIB = 2 * 1024


# The batch's size is estimated (from the file's size and the bytes its first rows took) once this many rows
# are read: far enough into the file for the estimate to hold, early enough that most rows take the fast path.
BULK_DECIDE_ROWS = 20_000


# On the bulk path, a single-column index whose column takes at most FEW_VALUES values in a chunk of the batch is
# kept up to date instead of built again, unless the table holds fewer than FEW_VALUED_KEPT_FROM times the batch's
# rows: its new entries land on a few cached pages, cheaper than a rebuild over the whole table
# (docs/benchmarks.md, "Tuned constants")
FEW_VALUES = 32
FEW_VALUED_KEPT_FROM = 0.1


@dataclass
class ImportResult:
    """What an import wrote: the batch's id and record, and what the file looked like."""

    import_id: str
    record_count: int
    first_model: Optional[str]
    last_model: Optional[str]
    timestamp: str  # ISO 8601 UTC of completion, e.g. 2026-11-27T13:10:42.123456Z
    filename: Optional[str]
    sha256: str
    bytes: int
    source: Optional[str]
    description: Optional[str]
    actor: Optional[str]
    ignored_columns: List[str] = field(default_factory=list)
    same_content_as: Optional[str] = None  # the newest earlier complete import with the same SHA-256

    def to_dict(self) -> dict:
        """The result as a JSON-ready dict. ``previous_import_id`` is the older name of ``same_content_as``, kept for
        existing clients."""
        body = asdict(self)
        body["previous_import_id"] = self.same_content_as
        return body


INSERT_BATCH_SQL = """
INSERT INTO import_batches (
    import_id, imported_at, source, description, filename, started_at, status, actor, record_count
)
VALUES (:import_id, :started_at, :source, :description, :filename, :started_at, 'pending', :actor, 0)
"""


COMPLETE_BATCH_SQL = """
UPDATE import_batches
SET record_count = :record_count, sha256 = :sha256, bytes = :bytes, finished_at = :finished_at,
    imported_at = :finished_at, status = 'complete'
WHERE import_id = :import_id
"""


SAME_CONTENT_SQL = """
SELECT import_id FROM import_batches
WHERE sha256 = :sha256 AND import_id != :import_id AND status = 'complete'  -- a rolled-back batch is no earlier import
ORDER BY imported_at DESC, id DESC
LIMIT 1
"""


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _db_time(moment: datetime.datetime) -> str:
    # The shape of SQLite's CURRENT_TIMESTAMP plus microseconds, so that the two sort together.
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _iso_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# A default that names the moment (CURRENT_TIMESTAMP, datetime('now'), ...), as the old store gives created_at
# and updated_at.
_MOMENT_RE = re.compile(r"current_(?:timestamp|date|time)\b|'now'", re.IGNORECASE)


def moment_defaults(conn: sqlite3.Connection, provided: Sequence[str]) -> Dict[str, str]:
    """{column: SQL literal} for the scored_listings columns the file does not provide whose default is the
    moment of the insert: that default evaluated once, so that every row of the batch gets the moment the import
    began, as a constant. Evaluated per row, the two timestamps of the old store's schema took 2.3 s of a
    million-row insert's 8.1 s of CPU.
    """
    found = {}
    for _, name, _, _, default, _ in conn.execute("PRAGMA table_info(scored_listings)").fetchall():
        if name not in provided and default and _MOMENT_RE.search(default):
            found['"' + name.replace('"', '""') + '"'] = conn.execute(f"SELECT quote({default})").fetchone()[0]
    return found


class ImportWriter:
    """One import in progress: its records' checks (``checks``) and, while every record so far is valid, the writing
    of them."""

    def __init__(self, conn: sqlite3.Connection, checks: RecordChecks):
        self.checks = checks
        self.conn = conn
        self.import_id = str(uuid.uuid4())
        self.record_count = 0
        self.first_model: Optional[str] = None
        self.last_model: Optional[str] = None
        self.known_models: set = set()
        self.models_added = 0
        # Estimated rows in the whole batch, given the rows read so far (None: unknown)
        self.size_hint: Callable[[int], Optional[int]] = lambda rows: None
        self.bulk: Union[None, bool, "_DeferredIndexes"] = None  # decided once BULK_DECIDE_ROWS rows are read
        names = [column.name for _, column in checks.used]
        self.model_position = names.index("canonical_model") if "canonical_model" in names else None
        self.spec_positions = [(name, names.index(name)) for name in MODEL_SPEC_COLUMNS if name in names]
        moments = moment_defaults(conn, names)
        values = f"({''.join('?, ' for _ in names)}{''.join(v + ', ' for v in moments.values())}'{self.import_id}', ?)"
        written = names + list(moments)
        into = f"INSERT INTO scored_listings ({''.join(n + ', ' for n in written)}import_id, import_index)"
        self.insert_sql = f"{into} VALUES {values}"
        self.insert_many_sql = f"{into} VALUES {', '.join([values] * ROWS_PER_STATEMENT)}"
        self.row_width = len(names) + 1

    def add(
        self,
        rows: List[List[str]],
        first_location: int,
        locations: Optional[List[int]] = None,
        problems: Optional[List[Tuple[int, int, dict]]] = None,
    ) -> None:
        """Validate rows and write them if nothing has failed so far."""
        typed = self.checks.prepare(rows, first_location, locations, problems)
        if typed is not None:
            self.write(typed)

    def add_chunks(self, chunks: Iterator[tuple]) -> None:
        """Validate and write chunks of ``(rows, first location, locations or None, problems or None)``.

        However it ends, the chunk generator is closed, so that its frame lets go of the records it holds: a
        refused import's exception, with its traceback, is kept by Datasette's write thread until the next write,
        and would otherwise keep the body's largest values in memory until then.
        """
        # Read, convert and write in this one thread. Reading and converting on a thread of their own, ahead of the
        # writer, made a million-row import slower (the GIL: see docs/benchmarks.md, "The second reading process").
        try:
            for rows, first_location, locations, problems in chunks:
                self.add(rows, first_location, locations, problems)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def write(self, typed: List[Sequence]) -> None:
        """Write prepared records (typed columns, as ``prepare`` returns them), unless something has failed (then
        the batch will be refused anyway)."""
        if self.checks.errors:
            return
        count = len(typed[0])
        if self.bulk is None and self.record_count + count >= BULK_DECIDE_ROWS:
            self.bulk = self._bulk_path(self.record_count + count, typed)
        models = typed[self.model_position]
        if self.first_model is None:
            self.first_model = models[0]
        self.last_model = models[-1]
        for model in dict.fromkeys(models):
            if model not in self.known_models:
                self.known_models.add(model)
                self._add_model(model, typed, models.index(model))
        start = self.record_count + 1
        self.record_count += count
        records = zip(*typed, range(start, self.record_count + 1))
        statements = count // ROWS_PER_STATEMENT
        if statements:
            values = itertools.chain.from_iterable(records)
            size = ROWS_PER_STATEMENT * self.row_width
            many = [tuple(itertools.islice(values, size)) for _ in range(statements)]
            self.conn.executemany(self.insert_many_sql, many)
            records = zip(*[values] * self.row_width)  # what is left, a record at a time
        self.conn.executemany(self.insert_sql, records)

    def _bulk_path(self, rows_read: int, typed: List[Sequence]) -> Union[bool, "_DeferredIndexes"]:
        """The bulk path if the batch is large enough, relative to the table, to take it; else False."""
        expected = self.size_hint(rows_read)
        if expected is None or expected < BULK_MIN_ROWS:
            return False
        # The span of rowids: an upper bound on the rows in the table, read from the rowid b-tree's two ends
        low, high = self.conn.execute("SELECT min(rowid), max(rowid) FROM scored_listings").fetchone()
        existing = 0 if high is None else high - low + 1 - self.record_count
        if expected < bulk_ratio(existing) * existing:
            return False
        sample = {}
        if existing >= FEW_VALUED_KEPT_FROM * expected:
            sample = {column.name: values for (_, column), values in zip(self.checks.used, typed)}
        return _DeferredIndexes(self.conn, sample)

    def finish_writing(self) -> None:
        """Build the indexes the bulk path set aside, if it was taken."""
        if self.bulk:
            self.bulk.rebuild()

    def _add_model(self, model: str, typed: List[Sequence], index: int) -> None:
        if self.conn.execute("SELECT 1 FROM models WHERE model = ?", [model]).fetchone():
            return
        self.models_added += 1
        names = [name for name, _ in self.spec_positions]
        values = [typed[position][index] for _, position in self.spec_positions]
        self.conn.execute(
            f"INSERT OR IGNORE INTO models (model, {''.join(n + ', ' for n in names)}import_id, import_index) "
            f"VALUES (?, {''.join('?, ' for _ in names)}?, ?)",
            [model, *values, self.import_id, self.models_added],
        )


def bulk_ratio(existing: int) -> float:
    """The share of the ``existing`` rows of scored_listings from which a batch takes the bulk path (BULK_RATIOS)."""
    (small, high), (large, low) = BULK_RATIOS
    if existing <= small:
        return high
    if existing >= large:
        return low
    return high + (low - high) * math.log(existing / small) / math.log(large / small)


class _DeferredIndexes:
    """The bulk path: scored_listings' secondary indexes dropped for the length of a large batch, then built
    again from their own SQL, in one sorted pass each, before the batch's transaction commits.

    Readers in WAL mode keep the snapshot they started with, so no reader ever sees the table without its
    indexes; if the batch fails, its rollback puts the indexes back as they were. Unique indexes stay (they
    enforce something, and the lineage index grows at its end, in order); so do indexes SQLite made itself, and
    the single-column indexes whose column takes few values in the batch (at most FEW_VALUES in the chunk
    ``sample`` holds): each new entry goes at the end of its value's run of rowids, on one of a few pages that
    stay in the cache, so keeping them row by row is cheaper than building them again over the whole table.
    """

    def __init__(self, conn: sqlite3.Connection, sample: Dict[str, Sequence]):
        self.conn = conn
        kept = {name for name, unique, column in self._index_list() if unique or self._few_values(column, sample)}
        self.indexes = [
            (name, sql)
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'scored_listings' "
                "AND sql IS NOT NULL ORDER BY rowid"
            )
            if name not in kept
        ]
        # DROP INDEX deletes the index's ANALYZE statistics: kept here, put back once it is built again.
        self.statistics = schema.index_statistics(conn, [name for name, _ in self.indexes])
        # Dropping an index frees its pages, which a SQLite built with SECURE_DELETE (as Debian's is) overwrites with
        # zeros; FAST leaves them as they are, and what they held stays in the table (docs/benchmarks.md, "Tuned
        # constants")
        secure_delete = conn.execute("PRAGMA secure_delete").fetchone()[0]
        conn.execute("PRAGMA secure_delete = FAST")
        try:
            for name, _ in self.indexes:
                conn.execute(f'DROP INDEX "{name.replace(chr(34), chr(34) * 2)}"')
        finally:
            conn.execute(f"PRAGMA secure_delete = {int(secure_delete)}")

    def _index_list(self) -> List[Tuple[str, bool, Optional[str]]]:
        """scored_listings' indexes: (name, unique, the column of a single-column index that is not partial, or
        None)."""
        indexes = []
        for _, name, unique, _, partial in self.conn.execute("SELECT * FROM pragma_index_list('scored_listings')"):
            columns = [row[0] for row in self.conn.execute("SELECT name FROM pragma_index_info(?)", [name])]
            indexes.append((name, bool(unique), columns[0] if len(columns) == 1 and not partial else None))
        return indexes

    @staticmethod
    def _few_values(column: Optional[str], sample: Dict[str, Sequence]) -> bool:
        return column is not None and column in sample and len(set(sample[column])) <= FEW_VALUES

    def rebuild(self) -> None:
        cache_size = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        self.conn.execute(f"PRAGMA cache_size = -{INDEX_BUILD_CACHE_KIB}")
        try:
            for _, sql in self.indexes:
                self.conn.execute(sql)
            schema.put_back_statistics(self.conn, self.statistics)
        finally:
            self.conn.execute(f"PRAGMA cache_size = {int(cache_size)}")


class _ImportCache:
    """A bigger page cache for the length of one import; the connection's cache and sorter threads come back
    afterwards."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.cache_size = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        self.threads = self.conn.execute("PRAGMA threads").fetchone()[0]
        self.conn.execute(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")
        return self

    def sorting(self) -> None:
        """From here on the import sorts (index builds, summary, deltas) and reads no more: SQLite's sorter
        may use helper threads on the cores the reading has left."""
        self.conn.execute(f"PRAGMA threads = {SORT_THREADS}")

    def __exit__(self, *exc_info):
        self.conn.execute(f"PRAGMA cache_size = {int(self.cache_size)}")
        self.conn.execute(f"PRAGMA threads = {int(self.threads)}")
        return False


def write_import(
    conn: sqlite3.Connection, header: List[str], fill: Callable[["ImportWriter"], None], **options
) -> ImportResult:
    """Check and write one import as a new batch, in one transaction: ``fill(writer)`` hands the records to the
    ``ImportWriter`` (``writer.add_chunks`` for chunks read in this process, ``reading.Reader.feed`` for records
    read by another). Raises ImportFailed, having written nothing, if any record is invalid.

    ``options``: ``started``, ``filename``, ``source_name``, ``description``, ``actor``, ``max_errors``, ``digest``
    (the input's SHA-256 and size, once read), ``record_label`` (None: locations are CSV lines; "Record": 1-based
    positions), ``fatal_check`` (the error that stopped reading, if any), ``original`` (a ``files.Original``: the
    bytes read, made durable and recorded before the batch commits), ``before_commit(conn, result)`` (runs in the
    import's transaction once every row is written) and ``size_hint`` (the batch's estimated rows, given the rows
    read so far).
    """
    try:
        return _write(conn, header, fill, **options)
    finally:
        if options.get("original") is not None:
            options["original"].discard()  # a temp file the batch did not keep


def _write(
    conn: sqlite3.Connection,
    header: List[str],
    fill: Callable[["ImportWriter"], None],
    *,
    started: datetime.datetime,
    filename: Optional[str],
    source_name: Optional[str],
    description: Optional[str],
    actor: Optional[str],
    max_errors: int,
    digest: Callable[[], Tuple[str, int]],
    record_label: Optional[str] = None,
    fatal_check: Optional[Callable[[], Optional[dict]]] = None,
    original=None,
    before_commit: Optional[Callable[[sqlite3.Connection, "ImportResult"], None]] = None,
    size_hint: Optional[Callable[[int], Optional[int]]] = None,
) -> ImportResult:
    checks = RecordChecks(header, max_errors, record_label)
    if checks.header_errors:
        raise ImportFailed(checks.header_errors[:max_errors], max(0, len(checks.header_errors) - max_errors))
    batch = ImportWriter(conn, checks)
    with _ImportCache(conn) as cache, transaction(conn, "glyph_import", "the import"):
        conn.execute(
            INSERT_BATCH_SQL,
            {
                "import_id": batch.import_id,
                "started_at": _db_time(started),
                "source": source_name,
                "description": description,
                "filename": filename,
                "actor": actor,
            },
        )
        if size_hint is not None:
            batch.size_hint = size_hint
        fill(batch)
        cache.sorting()
        batch.finish_writing()
        fatal = fatal_check() if fatal_check else None
        if fatal is not None:
            checks.fail(fatal)
        if not checks.errors and batch.record_count == 0:
            where = "The file has a header but no rows" if record_label is None else "No records to import"
            checks.fail(located_error(None, None, None, where))
        if checks.errors:
            raise ImportFailed(checks.errors, checks.more)
        sha256, size = digest()
        finished = utcnow()
        conn.execute(
            COMPLETE_BATCH_SQL,
            {
                "import_id": batch.import_id,
                "record_count": batch.record_count,
                "sha256": sha256,
                "bytes": size,
                "finished_at": _db_time(finished),
            },
        )
        if original is not None:
            original.keep(conn, batch.import_id, sha256, size)
        # The per-model summary, read back from the rows just written (contiguous in rowid: sequential reads).
        # SQLite's sorter takes memory in proportion to cache_size, so the sorts run with a small cache and
        # spill to disk: memory stays flat whatever the file's size. (Keeping the prices in Python instead
        # cost 8 bytes a row: +15 MB of peak RSS at a million rows.)
        conn.execute(f"PRAGMA cache_size = -{SUMMARY_CACHE_KIB}")
        summarise_import(conn, batch.import_id)
        record_deltas(conn, batch.import_id)  # what changed since the previous import from the same source
        previous = conn.execute(SAME_CONTENT_SQL, {"sha256": sha256, "import_id": batch.import_id}).fetchone()
        result = ImportResult(
            import_id=batch.import_id,
            record_count=batch.record_count,
            first_model=batch.first_model,
            last_model=batch.last_model,
            timestamp=_iso_time(finished),
            filename=filename,
            sha256=sha256,
            bytes=size,
            source=source_name,
            description=description,
            actor=actor,
            ignored_columns=checks.ignored,
            same_content_as=previous[0] if previous else None,
        )
        if before_commit is not None:
            before_commit(conn, result)  # what the caller keeps with the batch, in its transaction
    return result
