"""The one column specification of a scored listing: each column's name, whether it is required, its limits and
how its values are parsed and typed. The importer, ``/api/listings``, the sample generator and the tests use it."""

from __future__ import annotations

import datetime
import itertools
import math
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .errors import quote, unusual_characters

# The longest field accepted, in any column (the csv module's field limit). ``notes`` and ``warnings`` may be
# this long; the other text columns have shorter caps (TEXT_CAPS). A longer field means an unclosed quote or a
# file that is not CSV, and is refused rather than read into memory.
MAX_FIELD_CHARS = 4 * 1024 * 1024


# Rows converted and inserted per executemany call: small chunks stay in the CPU caches and keep the GC's work small
# (docs/benchmarks.md, "Tuned constants")
CHUNK_ROWS = 500


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


class BadValue(Exception):
    """One value is invalid; the message completes 'Line N, column C: '."""


# SQLite stores integers in 64 bits; a larger one cannot be written.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _ascii_number(value: str) -> bool:
    # int() and float() also take "2_4", full-width and Arabic-Indic digits; a number here is ASCII digits only.
    return value.isascii() and "_" not in value


def _int_value(value: str) -> int:
    if not _ascii_number(value):
        raise BadValue(f"{quote(value)} is not an integer (digits 0-9 only)")
    try:
        number = int(value)
    except ValueError:
        pass
    else:
        if not INT64_MIN <= number <= INT64_MAX:
            raise BadValue(f"{quote(value)} is too large for an integer column")
        return number
    # A whole number written as a float ("24.0") is what pandas writes for an int column with gaps.
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if math.isfinite(number) and number.is_integer():
        if not INT64_MIN <= number <= INT64_MAX:
            raise BadValue(f"{quote(value)} is too large for an integer column")
        return int(number)
    raise BadValue(f"{quote(value)} is not an integer")


def _real_value(value: str) -> float:
    if not _ascii_number(value):
        raise BadValue(f"{quote(value)} is not a number (digits 0-9, a point and an exponent only)")
    try:
        number = float(value)
    except ValueError:
        raise BadValue(f"{quote(value)} is not a number") from None
    if not math.isfinite(number):
        raise BadValue(f"{quote(value)} is not a finite number")
    return number + 0.0  # -0 is stored as 0


def _price_value(value: str) -> float:
    number = _real_value(value)
    if number < 0:
        raise BadValue(f"{quote(value)} is negative; price must be >= 0")
    return number


def _bool_value(value: str) -> int:
    try:
        return _BOOLEANS[value.strip().lower()]
    except KeyError:
        raise BadValue(f"{quote(value)} is not a boolean (use True/False, true/false, 1/0 or yes/no)") from None


def _model_value(value: str) -> str:
    if not MODEL_RE.match(value):
        raise BadValue(f"{quote(value)} is not an UPPER_SNAKE model id such as H100_PCIE_80GB")
    return value


def _timestamp_value(value: str) -> str:
    if not TIMESTAMP_RE.match(value):
        raise BadValue(f"{quote(value)} is not an ISO 8601 timestamp such as 2025-04-19T06:25:43Z")
    if not _real_date(value):
        raise BadValue(f"{quote(value)} is not a real calendar date")
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
    slow: Optional[Callable[[str], object]]  # one value; raises BadValue; None for free text
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
                        (i, f"a value is required, found {quote(value)}" if value else "a value is required")
                    )
                out.append(None)
                continue
            try:
                if self.max_chars is not None and len(value) > self.max_chars:
                    raise BadValue(
                        f"the value is {len(value):,} characters long; {self.name} takes at most {self.max_chars:,}"
                    )
                out.append(self.slow(value) if self.slow else value)
            except BadValue as e:
                problems.append((i, str(e) + unusual_characters(value)))
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
OPTIONAL_COLUMNS = [c.name for c in COLUMNS.values() if not c.required]


CSV_HEADER_EXAMPLE = ",".join(REQUIRED_COLUMNS)


# Lineage: every row's batch and position in it, assigned by the store, never read from a file. The old store's
# JSON clients send them as null.
LINEAGE_COLUMNS = ("import_id", "import_index")


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
