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
import mmap
import os
import re
import sqlite3
import stat
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import ijson

from . import reading
from .db import StorageError, transaction
from .deltas import record_deltas
from .lineage import summarise_import

# The longest field accepted, in any column (the csv module's field limit). ``notes`` and ``warnings`` may be
# this long; the other text columns have shorter caps (TEXT_CAPS). A longer field means an unclosed quote or a
# file that is not CSV, and is refused rather than read into memory.
MAX_FIELD_CHARS = 4 * 1024 * 1024
# The longest physical line accepted (a header, or a record without quoted newlines). Lines are read in pieces
# of READ_LINE_BYTES and joined, so a record is never cut at a buffer's edge; a line longer than this is refused.
MAX_LINE_BYTES = 16 * 1024 * 1024
READ_LINE_BYTES = 1024 * 1024
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
# Records written by one INSERT statement of many VALUES rows: each execution of a statement has a cost of its own
# (reset, step, updating sqlite_sequence for the AUTOINCREMENT id), paid once for this many rows.
ROWS_PER_STATEMENT = 100
# The bulk path (see _DeferredIndexes): a batch expected to hold at least BULK_MIN_ROWS rows and at least
# bulk_ratio(T) times the T rows already in scored_listings is written without the table's secondary indexes,
# which are then built in one sorted pass each, in the same transaction. Measured (docs/benchmarks.md, "The bulk
# path"): keeping the indexes up to date row by row costs about 40 µs per new row in a table of a million rows and
# 50-60 µs in one of five million (the indexes outgrow the page cache); the bulk path costs less per new row and
# pays for the rebuild in proportion to the whole table. The two cost the same at about 0.11 of a million-row table
# and 0.055 of a five-million-row one (bench_bulk_threshold.py). BULK_RATIOS holds those two points, a little
# above each crossing; between them the ratio follows log(T), and beyond them it stays.
BULK_MIN_ROWS = 100_000
BULK_RATIOS = ((1_000_000, 0.12), (5_000_000, 0.06))
# Helper threads for SQLite's sorter once the rows are written (PRAGMA threads), on a machine of two cores or more.
# Two indexes built again over 6,000,000 rows: 7.8 s with none, 7.1 s with one, 5.7 s with two (10.0 s of CPU);
# a million-row import's summary 1.6-1.9 s against 1.3 s, its deltas 4.5-5.6 s against 4.2 s; 4 MB more memory.
SORT_THREADS = 2 if (os.cpu_count() or 1) > 1 else 0
# Page cache while the bulk path builds the indexes again (KiB): SQLite's sorter takes memory in proportion to it.
# Building scored_listings' five secondary indexes over a million rows: 3.7 s of CPU and 18 MB peak RSS at 2 MiB,
# 5.2 s and 30 MB at 8 MiB, 4.9 s and 79 MB at the import's 32 MiB.
INDEX_BUILD_CACHE_KIB = 2 * 1024
# The batch's size is estimated (from the file's size and the bytes its first rows took) once this many rows
# are read: far enough into the file for the estimate to hold, early enough that most rows take the fast path.
BULK_DECIDE_ROWS = 20_000
# On the bulk path, a single-column index whose column takes at most FEW_VALUES values in a chunk of the batch is
# kept up to date row by row instead of built again (see _DeferredIndexes), unless the table holds fewer than
# FEW_VALUED_KEPT_FROM times the batch's rows. Keeping one costs about 0.36 µs per new row, building it 0.33 µs per
# row of the table: 1,000,000 rows into 5,000,000 took 34.3 s keeping the model, region and condition indexes and
# 41.3 s building all seven; into an empty table, 13.9 s against 13.1 s.
FEW_VALUES = 32
FEW_VALUED_KEPT_FROM = 0.1
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


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if " " <= char <= "~":
        return char
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _quote(value: str) -> str:
    """A value for an error message: shortened, and with every character that is not printable ASCII escaped,
    so that a byte order mark, a zero-width space or a Cyrillic letter that looks Latin can be seen."""
    if len(value) > 60:
        value = value[:60] + "…"
    if value.isascii() and value.isprintable():
        return "'" + value + "'"
    return "'" + "".join(_escape(c) if c != "…" else c for c in value) + "'"


