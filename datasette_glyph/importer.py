"""Import scored listing CSV files: stream, validate, type and write them as one batch with lineage.

A file becomes one ``import_batches`` row (a fresh uuid4 ``import_id``, the file's name, SHA-256 and size,
who and when) and one ``scored_listings`` row per CSV record, numbered ``import_index`` 1..n in file order.
Models the store has not seen yet are added to ``models`` first, so that ``canonical_model`` always
references a model. Everything is written in one transaction: a file with any invalid record writes
nothing, and the error list names the line, column and value of each problem.

Synchronous functions over a ``sqlite3.Connection``; nothing here imports Datasette.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime
import functools
import hashlib
import io
import itertools
import json
import math
import os
import re
import sqlite3
import uuid
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from .db import transaction
from .lineage import summarise_import

# The longest field accepted. Real fields (titles, notes) are at most a few KB; a field this long means
# an unclosed quote or a file that is not CSV, and is refused rather than read into memory.
MAX_FIELD_CHARS = 1024 * 1024
# The longest physical line read at once; a longer one arrives in pieces and trips MAX_FIELD_CHARS.
MAX_LINE_BYTES = 2 * MAX_FIELD_CHARS
# Rows converted and inserted per executemany call. Small chunks stay in the CPU caches and keep the
# cyclic GC's work small: parsing and converting a million rows took 3.8 s of CPU in chunks of 500, 4.2-5.1 s
# in chunks of 2,000 and 6.6 s in chunks of 20,000.
CHUNK_ROWS = 500
# SQLite page cache while an import runs (KiB); the connection's own setting is restored afterwards.
# Inserting is dominated by the random-order indexes of scored_listings (score, seen_at); CPU time for a
# million rows: 31.6 s with SQLite's default 2 MiB, 22.1 s with 16 MiB, 18.7 s with 32 MiB, 17.9 s with
# 64 MiB. 32 MiB keeps a server under 128 MB RSS during an upload.
IMPORT_CACHE_KIB = 32 * 1024
# Page cache while the batch's per-model summary is computed (KiB). Measured at a million rows: the summary
# took +130 MB with the import's 32 MiB cache, +3 MB with 2 MiB, and ran faster.
SUMMARY_CACHE_KIB = 2 * 1024
READ_BUFFER_BYTES = 1024 * 1024
# Longest value quoted back in an error.
MAX_ERROR_VALUE_CHARS = 200


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
    previous_import_id: Optional[str] = None  # newest earlier batch with the same sha256

    def to_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return asdict(self)


class ImportFailed(Exception):
    """The input was refused and nothing was written.

    ``errors`` lists up to ``max_errors`` problems as ``{"line", "column", "value", "message"}``;
    ``more`` counts the problems found beyond those.
    """

    def __init__(self, errors: List[dict], more: int = 0):
        self.errors = errors
        self.more = more
        summary = errors[0]["message"] if errors else "Import failed"
        if len(errors) + more > 1:
            others = len(errors) + more - 1
            summary += f" (and {others} more error{'s' if others != 1 else ''})"
        super().__init__(summary)

    def to_dict(self) -> dict:
        return {"ok": False, "errors": self.errors, "more": self.more}


def _error(line: Optional[int], column: Optional[str], value: Optional[str], message: str) -> dict:
    if value is not None and len(value) > MAX_ERROR_VALUE_CHARS:
        value = value[:MAX_ERROR_VALUE_CHARS] + "…"
    return {"line": line, "column": column, "value": value, "message": message}


def _quote(value: str) -> str:
    if len(value) > 60:
        value = value[:60] + "…"
    return "'" + value.replace("\n", "\\n").replace("\r", "\\r") + "'"


# --- Columns and their converters -------------------------------------------------------------------
#
# Each converter takes a column of a chunk (a tuple of strings) and returns the typed values. The fast
# path converts the whole column with C-level map/list calls and raises on the first bad value; only
# then does the slow path look at each value to say which are wrong and why.

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def _case_variants(word: str) -> List[str]:
    return ["".join(chars) for chars in itertools.product(*[(c.lower(), c.upper()) for c in word])]


_BOOLEANS = {variant: 1 for word in _TRUE for variant in _case_variants(word)}
_BOOLEANS.update({variant: 0 for word in _FALSE for variant in _case_variants(word)})

MODEL_RE = re.compile(r"[A-Z0-9]+(?:_[A-Z0-9]+)*\Z")
# A date, optionally with a time (seconds and fraction optional) and a UTC offset or Z.
TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?\Z"
)


class _Bad(Exception):
    """One value is invalid; the message completes 'Line N, column C: '."""


# SQLite stores integers in 64 bits; a larger one cannot be written.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int_value(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        pass
    else:
        if not INT64_MIN <= number <= INT64_MAX:
            raise _Bad(f"{_quote(value)} is too large for an integer column")
        return number
    # A whole number written as a float ("24.0") is what pandas writes for an int column with gaps.
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if math.isfinite(number) and number.is_integer():
        if not INT64_MIN <= number <= INT64_MAX:
            raise _Bad(f"{_quote(value)} is too large for an integer column")
        return int(number)
    raise _Bad(f"{_quote(value)} is not an integer")


def _real_value(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _Bad(f"{_quote(value)} is not a number") from None
    if not math.isfinite(number):
        raise _Bad(f"{_quote(value)} is not a finite number")
    return number


def _price_value(value: str) -> float:
    number = _real_value(value)
    if number < 0:
        raise _Bad(f"{_quote(value)} is negative; price must be >= 0")
    return number


def _bool_value(value: str) -> int:
    try:
        return _BOOLEANS[value.strip().lower()]
    except KeyError:
        raise _Bad(f"{_quote(value)} is not a boolean (use True/False, true/false, 1/0 or yes/no)") from None


def _model_value(value: str) -> str:
    if not MODEL_RE.match(value):
        raise _Bad(f"{_quote(value)} is not an UPPER_SNAKE model id such as H100_PCIE_80GB")
    return value


def _timestamp_value(value: str) -> str:
    if not TIMESTAMP_RE.match(value):
        raise _Bad(f"{_quote(value)} is not an ISO 8601 timestamp such as 2025-04-19T06:25:43Z")
    return value


def _fast_ints(values: Sequence[str]) -> list:
    numbers = list(map(int, values))
    if numbers and (min(numbers) < INT64_MIN or max(numbers) > INT64_MAX):
        raise ValueError("out of range")
    return numbers


def _fast_reals(values: Sequence[str]) -> list:
    numbers = list(map(float, values))
    if not all(map(math.isfinite, numbers)):
        raise ValueError("not finite")
    return numbers


def _fast_prices(values: Sequence[str]) -> list:
    numbers = _fast_reals(values)
    if numbers and min(numbers) < 0:
        raise ValueError("negative")
    return numbers


def _fast_bools(values: Sequence[str]) -> list:
    return list(map(_BOOLEANS.__getitem__, values))


def _fast_text(values: Sequence[str]) -> Sequence[str]:
    return values


def _fast_timestamps(values: Sequence[str]) -> Sequence[str]:
    if not all(map(TIMESTAMP_RE.match, values)):
        raise ValueError("bad timestamp")
    return values


@dataclass(frozen=True)
class Column:
    """A CSV column the store keeps: its name, whether every row needs it, and how to type it."""

    name: str
    required: bool
    fast: Callable[[Sequence[str]], Sequence]  # whole column at once; raises on any bad value
    slow: Optional[Callable[[str], object]]  # one value; raises _Bad; None for free text

    def convert(self, values: Sequence[str]) -> Tuple[Sequence, List[Tuple[int, str]]]:
        """Typed values (empty optional cells become None) and the (position, message) of each bad one."""
        if self.required:
            try:
                return self.fast(values), []
            except (ValueError, KeyError):
                return self._slowly(values)
        present = values
        if "" in values:
            if self.slow is None:
                return [v or None for v in values], []
            present = [v for v in values if v]
        try:
            typed = self.fast(present)
        except (ValueError, KeyError):
            return self._slowly(values)
        if present is values:
            return typed, []
        typed_iter = iter(typed)
        return [next(typed_iter) if v else None for v in values], []

    def _slowly(self, values: Sequence[str]) -> Tuple[list, List[Tuple[int, str]]]:
        out, problems = [], []
        for i, value in enumerate(values):
            if value == "" or (self.required and not value.strip()):
                if self.required:
                    problems.append(
                        (i, f"a value is required, found {_quote(value)}" if value else "a value is required")
                    )
                out.append(None)
                continue
            try:
                out.append(self.slow(value) if self.slow else value)
            except _Bad as e:
                problems.append((i, str(e)))
                out.append(None)
        return out, problems


def _required(name, fast, slow) -> Column:
    return Column(name, True, fast, slow)


def _optional(name, fast=_fast_text, slow=None) -> Column:
    return Column(name, False, fast, slow)


def _fast_models(values: Sequence[str]) -> Sequence[str]:
    if not all(map(MODEL_RE.match, set(values))):
        raise ValueError("bad model id")
    return values


COLUMNS: Dict[str, Column] = {
    c.name: c
    for c in (
        _required("canonical_model", _fast_models, _model_value),
        _required("vram_gb", _fast_ints, _int_value),
        _required("mig_support", _fast_ints, _int_value),
        _required("nvlink", _fast_bools, _bool_value),
        _required("tdp_watts", _fast_ints, _int_value),
        _required("price", _fast_prices, _price_value),
        _required("score", _fast_reals, _real_value),
        _optional("condition"),
        _optional("quantity", _fast_ints, _int_value),
        _optional("min_order_qty", _fast_ints, _int_value),
        _optional("seller"),
        _optional("region"),
        _optional("source_url"),
        _optional("source_type"),
        _optional("seen_at", _fast_timestamps, _timestamp_value),
        _optional("generation"),
        _optional("cuda_cores", _fast_ints, _int_value),
        _optional("slot_width", _fast_ints, _int_value),
        _optional("pcie_generation", _fast_ints, _int_value),
        _optional("form_factor"),
        _optional("notes"),
        _optional("warnings"),
        _optional("title"),
    )
}
REQUIRED_COLUMNS = [c.name for c in COLUMNS.values() if c.required]
CSV_HEADER_EXAMPLE = ",".join(REQUIRED_COLUMNS)
# The specs a models row takes from the first listing of a model.
MODEL_SPEC_COLUMNS = [
    "vram_gb",
    "tdp_watts",
    "mig_support",
    "nvlink",
    "generation",
    "cuda_cores",
    "slot_width",
    "pcie_generation",
]

INSERT_BATCH_SQL = """
INSERT INTO import_batches (import_id, imported_at, source, description, filename, started_at, status, actor, record_count)
VALUES (:import_id, :started_at, :source, :description, :filename, :started_at, 'pending', :actor, 0)
"""
COMPLETE_BATCH_SQL = """
UPDATE import_batches
SET record_count = :record_count, sha256 = :sha256, bytes = :bytes, finished_at = :finished_at,
    imported_at = :finished_at, status = 'complete'
