"""The listings query behind ``GET /api/listings``: filter scored listings by model, price and import.

Synchronous functions over a ``sqlite3.Connection``; nothing here imports Datasette. ``ListingQuery.from_params``
turns request parameters into a checked query (raising ``InvalidParameter`` or ``ConflictingParameters``),
``find_listings`` runs it. ``resolve_model`` is the one rule for what a typed model text stands for, used by
``model=`` here, by ``GET /api/models?q=`` and by any page where a model is typed.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from typing import List, Mapping, Optional, Tuple

from rapidfuzz import fuzz, process

from .columns import LINEAGE_COLUMNS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS

REQUIRED_FIELDS = tuple(REQUIRED_COLUMNS)
# The old store's API lists the title first among the optional fields.
OPTIONAL_FIELDS = ("title",) + tuple(name for name in OPTIONAL_COLUMNS if name != "title")
LINEAGE_FIELDS = LINEAGE_COLUMNS
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS + LINEAGE_FIELDS

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


# SQLite's integers (LIMIT, OFFSET, bound values) are signed 64-bit; a larger one cannot even be bound.
INT64_MAX = 2**63 - 1


class InvalidParameter(ValueError):
    """A parameter's value is not acceptable (the API answers 422)."""

    def __init__(self, parameter: str, value: str, message: str):
        super().__init__(f"{parameter}: {message} (got {value!r})")
        self.parameter = parameter
        self.value = value


class ConflictingParameters(ValueError):
    """Parameters are each fine but contradict each other (the API answers 400)."""


def _number(params: Mapping[str, str], name: str) -> Optional[float]:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidParameter(name, raw, "must be a number") from None
    if not math.isfinite(value):
        raise InvalidParameter(name, raw, "must be a finite number")
    if value < 0:
        raise InvalidParameter(name, raw, "must be >= 0")
    return value