# Names for characters that unicodedata has none for, or whose name does not say what they usually are.
_CHARACTER_NOTES = {
    "\ufeff": "ZERO WIDTH NO-BREAK SPACE, a byte order mark",
    "\x00": "NUL, a zero byte",
    "\t": "a tab",
}


def _character_name(char: str) -> str:
    if char in _CHARACTER_NOTES:
        return _CHARACTER_NOTES[char]
    if "\ud800" <= char <= "\udfff":
        return "a lone surrogate, which is not a character"
    return unicodedata.name(char, "a control character" if unicodedata.category(char) == "Cc" else "unnamed")


def _unusual_characters(value: str) -> str:
    """'' for printable ASCII; else "; it contains \\u041d (CYRILLIC CAPITAL LETTER EN)" for up to three."""
    if value.isascii() and value.isprintable():
        return ""
    found = list(dict.fromkeys(c for c in value if not " " <= c <= "~" and c not in "\n\r"))
    if not found:
        return ""
    named = [f"{_escape(c)} ({_character_name(c)})" for c in found[:3]]
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return "; it contains " + ", ".join(named) + more


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
# Months, days, hours, minutes, seconds and offsets within their ranges; _real_date checks the day of the month.
TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]+)?)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?)?\Z"
)


class _Bad(Exception):
    """One value is invalid; the message completes 'Line N, column C: '."""


# SQLite stores integers in 64 bits; a larger one cannot be written.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _ascii_number(value: str) -> bool:
    # int() and float() also take "2_4", full-width and Arabic-Indic digits; a number here is ASCII digits only.
    return value.isascii() and "_" not in value


def _int_value(value: str) -> int:
    if not _ascii_number(value):
        raise _Bad(f"{_quote(value)} is not an integer (digits 0-9 only)")
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
    if not _ascii_number(value):
        raise _Bad(f"{_quote(value)} is not a number (digits 0-9, a point and an exponent only)")
    try:
        number = float(value)
    except ValueError:
        raise _Bad(f"{_quote(value)} is not a number") from None
    if not math.isfinite(number):
        raise _Bad(f"{_quote(value)} is not a finite number")
    return number + 0.0  # -0 is stored as 0


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
    if not _real_date(value):
        raise _Bad(f"{_quote(value)} is not a real calendar date")
    return value