WHERE import_id = :import_id
"""
PREVIOUS_BATCH_SQL = """
SELECT import_id FROM import_batches
WHERE sha256 = :sha256 AND import_id != :import_id AND status = 'complete'  -- a rolled-back batch is no earlier import
ORDER BY imported_at DESC, id DESC
LIMIT 1
"""


# --- Reading ----------------------------------------------------------------------------------------


class _HashingReader(io.RawIOBase):
    """A raw stream over the source that hashes and counts every byte on its way to the CSV parser."""

    def __init__(self, source, progress: Optional[Callable[[int], None]] = None):
        self._source = source
        self._progress = progress
        self.sha256 = hashlib.sha256()
        self.count = 0
        self._readinto = getattr(source, "readinto", None)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._readinto is not None:
            n = self._readinto(buffer)
        else:
            data = self._source.read(len(buffer))
            if isinstance(data, str):
                raise TypeError("import_csv needs a binary file object (open the file with 'rb')")
            n = len(data)
            buffer[:n] = data
        if n:
            view = memoryview(buffer)[:n]
            self.sha256.update(view)
            self.count += n
            if self._progress is not None:
                self._progress(self.count)
        return n or 0

    def tell(self) -> int:
        return self.count


class _Fatal(Exception):
    """The input cannot be read any further (broken encoding, CSV syntax, absurd field)."""

    def __init__(self, error: dict):
        self.error = error
        super().__init__(error["message"])


class _CsvSource:
    """CSV records in chunks, with the physical line on which each record starts (header = line 1)."""

    def __init__(self, stream: BinaryIO):
        self._buffer = stream
        self._lines = iter(functools.partial(stream.readline, MAX_LINE_BYTES), b"")
        first = next(self._lines, None)
        self.empty = first is None
        first = first or b""
        self._bom = len(codecs.BOM_UTF8) if first.startswith(codecs.BOM_UTF8) else 0
        first = first[self._bom :]
        self._first_raw = first
        self._sniff(first)
        text = itertools.chain([self._decode(first)] if not self.empty else [], map(bytes.decode, self._lines))
        self._reader = csv.reader(text, strict=True)
        self.lines_read = 0  # physical lines in the records returned so far

    @staticmethod
    def _sniff(first: bytes) -> None:
        """Refuse, by their first line, files that are plainly not UTF-8 CSV."""
        kind = None
        if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            kind = "UTF-16 text; save it as UTF-8"
        elif b"\x00" in first:
            kind = "binary data"
        elif first.lstrip()[:1] == b"<":
            kind = "HTML or XML"
        elif first.lstrip()[:1] in (b"{", b"["):
            kind = "JSON"
        if kind is not None:
            sample = first[:40].decode("utf-8", "replace") if kind in ("HTML or XML", "JSON") else None
            raise _Fatal(_error(1, None, sample, f"Line 1: this is not a CSV file; it starts like {kind}"))

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._decode_error(e, line=1, line_offset=self._bom) from None

    def _decode_error(self, e: UnicodeDecodeError, line: int, line_offset: int) -> _Fatal:
        offset = line_offset + e.start
        bad = e.object[e.start : e.end]
        if len(e.object) >= MAX_LINE_BYTES and not e.object.endswith(b"\n"):
            return _Fatal(_line_too_long(line))
        return _Fatal(
            _error(
                line,
                None,
                None,
                f"Line {line}: not valid UTF-8 (byte {bad.hex(' ', 1)} at byte offset {offset} of the file); "
                "save the file as UTF-8",
            )
        )

    def header(self) -> List[str]:
        """The header row; raises _Fatal when it cannot be read."""
        rows, fatal = self.chunk(1)
        if fatal is not None:
            raise fatal
        return rows[0] if rows else []

    def chunk(self, n: int) -> Tuple[List[List[str]], Optional[_Fatal]]:
        """Up to n records, and the error that stopped reading early, if any."""
        rows: List[List[str]] = []
        fatal = None
        try:
            rows.extend(itertools.islice(self._reader, n))
            self.lines_read = self._reader.line_num
        except UnicodeDecodeError as e:
            line = self._reader.line_num + 1
            line_offset = self._buffer.tell() - len(e.object)
            fatal = self._decode_error(e, line, line_offset)
        except csv.Error as e:
            line = self.lines_read + _lines_in(rows) + 1
            if "field larger than field limit" in str(e):
                fatal = _Fatal(
                    _error(
                        line,
                        None,
                        None,
                        f"Line {line}: a field is longer than {MAX_FIELD_CHARS:,} characters "
                        "(an unclosed quote, or not a CSV file?)",
                    )
                )
            else:
                explained = CSV_ERRORS.get(str(e), str(e))
                fatal = _Fatal(_error(line, None, None, f"Line {line}: malformed CSV: {explained}"))
        return rows, fatal


# What the csv module's strict-mode complaints mean for a person fixing the file.
CSV_ERRORS = {
    "unexpected end of data": "a quoted field is still open at the end of the file",
    "',' expected after '\"'": "a closing quote must be followed by a comma or the end of the line",
    "new-line character seen in unquoted field - do you need to open the file in universal-newline mode?": (
        "a line ends with a bare carriage return; lines must end with \\n or \\r\\n"
    ),
}


def _line_too_long(line: int) -> dict:
    return _error(
        line,
        None,
        None,
        f"Line {line}: longer than {MAX_LINE_BYTES:,} bytes (an unclosed quote, or not a CSV file?)",
    )


def _lines_in(rows: List[List[str]]) -> int:
    """Physical lines the rows took: one each, plus one per newline inside a quoted field."""
    return len(rows) + sum(field.count("\n") for row in rows for field in row if "\n" in field)


def _start_lines(rows: List[List[str]], first_line: int) -> List[int]:
    starts, line = [], first_line
    for row in rows:
        starts.append(line)
        line += 1 + sum(field.count("\n") for field in row)
    return starts


# --- Writing ----------------------------------------------------------------------------------------


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _db_time(moment: datetime.datetime) -> str:
    # The shape of SQLite's CURRENT_TIMESTAMP plus microseconds, so that the two sort together.
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _iso_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Batch:
    """One import in progress: validates chunks of rows and, while they are all valid, writes them."""

    def __init__(self, conn: sqlite3.Connection, header: List[str], max_errors: int, record_label: Optional[str]):
        self.conn = conn
        self.max_errors = max_errors
        self.record_label = record_label  # None: locations are CSV lines; "Record": 1-based positions
        self.errors: List[dict] = []
        self.more = 0
        self.width = len(header)
        self.import_id = str(uuid.uuid4())
        self.record_count = 0
        self.first_model: Optional[str] = None
        self.last_model: Optional[str] = None
        self.known_models: set = set()
        self.models_added = 0
        self.ignored, self.used = [], []  # used: (position in row, Column)
        self.header_errors = self._read_header(header)
        names = [column.name for _, column in self.used]
        self.model_position = names.index("canonical_model") if "canonical_model" in names else None
        self.spec_positions = [(name, names.index(name)) for name in MODEL_SPEC_COLUMNS if name in names]
        self.insert_sql = (
            f"INSERT INTO scored_listings ({', '.join(names)}, import_id, import_index) "
            f"VALUES ({', '.join('?' for _ in names)}, '{self.import_id}', ?)"
        )

    def _read_header(self, header: List[str]) -> List[dict]:
        errors = []
        seen: Dict[str, int] = {}
        loc = "Line 1" if self.record_label is None else "Records"
        line = 1 if self.record_label is None else None
        if not any(name.strip() for name in header):
            return [
                _error(
                    line, None, None, f"{loc}: the header is empty; expected column names such as {CSV_HEADER_EXAMPLE}"
                )
            ]
        for position, raw_name in enumerate(header):
            name = raw_name.strip()
            if name in seen:
                errors.append(
                    _error(
                        line,
                        name,
                        None,
                        f"{loc}: column {name} appears more than once in the header "
                        f"(fields {seen[name] + 1} and {position + 1})",
                    )
                )
                continue
            seen[name] = position
            if name in COLUMNS:
                self.used.append((position, COLUMNS[name]))
            else:
                self.ignored.append(name)
        for name in REQUIRED_COLUMNS:
            if name not in seen:
                where = "from the header" if self.record_label is None else "from every record"
                errors.append(_error(line, name, None, f"{loc}: required column {name} is missing {where}"))
        return errors

    def fail(self, error: dict) -> None:
        if len(self.errors) < self.max_errors:
            self.errors.append(error)
        else:
            self.more += 1

    def _where(self, location: int, column: Optional[str] = None) -> Tuple[Optional[int], str]:
        if self.record_label is None:
            prefix = f"Line {location}"
            line = location
        else:
            prefix = f"{self.record_label} {location}"
            line = None
        return line, prefix + (f", column {column}" if column else "")

    def add(
        self,
        rows: List[List[str]],
        first_location: int,
        locations: Optional[List[int]] = None,
        problems: Optional[List[Tuple[int, int, dict]]] = None,
    ) -> None:
        """Validate rows and write them if nothing has failed so far.

        Records start at ``first_location`` (CSV: physical lines, worked out from the rows) or at the
        given ``locations``; ``problems`` are ``(location, field, error)`` found before typing.
        """
        found = list(problems or [])
        if rows and locations is None and len(rows) != list(map(len, rows)).count(self.width):
            locations = _start_lines(rows, first_location)
        if rows and locations is not None:
            kept, kept_locations = [], []
            for row, location in zip(rows, locations):
                if len(row) == self.width:
                    kept.append(row)
                    kept_locations.append(location)
                elif row:  # a blank line is no record
                    line, where = self._where(location)
                    message = f"{where}: expected {self.width} fields as in the header, found {len(row)}"
                    found.append((location, -1, _error(line, None, None, message)))
            rows, locations = kept, kept_locations
        typed = []
        if rows:
            columns = list(zip(*rows))
            for position, column in self.used:
                values, bad = column.convert(columns[position])
                typed.append(values)
                if bad and locations is None:
                    locations = _start_lines(rows, first_location)
                for index, message in bad:
                    line, where = self._where(locations[index], column.name)
                    error = _error(line, column.name, columns[position][index], f"{where}: {message}")
                    found.append((locations[index], position, error))
        # Report in file order, whatever order the columns were checked in.
        for _, _, error in sorted(found, key=lambda item: item[:2]):
            self.fail(error)
        if rows and not self.errors:
            self._write(rows, typed)

    def _write(self, rows: List[List[str]], typed: List[Sequence]) -> None:
        models = typed[self.model_position]
        if self.first_model is None:
            self.first_model = models[0]
        self.last_model = models[-1]
        for model in dict.fromkeys(models):
            if model not in self.known_models:
                self.known_models.add(model)
                self._add_model(model, typed, models.index(model))
        start = self.record_count + 1
        self.record_count += len(rows)
        self.conn.executemany(self.insert_sql, zip(*typed, range(start, self.record_count + 1)))

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


def _set_field_limit() -> None:
    # The limit is process-wide in the csv module; every import sets the same value.
    csv.field_size_limit(MAX_FIELD_CHARS)


class _ImportCache:
    """A bigger page cache for the length of one import."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.cache_size = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        self.conn.execute(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")
        return self

    def __exit__(self, *exc_info):
        self.conn.execute(f"PRAGMA cache_size = {int(self.cache_size)}")
        return False