def parse_int(params: Mapping[str, str], name: str, default: int, minimum: int, maximum: Optional[int] = None) -> int:
    """An integer parameter in ``minimum..maximum``; InvalidParameter otherwise; ``default`` when absent or empty."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(name, raw, "must be an integer") from None
    if maximum is not None:
        if not minimum <= value <= maximum:
            raise InvalidParameter(name, raw, f"must be between {minimum} and {maximum}")
    elif value < minimum:
        raise InvalidParameter(name, raw, f"must be >= {minimum}")
    elif value > INT64_MAX:
        raise InvalidParameter(name, raw, f"must be at most {INT64_MAX}")
    return value


@dataclass(frozen=True)
class ListingQuery:
    model: Optional[str] = None  # a typed model, resolved by resolve_model
    min_price: Optional[float] = None
    max_price: Optional[float] = None
    import_id: Optional[str] = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "ListingQuery":
        """Check request parameters; an empty value counts as not given."""
        min_price = _number(params, "min_price")
        max_price = _number(params, "max_price")
        if min_price is not None and max_price is not None and min_price > max_price:
            raise ConflictingParameters(f"min_price ({min_price:g}) is greater than max_price ({max_price:g})")
        return cls(
            model=model_text(params),
            min_price=min_price,
            max_price=max_price,
            import_id=params.get("import_id") or None,
            limit=parse_int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
            offset=parse_int(params, "offset", 0, 0),
        )


def model_text(params: Mapping[str, str], name: str = "model") -> Optional[str]:
    """A typed model text from ``params[name]``; None when absent or empty, InvalidParameter if it holds a NUL
    (no model does, and SQLite's text functions stop reading at one)."""
    raw = params.get(name) or None
    if raw is not None and "\x00" in raw:
        raise InvalidParameter(name, raw, "must not contain a NUL character")
    return raw


# Model matching ----------------------------------------------------------------------------------------------
#
# What a typed model text stands for, resolved against the small ``models`` table (one row per model, whatever
# the number of listings), in four steps; the first that finds anything wins:
#
# 1. exact: the text is a canonical_model;
# 2. contains: ignoring case, spaces, ``-``, ``_`` and every other character that is not a letter or digit,
#    every model that contains the text (``rtx 4090``, ``RTX4090`` and ``4090`` find RTX_4090);
# 3. fuzzy: the model(s) with the best RapidFuzz score, if it is at least FUZZY_THRESHOLD, among the models whose
#    numbers agree with the text's (below);
# 4. nothing.
#
# The fuzzy score is the better of two RapidFuzz measures (0..100) on the texts with an O among digits read as 0:
# ``fuzz.ratio`` of the letters and digits run together (typos: ``RXT 4090``, ``H1OO_PCIE_80GB``) and
# ``fuzz.token_sort_ratio`` of their words and numbers (order: ``A100 PCIe 80GB`` for A100_80GB_PCIE).
# Spelling is forgiven, numbers are not: every number in the text must be one of the model's numbers and, where
# the text writes one or two letters straight before it (``H100``, ``A6000``, ``MI300``), the model must have
# the same letters there. Without that rule the nearest spelling of a GPU the database does not hold is another
# GPU: ``RTX 4080`` scores 87.5 against RTX_3080 and RTX_4090, ``A100 80GB SXM4`` 94.1 against A100_40GB_SXM4;
# and where a model is held, a near neighbour can beat it (``A100 PCIe 80GB``: 100 for A100_80GB_PCIE, 91.7 for
# H100_PCIE_80GB), so without the rule the neighbour wins as soon as the model is missing.
#
# The threshold, from benchmarks/bench_model_match.py on the sample's 23 models: all 223 misspellings that only
# this step can resolve (a letter dropped, doubled, replaced or swapped, O for 0, words reordered, G for GB)
# score 87.5 or more for their own model; of 116 texts naming other GPUs, the highest refused scores 77.4
# (``H100 PCIE 94GB`` against H100_NVL_94GB) and seven are accepted, all near enough to be what people mean or
# mistake (``RTX 4000`` finds RTX_A4000, ``RTX 4090D`` RTX_4090) except ``RTX 6000 Quadro``, which finds
# RTX_6000_ADA at 81.5. The old store took a plain fuzzy best match at 70.
FUZZY_THRESHOLD = 80
FUZZY_CANDIDATES = 5  # nearest spellings a ModelMatch reports, to show why a text matched or did not

# MATCHABLE_TEXT: a text longer than every model can match none, whatever the step, so it is answered at once, never
# scored. Steps 1 and 2 need the text to be (part of) a model. Step 3's two RapidFuzz measures are both Indel
# similarities, at most 2 * m / (t + m) for texts of t and m characters, and the text's words hold at least its t
# letters and digits: a score of FUZZY_THRESHOLD (80) needs t <= 1.5 * m, with m the model's words (``rtx 4090``).
# So a text with more letters and digits than 1.5 times the longest model's words (``longest_match``) is
# answered "none" without a fuzzy match; a 126,000-character text used to hold a read thread for seconds.

_LETTERS = r"[^\W\d_]"
# Python's \w is str.isalnum() and the underscore, so this is every character that is not a letter or digit.
_NOT_LETTERS_OR_DIGITS = re.compile(r"[\W_]+")
_WORDS = re.compile(rf"{_LETTERS}+|\d+")
# a number, with the one or two letters that start a word right before it (H100, A6000, MI300; not SXM5's M)
_NUMBERS = re.compile(rf"((?<!{_LETTERS}){_LETTERS}{{1,2}})?(\d+)")
_DIGITS_AND_OS = re.compile(r"[\do]*\d[\do]*")


def normalize_model(text: str) -> str:
    """The letters and digits of ``text``, case-folded: what step 2 compares (``RTX-4090`` -> ``rtx4090``)."""
    return _NOT_LETTERS_OR_DIGITS.sub("", unicodedata.normalize("NFKC", text).casefold())


def longest_match(known_words: int) -> int:
    """The most letters and digits a text can have and still match a model whose words take ``known_words``
    characters (see ``KnownModels.longest_text``)."""
    return known_words * (200 - FUZZY_THRESHOLD) // FUZZY_THRESHOLD


def longer_than(text: str, limit: int) -> bool:
    """Whether ``normalize_model(text)`` has more than ``limit`` characters, normalising no more of ``text`` than
    it takes to know: NFKC makes up to 18 characters of one (U+FDFA), so a long text is settled by its start.

    Normalising a start can count at most one character more than it gives in the whole text (the last one may
    compose with the next), hence the ``+ 1``.
    """
    if len(normalize_model(text[: limit + 2])) > limit + 1:
        return True
    return len(normalize_model(text)) > limit


def _fold(text: str) -> str:
    """Case-folded, with an O that sits among digits read as a zero (``H1OO`` -> ``h100``, ``Quadro`` unchanged)."""
    return _DIGITS_AND_OS.sub(lambda m: m.group(0).replace("o", "0"), unicodedata.normalize("NFKC", text).casefold())


def _numbers(folded: str) -> Tuple[Tuple[str, str], ...]:
    return tuple((m.group(1) or "", m.group(2)) for m in _NUMBERS.finditer(folded))


def _numbers_agree(text_numbers, model_numbers) -> bool:
    return all(
        any(number == n and (prefix == "" or prefix == p) for p, n in model_numbers) for prefix, number in text_numbers
    )


@dataclass(frozen=True)
class _Spelling:
    """A text prepared once for matching."""

    normalized: str  # step 2
    run_together: str  # folded, letters and digits only: fuzz.ratio
    words: str  # folded, words and numbers split apart: fuzz.token_sort_ratio
    numbers: Tuple[Tuple[str, str], ...]  # (letters before it or "", number)

    @classmethod
    def of(cls, text: str) -> "_Spelling":
        folded = _fold(text)
        return cls(
            normalized=normalize_model(text),
            run_together="".join(c for c in folded if c.isalnum()),
            words=" ".join(_WORDS.findall(folded)),
            numbers=_numbers(folded),
        )


@dataclass(frozen=True)
class KnownModels:
    """Every model of a database, each prepared for matching."""

    names: Tuple[str, ...]
    spellings: Tuple[_Spelling, ...]
    run_together: Tuple[str, ...]  # each spelling's, as RapidFuzz's batch scorers want them
    words: Tuple[str, ...]
    # The most letters and digits a text may have and still match one of these models (MATCHABLE_TEXT).
    longest_text: int = 0


# The models table's names in one value, a JSON array: the cache key.
_KNOWN_MODELS_SQL = "SELECT json_group_array(model) FROM (SELECT model FROM models ORDER BY model)"


@functools.lru_cache(maxsize=16)
def prepare_models(names_json: str) -> KnownModels:
    names = tuple(str(name) for name in json.loads(names_json))
    spellings = tuple(_Spelling.of(name) for name in names)
    return KnownModels(
        names,
        spellings,
        tuple(s.run_together for s in spellings),
        tuple(s.words for s in spellings),
        longest_match(max((len(s.words) for s in spellings), default=0)),
    )


def known_models(conn: sqlite3.Connection) -> KnownModels:
    """The models of ``conn``'s database, prepared for matching.

    The preparation is cached per process and keyed by the names themselves, read in one value on every call, so
    it is never stale: an import that adds a model or a rollback that removes one changes the key. Reading the
    key costs one pass over the small models table (benchmarks/bench_model_match.py has the figures).
    """
    return prepare_models(conn.execute(_KNOWN_MODELS_SQL).fetchone()[0])


@dataclass(frozen=True)
class FuzzyCandidate:
    model: str
    score: float  # 0..100
    numbers_agree: bool  # the model has every number of the text (and the letters written straight before it)


@dataclass(frozen=True)
class ModelMatch:
    """What ``text`` resolves to, and by which step: ``exact``, ``contains``, ``fuzzy`` or ``none``."""

    text: str
    normalized: Optional[str]  # None when the text is too long to match (not normalised past what showed it)
    match: str
    models: Tuple[str, ...]
    candidates: Tuple[FuzzyCandidate, ...] = ()  # the nearest spellings, best first, when step 3 ran
    score: Optional[float] = None  # the fuzzy match's score
    longest_text: Optional[int] = None  # set when the text was too long to match: no step ran (MATCHABLE_TEXT)

    def reason(self) -> str:
        """One sentence saying why ``text`` resolves to ``models``."""
        if self.match == "exact":
            return f"{self.text!r} is a canonical_model"
        if self.match == "contains":
            return f"ignoring case and separators, {self.normalized!r} is part of each of these models"
        if self.longest_text == 0:
            return "there are no models, so no match was attempted"
        if self.longest_text is not None:
            return (
                f"the text has more letters and digits than any model can match ({self.longest_text} at most: "
                "1.5 times the longest model name), so no match was attempted"
            )
        if not self.normalized:
            return "the text has no letters or digits"
        lead = f"no model is named or contains {self.normalized!r}"
        if self.match == "fuzzy":
            return (
                f"{lead}; the nearest spelling with the text's numbers scores {self.score:.1f} of 100 "
                f"(threshold {FUZZY_THRESHOLD},"
                " an O among digits read as 0)"
            )
        if not self.candidates:
            return f"{lead}, and there are no models"
        best = self.candidates[0]
        if best.score >= FUZZY_THRESHOLD:
            # the only way a high score is refused
            return f"{lead}; the nearest spelling, {best.model} ({best.score:.1f} of 100), has other numbers"
        return f"{lead}; the nearest spelling, {best.model}, scores {best.score:.1f} of 100, below {FUZZY_THRESHOLD}"

    def to_dict(self) -> dict:
        return {
            "q": self.text,
            "normalized": self.normalized,
            "match": self.match,
            "models": list(self.models),
            "reason": self.reason(),
            "threshold": FUZZY_THRESHOLD,
            "candidates": [
                {"model": c.model, "score": round(c.score, 1), "numbers_agree": c.numbers_agree}
                for c in self.candidates
            ],
        }


def _fuzzy(text: _Spelling, known: KnownModels) -> tuple:
    """(the best models at or above the threshold whose numbers agree, their score, the nearest spellings)."""
    scorers = (
        (text.run_together, known.run_together, fuzz.ratio),
        (text.words, known.words, fuzz.token_sort_ratio),
    )
    # Only models that one of the scorers puts at or above the threshold, or among its nearest, can matter: the
    # batch scorers find those in C, and only they get the combined score and the number rule.
    wanted = set()
    for query, choices, scorer in scorers:
        wanted.update(i for _, _, i in process.extract(query, choices, scorer=scorer, limit=FUZZY_CANDIDATES))
        wanted.update(
            i for _, _, i in process.extract(query, choices, scorer=scorer, score_cutoff=FUZZY_THRESHOLD, limit=None)
        )
    scored = sorted(
        (
            FuzzyCandidate(
                known.names[i],
                max(scorer(query, choices[i]) for query, choices, scorer in scorers),
                _numbers_agree(text.numbers, known.spellings[i].numbers),
            )
            for i in wanted
        ),
        key=lambda c: (-c.score, c.model),
    )
    passing = [c for c in scored if c.numbers_agree and c.score >= FUZZY_THRESHOLD]
    top = passing[0].score if passing else None
    return tuple(c.model for c in passing if c.score == top), top, tuple(scored[:FUZZY_CANDIDATES])


_EXACT_SQL = (
    "SELECT EXISTS (SELECT 1 FROM models WHERE model = ?)"
    " OR EXISTS (SELECT 1 FROM scored_listings WHERE canonical_model = ?)"
)


def resolve_model(conn: sqlite3.Connection, text: str) -> ModelMatch:
    """The canonical_model values a typed ``text`` stands for, with the step that found them (see above)."""
    # Two index lookups; a listing names a model the models table lacks only where foreign keys were not enforced.
    if conn.execute(_EXACT_SQL, [text, text]).fetchone()[0]:
        return ModelMatch(text, normalize_model(text), "exact", (text,))
    known = known_models(conn)
    if longer_than(text, known.longest_text):  # MATCHABLE_TEXT: no step can find anything, so none is tried
        return ModelMatch(text, None, "none", (), longest_text=known.longest_text)
    spelling = _Spelling.of(text)
    if not spelling.normalized:
        return ModelMatch(text, spelling.normalized, "none", ())
    contained = tuple(
        name for name, model in zip(known.names, known.spellings) if spelling.normalized in model.normalized
    )
    if contained:
        return ModelMatch(text, spelling.normalized, "contains", contained)
    best, score, nearest = _fuzzy(spelling, known)
    return ModelMatch(text, spelling.normalized, "fuzzy" if best else "none", best, nearest, score)


def matching_models(conn: sqlite3.Connection, term: str) -> List[str]:
    """The canonical_model values ``term`` stands for (``resolve_model``'s models)."""
    return list(resolve_model(conn, term).models)


# A price range alone can be read two ways: from the price index, then sorted by id (fast when few rows are in the
# range), or along the table in id order, skipping rows outside it (fast when many are: the first page is found
# early). price_range_plan counts the range's rows in the index, stopping at PRICE_RANGE_PROBE_ROWS, and picks.
# SQLite's planner, without statistics, would take the index whatever the range and sort every row in it.
PRICE_RANGE_PROBE_ROWS = 5_000
PRICE_INDEX = "idx_scored_listings_price"


def price_range_plan(conn: sqlite3.Connection, query: ListingQuery, models: Optional[List[str]] = None) -> str:
    """``"index"`` or ``"scan"``: how the listing query reads a price range (``"scan"`` when another filter leads)."""
    if (query.min_price is None and query.max_price is None) or query.import_id is not None or models is not None:
        return "scan"
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", [PRICE_INDEX]).fetchone():
        return "scan"
    low = query.min_price if query.min_price is not None else float("-inf")
    high = query.max_price if query.max_price is not None else float("inf")
    found = conn.execute(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM scored_listings INDEXED BY {PRICE_INDEX} "
        "WHERE price >= ? AND price <= ? LIMIT ?)",
        [low, high, PRICE_RANGE_PROBE_ROWS],
    ).fetchone()[0]
    return "index" if found < PRICE_RANGE_PROBE_ROWS else "scan"


def listing_sql(query: ListingQuery, models: Optional[List[str]] = None, price_plan: str = "scan") -> tuple:
    """(sql, params) for ``query``; ``models`` is what ``matching_models`` found for ``query.model``;
    ``price_plan`` is ``price_range_plan``'s choice."""
    where, params = [], {}
    if query.import_id is not None:
        where.append("import_id = :import_id")
        params["import_id"] = query.import_id
    if models is not None:
        names = []
        for i, model in enumerate(models):
            params[f"model_{i}"] = model
            names.append(f":model_{i}")
        where.append(f"canonical_model IN ({', '.join(names)})")
    price = "price" if price_plan == "index" else "+price"  # unary + keeps SQLite off the price index
    if query.min_price is not None:
        where.append(f"{price} >= :min_price")
        params["min_price"] = query.min_price
    if query.max_price is not None:
        where.append(f"{price} <= :max_price")
        params["max_price"] = query.max_price
    # Rows are listed by import, then by position in the file. Each import is written in one transaction, in file
    # order, so its rows take consecutive rowids and ``id`` order is exactly that order (tests/test_api_listings.py
    # checks it after concurrent imports). Within one import, ``import_index`` is the same order and lets the
    # (import_id, import_index) index return rows already sorted.
    order = "import_index" if query.import_id is not None else "id"
    table = f"scored_listings INDEXED BY {PRICE_INDEX}" if price_plan == "index" else "scored_listings"
    sql = (
        f"SELECT {', '.join(FIELDS)} FROM {table}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {order} LIMIT :limit OFFSET :offset"
    )
    params.update(limit=query.limit, offset=query.offset)
    return sql, params


def _listing(row: tuple) -> dict:
    listing = {}
    for name, value in zip(FIELDS, row):
        if value is None:
            continue
        if name == "nvlink":
            value = bool(value)
        listing[name] = value
    return listing


def find_listings(conn: sqlite3.Connection, query: ListingQuery, models: Optional[List[str]] = None) -> List[dict]:
    """Listings matching ``query``, each with the required fields, import_id, import_index and the optional
    fields that are not null (nvlink as true/false). ``models`` is what ``query.model`` resolves to, when the
    caller resolved it already."""
    if query.model is not None:
        if models is None:
            models = matching_models(conn, query.model)
        if not models:
            return []
    sql, params = listing_sql(query, models, price_range_plan(conn, query, models))
    return [_listing(row) for row in conn.execute(sql, params)]