def _real_date(value: str) -> bool:
    try:
        datetime.date(int(value[:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True


def _fast_ascii(values: Sequence[str]) -> None:
    joined = "".join(values)
    if not joined.isascii() or "_" in joined:
        raise ValueError("not ASCII digits")


def _fast_ints(values: Sequence[str]) -> list:
    _fast_ascii(values)
    numbers = list(map(int, values))
    # A text of 18 characters or fewer is always within 64 bits: the lengths are cheaper to check than the numbers.
    if numbers and max(map(len, values)) > 18 and (min(numbers) < INT64_MIN or max(numbers) > INT64_MAX):
        raise ValueError("out of range")
    return numbers


def _fast_reals(values: Sequence[str]) -> list:
    _fast_ascii(values)
    numbers = list(map(float, values))
    # The sum is infinite or NaN if any number is (or if finite ones overflow it: then the slow path decides).
    if not math.isfinite(sum(numbers)):
        raise ValueError("not finite")
    if numbers and min(numbers) == 0:
        numbers = [number + 0.0 for number in numbers]  # -0 is stored as 0
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
    # The pattern allows days 01-31 in every month and the year 0000; only those can be unreal dates.
    if not all(_real_date(v) for v in values if v[8:10] > "28" or v.startswith("0000")):
        raise ValueError("no such date")
    return values


@dataclass(frozen=True)
class Column:
    """A CSV column the store keeps: its name, whether every row needs it, and how to type it."""

    name: str
    required: bool
    fast: Callable[[Sequence[str]], Sequence]  # whole column at once; raises on any bad value
    slow: Optional[Callable[[str], object]]  # one value; raises _Bad; None for free text
    max_chars: Optional[int] = None  # longest text accepted (TEXT_CAPS)

    def convert(self, values: Sequence[str]) -> Tuple[Sequence, List[Tuple[int, str]]]:
        """Typed values (empty optional cells become None) and the (position, message) of each bad one."""
        if self.max_chars is not None and values and max(map(len, values)) > self.max_chars:
            return self._slowly(values)
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
                if self.max_chars is not None and len(value) > self.max_chars:
                    raise _Bad(
                        f"the value is {len(value):,} characters long; {self.name} takes at most {self.max_chars:,}"
                    )
                out.append(self.slow(value) if self.slow else value)
            except _Bad as e:
                problems.append((i, str(e) + _unusual_characters(value)))
                out.append(None)
        return out, problems


# The longest text each text column takes, in characters (documented in the README). Short labels are ids and
# categories; notes and warnings may be as long as any field (MAX_FIELD_CHARS).
TEXT_CAPS = {
    "canonical_model": 100,
    "condition": 100,
    "region": 100,
    "source_type": 100,
    "generation": 100,
    "form_factor": 100,
    "seller": 1000,
    "title": 2000,
    "source_url": 8192,
    "notes": MAX_FIELD_CHARS,
    "warnings": MAX_FIELD_CHARS,
}


def _required(name, fast, slow) -> Column:
    return Column(name, True, fast, slow, TEXT_CAPS.get(name))


def _optional(name, fast=_fast_text, slow=None) -> Column:
    return Column(name, False, fast, slow, TEXT_CAPS.get(name))


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

    def __init__(self, source, progress: Optional[Callable[[int], None]] = None, copy=None):
        self._source = source
        self._progress = progress
        self._copy = copy  # gets every chunk too: the store of kept originals (files.Original.write)
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
            if self._copy is not None:
                self._copy(view)
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
        self._lines = _whole_lines(stream)
        try:
            first = next(self._lines, None)
        except _LineTooLong:
            raise _Fatal(_line_too_long(1)) from None
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
        except _LineTooLong:
            fatal = _Fatal(_line_too_long(self._reader.line_num + 1))
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


class _LineTooLong(Exception):
    """A physical line is longer than MAX_LINE_BYTES."""


def _csv_chunks(csv_source: _CsvSource) -> Iterator[Tuple[List[List[str]], int, Optional[_Fatal]]]:
    """The records after the header in chunks of CHUNK_ROWS: (rows, the line the first one starts on, the error
    that stopped reading or None). The last chunk is a short one, or the one that met the error."""
    while True:
        first_line = csv_source.lines_read + 1
        rows, fatal = csv_source.chunk(CHUNK_ROWS)
        yield rows, first_line, fatal
        if fatal is not None or len(rows) < CHUNK_ROWS:
            return


def _whole_lines(stream: BinaryIO) -> Iterator[bytes]:
    """The stream's physical lines, each whole however long (up to MAX_LINE_BYTES), ending in b"\\n" but the last.

    Reading a long line in pieces and handing the pieces on as lines would make the csv module end a record
    at each piece: one long record would become several, the later ones made up of the first one's tail.
    """
    read = functools.partial(stream.readline, READ_LINE_BYTES)
    for piece in iter(read, b""):
        if piece.endswith(b"\n"):
            yield piece
            continue
        pieces, size = [piece], len(piece)
        while not piece.endswith(b"\n"):
            piece = read()
            if not piece:
                break
            size += len(piece)
            if size > MAX_LINE_BYTES:
                raise _LineTooLong()
            pieces.append(piece)
        yield b"".join(pieces)


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


# A default that names the moment (CURRENT_TIMESTAMP, datetime('now'), ...), as the old store gives created_at
# and updated_at.
_MOMENT_RE = re.compile(r"current_(?:timestamp|date|time)\b|'now'", re.IGNORECASE)


def _moment_defaults(conn: sqlite3.Connection, provided: Sequence[str]) -> Dict[str, str]:
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


class _Checks:
    """The checks of one import's records, which need no database: the header, the values of each chunk of
    records, and the errors found (the reading process of ``reading.py`` runs them too)."""

    def __init__(self, header: List[str], max_errors: int, record_label: Optional[str]):
        self.max_errors = max_errors
        self.record_label = record_label  # None: locations are CSV lines; "Record": 1-based positions
        self.errors: List[dict] = []
        self.more = 0
        self.width = len(header)
        self.ignored, self.used = [], []  # used: (position in row, Column)
        self.header_errors = self._read_header(header)

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
            if not name:
                what = f"column {position + 1} of the header" if self.record_label is None else "a key"
                errors.append(
                    _error(
                        line, None, raw_name, f"{loc}: {what} has no name; name every column (or remove the empty ones)"
                    )
                )
                continue
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

    def prepare(
        self,
        rows: List[List[str]],
        first_location: int,
        locations: Optional[List[int]] = None,
        problems: Optional[List[Tuple[int, int, dict]]] = None,
    ) -> Optional[List[Sequence]]:
        """Validate and type rows, without touching the database: the typed columns to write (one sequence per
        column of ``used``), or None once anything has failed. Problems are recorded in ``errors``.

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
            return typed
        return None


class _Batch(_Checks):
    """One import in progress: validates chunks of rows and, while they are all valid, writes them."""

    def __init__(self, conn: sqlite3.Connection, header: List[str], max_errors: int, record_label: Optional[str]):
        super().__init__(header, max_errors, record_label)
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
        names = [column.name for _, column in self.used]
        self.model_position = names.index("canonical_model") if "canonical_model" in names else None
        self.spec_positions = [(name, names.index(name)) for name in MODEL_SPEC_COLUMNS if name in names]
        moments = _moment_defaults(conn, names)
        values = (
            f"({''.join('?, ' for _ in names)}{''.join(v + ', ' for v in moments.values())}'{self.import_id}', ?)"
        )
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
        typed = self.prepare(rows, first_location, locations, problems)
        if typed is not None:
            self.write(typed)

    def write(self, typed: List[Sequence]) -> None:
        """Write prepared records (typed columns, as ``prepare`` returns them), unless something has failed (then
        the batch will be refused anyway)."""
        if self.errors:
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
            sample = {column.name: values for (_, column), values in zip(self.used, typed)}
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
        # Dropping an index frees its pages, and a SQLite built with SECURE_DELETE (as Debian's is) writes zeros over
        # each of them: the seven indexes of a 5,000,000-row table took 5.2 s to drop and commit that way, 0.4 s with
        # secure_delete FAST, which leaves the freed pages as they are. What they hold stays in the table anyway.
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
        finally:
            self.conn.execute(f"PRAGMA cache_size = {int(cache_size)}")


def _set_field_limit() -> None:
    # The limit is process-wide in the csv module; every import sets the same value.
    csv.field_size_limit(MAX_FIELD_CHARS)


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


def _run(conn: sqlite3.Connection, header: List[str], chunks: Iterator[tuple], **options) -> ImportResult:
    """Validate and write ``chunks`` as one batch; see ``_write_batch``.

    However it ends, the chunk generator is closed, so that its frame lets go of the records it holds: a
    refused import's exception, with its traceback, is kept by Datasette's write thread until the next write,
    and would otherwise keep the body's largest values in memory until then.
    """
    try:
        return _write_batch(conn, header, chunks, **options)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        if options.get("original") is not None:
            options["original"].discard()  # a temp file the batch did not keep


def _write_batch(
    conn: sqlite3.Connection,
    header: List[str],
    chunks: Iterator[tuple],  # (rows, first location, locations or None, problems or None); or a reading.Reader
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
    original=None,  # files.Original: the bytes read, made durable and recorded before the batch commits
    before_commit: Optional[Callable[[sqlite3.Connection, "ImportResult"], None]] = None,
    size_hint: Optional[Callable[[int], Optional[int]]] = None,
) -> ImportResult:
    batch = _Batch(conn, header, max_errors, record_label)
    if batch.header_errors:
        raise ImportFailed(batch.header_errors[:max_errors], max(0, len(batch.header_errors) - max_errors))
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
        feed = getattr(chunks, "feed", None)
        if feed is not None:  # a reading.Reader: records read and checked by another process, on another core
            feed(batch)
        else:
            # Read, convert and write in this one thread. Reading and converting on a thread of their own, ahead
            # of the writer, made a million-row import slower (29.8 s against 22.5 s): converting holds the GIL,
            # and the writer, which gives it up for every statement it runs, waited for it again each time.
            for rows, first_location, locations, problems in chunks:
                batch.add(rows, first_location, locations, problems)
        cache.sorting()
        batch.finish_writing()
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
        if original is not None:
            original.keep(conn, batch.import_id, sha256, size)
        # The per-model summary, read back from the rows just written (contiguous in rowid: sequential reads).
        # SQLite's sorter takes memory in proportion to cache_size, so the sorts run with a small cache and
        # spill to disk: memory stays flat whatever the file's size. (Keeping the prices in Python instead
        # cost 8 bytes a row: +15 MB of peak RSS at a million rows.)
        conn.execute(f"PRAGMA cache_size = -{SUMMARY_CACHE_KIB}")
        summarise_import(conn, batch.import_id)
        record_deltas(conn, batch.import_id)  # what changed since the previous import from the same source
        previous = conn.execute(PREVIOUS_BATCH_SQL, {"sha256": sha256, "import_id": batch.import_id}).fetchone()
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
            ignored_columns=batch.ignored,
            previous_import_id=previous[0] if previous else None,
        )
        if before_commit is not None:
            before_commit(conn, result)  # what the caller keeps with the batch, in its transaction
    return result


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
    before_commit: Optional[Callable[[sqlite3.Connection, ImportResult], None]] = None,
    expected_sha256: Optional[str] = None,
    original=None,
) -> ImportResult:
    """Import one scored listings CSV file (a path, or a binary file object) as a new batch.

    ``filename`` is recorded as the file's name (default: the path as given). ``progress`` is called
    with the number of bytes read so far. Raises ImportFailed, having written nothing, if any record
    is invalid; StorageError if the file's SHA-256 is not ``expected_sha256`` (an upload replaced on disk).
    ``original`` (a ``files.Original``) gets the bytes as they are read and keeps them with the batch.
    ``before_commit(conn, result)`` runs inside the import's transaction once every row is written: what it
    writes commits with the batch, and an exception from it rolls the whole import back.
    """
    started = _utcnow()
    _set_field_limit()
    with contextlib.ExitStack() as stack:
        if isinstance(source, (str, os.PathLike)):
            raw_source = stack.enter_context(open(source, "rb", buffering=0))
            filename = os.fspath(source) if filename is None else filename
        else:
            raw_source = source
        if original is not None:
            stack.callback(original.discard)  # a file refused before its rows are read keeps nothing
        copy = original.write if original is not None else None
        size = _file_size(raw_source)
        reader = _start_reader(source, raw_source, size, max_errors, progress, copy)
        if reader is not None:
            stack.callback(reader.close)
            hashing = _HashingReader(raw_source)  # the header, read here too; the reader hashes and copies the file
        else:
            hashing = _HashingReader(raw_source, progress, copy)
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
        read = (0, 1)  # (records, bytes of the file) read so far, for the batch's size estimate

        def chunks():
            nonlocal read
            records = 0
            for rows, first_line, fatal in _csv_chunks(csv_source):
                records += len(rows)
                read = (records, max(1, stream.tell()))
                yield rows, first_line, None, None
                pending[0] = fatal

        def digest():
            if reader is not None:
                return _verified(*reader.digest(), expected_sha256)
            stream.read()  # anything after the last record (normally nothing) belongs to the file too
            return _verified(hashing.sha256.hexdigest(), hashing.count, expected_sha256)

        def fatal_check() -> Optional[dict]:
            if reader is not None:
                return reader.fatal
            return pending[0].error if pending[0] else None

        def size_hint(_rows: int) -> Optional[int]:
            records, position = read if reader is None else reader.read
            return None if size is None else records * size // position

        return _run(
            conn,
            header,
            chunks() if reader is None else reader,
            started=started,
            filename=filename,
            source_name=source_name,
            description=description,
            actor=actor,
            max_errors=max_errors,
            digest=digest,
            fatal_check=fatal_check,
            original=original,
            before_commit=before_commit,
            size_hint=size_hint,
        )


def _start_reader(source, raw_source, size: Optional[int], max_errors: int, progress, copy) -> Optional[reading.Reader]:
    """A second process reading the file (``reading.Reader``), for a large file with a path that names the very
    file being read, from its start; None otherwise (then this process reads it), or if the process cannot start.

    A stream is read there only if it is a plain file as ``open()`` returns it: a stream that decodes what it
    reads (a kept original, gzipped) has the name and the descriptor of a file whose bytes are not the CSV's.
    """
    if size is None or size < reading.PARALLEL_MIN_BYTES:
        return None
    try:
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
        else:
            path = getattr(source, "name", None)
            if type(source) not in (io.BufferedReader, io.FileIO) or not isinstance(path, str) or source.tell():
                return None
        fd = raw_source.fileno()
        named = os.stat(path)
        if reading.file_identity(fd) != (named.st_dev, named.st_ino):
            return None
        return reading.Reader(path, fd, max_errors, progress, copy)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _file_size(source) -> Optional[int]:
    """The size of the file behind a binary stream, or None (a pipe, a socket, a stream without a file)."""
    try:
        info = os.fstat(source.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _verified(sha256: str, count: int, expected_sha256: Optional[str]) -> Tuple[str, int]:
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise StorageError("changed", "the import")
    return sha256, count


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        if not value.isascii() and _has_surrogate(value):
            raise _Bad(f"{_quote(value)} is not text{_unusual_characters(value)}")
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, _Nested):
        raise _Bad(f"'{value.shown}' is {value.kind}, not a single value")
    raise _Bad(f"{_quote(json.dumps(value))} is {_json_type(value)}, not a single value")


def _has_surrogate(text: str) -> bool:
    # JSON may spell half of a surrogate pair ("\ud800") on its own; no encoding can store that.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def import_records(
    conn: sqlite3.Connection,
    records: list,
    *,
    source_name: Optional[str] = None,
    description: Optional[str] = None,
    actor: Optional[str] = None,
    filename: Optional[str] = None,
    max_errors: int = 50,
    original=None,
    before_commit: Optional[Callable[[sqlite3.Connection, ImportResult], None]] = None,
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
    _check_keys(header, max_errors)

    def digest() -> Tuple[str, int]:
        payload = json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(payload).hexdigest(), len(payload)

    return _run(
        conn,
        header,
        _record_chunks(header, enumerate(records, 1)),
        started=started,
        filename=filename,
        source_name=source_name,
        description=description,
        actor=actor,
        max_errors=max_errors,
        digest=digest,
        record_label="Record",
        original=original,
        before_commit=before_commit,
        size_hint=lambda _rows: len(records),
    )


def _check_keys(header: List[str], max_errors: int) -> None:
    bad_keys = [key for key in header if not key.isascii() and _has_surrogate(key)]
    if bad_keys:
        errors = [
            _error(None, None, key, f"Records: the key {_quote(key)} is not text{_unusual_characters(key)}")
            for key in bad_keys[:max_errors]
        ]
        raise ImportFailed(errors, max(0, len(bad_keys) - max_errors))


def _record_chunks(header: List[str], numbered: Iterator[Tuple[int, object]]) -> Iterator[tuple]:
    """Records, numbered from 1, as chunks of rows for ``_run``: one cell per header key, problems found."""
    numbered = iter(numbered)
    while True:
        batch = list(itertools.islice(numbered, CHUNK_ROWS))
        if not batch:
            return
        rows, locations, problems = [], [], []
        for number, record in batch:
            if not isinstance(record, dict):
                message = f"Record {number}: expected an object, found {_json_type(record)}"
                problems.append((number, -1, _error(None, None, None, message)))
                continue
            row, bad = [], []
            for position, key in enumerate(header):
                try:
                    row.append(_cell(record.get(key)))
                except _Bad as e:
                    value = record[key]
                    shown = (
                        value
                        if isinstance(value, str)
                        else value.shown if isinstance(value, _Nested) else json.dumps(value)
                    )
                    bad.append((number, position, _error(None, key, shown, f"Record {number}, column {key}: {e}")))
            if bad:
                problems.extend(bad)
            else:
                rows.append(row)
                locations.append(number)
        yield rows, batch[0][0], locations, problems
        if len(batch) < CHUNK_ROWS:
            return


# --- JSON files, streamed ---------------------------------------------------------------------------
#
# A JSON import body is read from a file, event by event (ijson over the yajl C parser), one record at a
# time: memory stays flat whatever the body's size and shape, and nesting of any depth costs a counter,
# never recursion. Values that are objects or arrays are refused, so their content is skipped, never kept.

# The most distinct keys the records of one body may use, and the longest key: keys are column names.
MAX_JSON_KEYS = 1000
MAX_JSON_KEY_CHARS = 1000
# Arrays and objects nested deeper than this inside a record are refused outright (a record's values are
# single values, so any nesting is refused anyway; this only stops reading sooner).
MAX_JSON_DEPTH = 64
# yajl gathers a long string piece by piece, copying what it has at each piece: with 64 KiB pieces a 10 MB string
# took 1.9 s to read, with 1 MiB pieces 0.12 s.
JSON_READ_BYTES = 1024 * 1024


class InvalidJson(Exception):
    """The body is not a JSON array of records: a syntax error, another top-level value, absurd keys."""


@dataclass(frozen=True)
class _Nested:
    """An object or array where a single value belongs; only what it was is kept."""

    kind: str  # "an object" or "an array"
    shown: str  # "{…}" or "[…]"


_OBJECT, _ARRAY = _Nested("an object", "{…}"), _Nested("an array", "[…]")
_JSON_EVENT_TYPES = {
    "start_map": "an object",
    "start_array": "an array",
    "string": "a string",
    "integer": "a number",
    "double": "a number",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def _skip_container(events) -> None:
    depth = 1
    for event, _ in events:
        if event in ("start_map", "start_array"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidJson(
                    f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
                    "send an array of listing objects whose values are single values"
                )
        elif event in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                return


# yajl, ijson's fast parser, turns an escaped lone surrogate ("\\ud800") into "?", which would store text that
# was never sent; ijson's Python parser keeps it, and the import then refuses it by record and column. The
# Python parser is about 20 times slower, so it reads only bodies that hold such an escape.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE_PAIR = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def _has_lone_surrogate_escape(path: Union[str, os.PathLike]) -> bool:
    """True when the file may spell half a surrogate pair on its own (an escaped backslash may be a false alarm)."""
    if os.path.getsize(path) == 0:
        return False
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
        if not _SURROGATE_ESCAPE.search(view):
            return False
        halves = sum(1 for _ in _SURROGATE_ESCAPE.finditer(view))
        return halves != 2 * sum(1 for _ in _SURROGATE_PAIR.finditer(view))


def _json_error(e: Exception) -> str:
    lines = str(e).splitlines()
    first = lines[0] if lines and lines[0] else "unexpected end of the body"
    if first == "parse error: premature EOF":
        return "the body ends before the JSON does"
    near = lines[1].strip() if len(lines) > 1 else ""
    return f"{first.rstrip('.')} (near {near})" if near else first


def _json_records(stream: BinaryIO, parser=ijson) -> Iterator[Tuple[int, object]]:
    """(number, record) for each element of the top-level array; raises InvalidJson."""
    events = parser.basic_parse(stream, use_float=True, buf_size=JSON_READ_BYTES)
    try:
        first = next(events, None)
        if first is None:
            raise InvalidJson("The request body is not valid JSON: it holds no value")
        if first[0] != "start_array":
            raise InvalidJson(f"Send a JSON array of listing objects, not {_JSON_EVENT_TYPES.get(first[0], first[0])}")
        number = 0
        for event, value in events:
            if event == "end_array":
                break
            number += 1
            if event == "start_map":
                record: dict = {}
                key = None
                for event, value in events:
                    if event == "end_map":
                        break
                    if event == "map_key":
                        key = value
                    elif event == "start_map":
                        _skip_container(events)
                        record[key] = _OBJECT
                    elif event == "start_array":
                        _skip_container(events)
                        record[key] = _ARRAY
                    else:
                        record[key] = value
                yield number, record
            elif event == "start_array":
                _skip_container(events)
                yield number, _ARRAY
            else:
                yield number, value
        for _ in events:  # ijson itself refuses anything but white space after the array
            pass
    except ijson.JSONError as e:
        raise InvalidJson(f"The request body is not valid JSON: {_json_error(e)}") from None


@dataclass
class JsonBody:
    """A JSON import body on disk, read through once: its keys in order of first use and its size."""

    path: str
    header: List[str]
    records: int
    exact_parser: bool = False  # read with ijson's Python parser, which keeps lone surrogates as they were sent

    def records_in(self, stream: BinaryIO) -> Iterator[Tuple[int, object]]:
        return _json_records(stream, ijson.get_backend("python") if self.exact_parser else ijson)


def scan_json(path: Union[str, os.PathLike]) -> JsonBody:
    """Read a JSON import body once, record by record, to learn its keys; raises InvalidJson.

    Checks that it is valid JSON and an array, and that its keys are few and short enough to be columns.
    """
    if os.path.getsize(path) == 0:
        raise InvalidJson("The request body is empty; send a JSON array of listing objects")
    keys: Dict[str, None] = {}
    count = 0
    exact = _has_lone_surrogate_escape(path)
    with open(path, "rb") as f:
        for count, record in JsonBody(os.fspath(path), [], 0, exact).records_in(f):
            if isinstance(record, dict):
                for key in record:
                    if key not in keys:
                        if len(key) > MAX_JSON_KEY_CHARS:
                            raise InvalidJson(
                                f"Record {count}: the key {_quote(key)} is {len(key):,} characters long; "
                                f"a key (a column name) may be at most {MAX_JSON_KEY_CHARS:,}"
                            )
                        if len(keys) >= MAX_JSON_KEYS:
                            raise InvalidJson(f"The records use more than {MAX_JSON_KEYS:,} different keys")
                        keys[key] = None
    return JsonBody(os.fspath(path), list(keys), count, exact)


def import_json(
    conn: sqlite3.Connection,
    body: JsonBody,
    *,
    expected_sha256: Optional[str] = None,
    source_name: Optional[str] = None,
    description: Optional[str] = None,
    actor: Optional[str] = None,
    filename: Optional[str] = None,
    max_errors: int = 50,
    original=None,
    before_commit: Optional[Callable[[sqlite3.Connection, ImportResult], None]] = None,
) -> ImportResult:
    """Import a JSON body scanned by :func:`scan_json` (an array of listing objects) as a new batch.

    The same validation and write path as :func:`import_records`, reading one record at a time. ``sha256``
    and ``bytes`` describe the body as received; StorageError if it is not ``expected_sha256``.
    """
    started = _utcnow()
    if body.records == 0:
        raise ImportFailed([_error(None, None, None, "No records to import: the list is empty")])
    _check_keys(body.header, max_errors)
    with open(body.path, "rb", buffering=0) as raw:
        hashing = _HashingReader(raw, copy=original.write if original is not None else None)
        stream = io.BufferedReader(hashing, JSON_READ_BYTES)

        def digest():
            stream.read()
            return _verified(hashing.sha256.hexdigest(), hashing.count, expected_sha256)

        try:
            return _run(
                conn,
                body.header,
                _record_chunks(body.header, body.records_in(stream)),
                started=started,
                filename=filename,
                source_name=source_name,
                description=description,
                actor=actor,
                max_errors=max_errors,
                digest=digest,
                record_label="Record",
                original=original,
                before_commit=before_commit,
                size_hint=lambda _rows: body.records,
            )
        except InvalidJson:
            raise StorageError("changed", "the import") from None  # it parsed once: the file was changed


def _json_type(value) -> str:
    """What a parsed JSON value is, in JSON's words: an object, an array, a string, a number, a boolean, null."""
    if isinstance(value, _Nested):
        return value.kind
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