def _run(
    conn: sqlite3.Connection,
    header: List[str],
    chunks: Iterator[tuple],  # (rows, first location, locations or None, problems or None)
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
) -> ImportResult:
    batch = _Batch(conn, header, max_errors, record_label)
    if batch.header_errors:
        raise ImportFailed(batch.header_errors[:max_errors], max(0, len(batch.header_errors) - max_errors))
    with _ImportCache(conn), transaction(conn, "glyph_import"):
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
        for rows, first_location, locations, problems in chunks:
            batch.add(rows, first_location, locations, problems)
        fatal = fatal_check() if fatal_check else None
        if fatal is not None:
            batch.fail(fatal)
        if not batch.errors and batch.record_count == 0:
            where = "The file has a header but no rows" if record_label is None else "No records to import"
            batch.fail(_error(None, None, None, where))
        if batch.errors:
            raise ImportFailed(batch.errors, batch.more)
        sha256, size = digest()
        finished = _utcnow()
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
        # The per-model summary, read back from the rows just written (contiguous in rowid: sequential reads).
        # SQLite's sorter takes memory in proportion to cache_size, so the sorts run with a small cache and
        # spill to disk: memory stays flat whatever the file's size. (Keeping the prices in Python instead
        # cost 8 bytes a row: +15 MB of peak RSS at a million rows.)
        conn.execute(f"PRAGMA cache_size = -{SUMMARY_CACHE_KIB}")
        summarise_import(conn, batch.import_id)
        previous = conn.execute(PREVIOUS_BATCH_SQL, {"sha256": sha256, "import_id": batch.import_id}).fetchone()
    return ImportResult(
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
        ignored_columns=batch.ignored,
        previous_import_id=previous[0] if previous else None,
    )


def import_csv(
    conn: sqlite3.Connection,
    source: Union[str, os.PathLike, BinaryIO],
    *,
    filename: Optional[str] = None,
    source_name: Optional[str] = None,
    description: Optional[str] = None,
    actor: Optional[str] = None,
    progress: Optional[Callable[[int], None]] = None,
    max_errors: int = 50,
) -> ImportResult:
    """Import one scored listings CSV file (a path, or a binary file object) as a new batch.

    ``filename`` is recorded as the file's name (default: the path as given). ``progress`` is called
    with the number of bytes read so far. Raises ImportFailed, having written nothing, if any record
    is invalid.
    """
    started = _utcnow()
    _set_field_limit()
    with contextlib.ExitStack() as stack:
        if isinstance(source, (str, os.PathLike)):
            raw_source = stack.enter_context(open(source, "rb", buffering=0))
            filename = os.fspath(source) if filename is None else filename
        else:
            raw_source = source
        hashing = _HashingReader(raw_source, progress)
        stream = io.BufferedReader(hashing, READ_BUFFER_BYTES)
        try:
            csv_source = _CsvSource(stream)
            if csv_source.empty:
                raise ImportFailed(
                    [_error(None, None, None, "The file is empty (0 bytes); expected a CSV header and rows")]
                )
            header = csv_source.header()
        except _Fatal as e:
            raise ImportFailed([e.error]) from None
        pending: List[Optional[_Fatal]] = [None]

        def chunks():
            while True:
                first_line = csv_source.lines_read + 1
                rows, fatal = csv_source.chunk(CHUNK_ROWS)
                yield rows, first_line, None, None
                if fatal is not None:
                    pending[0] = fatal
                    return
                if len(rows) < CHUNK_ROWS:
                    return

        def digest():
            stream.read()  # anything after the last record (normally nothing) belongs to the file too
            return hashing.sha256.hexdigest(), hashing.count

        return _run(
            conn,
            header,
            chunks(),
            started=started,
            filename=filename,
            source_name=source_name,
            description=description,
            actor=actor,
            max_errors=max_errors,
            digest=digest,
            fatal_check=lambda: pending[0].error if pending[0] else None,
        )


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise _Bad(f"{_quote(json.dumps(value, default=str))} is not a single value")


def import_records(
    conn: sqlite3.Connection,
    records: list,
    *,
    source_name: Optional[str] = None,
    description: Optional[str] = None,
    actor: Optional[str] = None,
    filename: Optional[str] = None,
    max_errors: int = 50,
) -> ImportResult:
    """Import a list of listing objects (the older JSON payload; keys as the CSV columns) as a new batch.

    Same validation and write path as :func:`import_csv`; errors name the record (1-based) instead of a
    line. ``sha256`` and ``bytes`` describe the records as canonical JSON (sorted keys, no spaces).
    """
    started = _utcnow()
    if not isinstance(records, list):
        raise ImportFailed([_error(None, None, None, "Expected a list of listing objects")])
    if not records:
        raise ImportFailed([_error(None, None, None, "No records to import: the list is empty")])
    header = list(dict.fromkeys(key for record in records if isinstance(record, dict) for key in record))
    payload = json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode(
        "utf-8"
    )

    def chunks():
        for start in range(0, len(records), CHUNK_ROWS):
            rows, locations, problems = [], [], []
            for number, record in enumerate(records[start : start + CHUNK_ROWS], start + 1):
                if not isinstance(record, dict):
                    message = f"Record {number}: expected an object, found {_json_type(record)}"
                    problems.append((number, -1, _error(None, None, None, message)))
                    continue
                row, bad = [], []
                for position, key in enumerate(header):
                    try:
                        row.append(_cell(record.get(key)))
                    except _Bad as e:
                        value = json.dumps(record[key], default=str)
                        bad.append((number, position, _error(None, key, value, f"Record {number}, column {key}: {e}")))
                if bad:
                    problems.extend(bad)
                else:
                    rows.append(row)
                    locations.append(number)
            yield rows, start + 1, locations, problems

    return _run(
        conn,
        header,
        chunks(),
        started=started,
        filename=filename,
        source_name=source_name,
        description=description,
        actor=actor,
        max_errors=max_errors,
        digest=lambda: (hashlib.sha256(payload).hexdigest(), len(payload)),
        record_label="Record",
    )


def _json_type(value) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, (int, float)) else type(value).__name__
