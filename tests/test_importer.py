"""The import engine: CSV and JSON records in, one batch with import_id/import_index out, or nothing at all."""

import csv
import datetime
import hashlib
import io
import json
import math
import re
import threading
import uuid
from pathlib import Path

import pytest

from datasette_glyph.engine import columns, csv_source, importer, json_source
from datasette_glyph.engine.errors import ImportFailed
from datasette_glyph.engine.importer import import_csv, import_records
from datasette_glyph.engine.sqlite import connect

from .support import HEADER, data, database_checksum

SAMPLE = Path(__file__).resolve().parent.parent / "sample" / "scored_sample.csv"
ROW = "A10,24,0,False,150,2397.01,0.6504"
REQUIRED = ("canonical_model", "vram_gb", "mig_support", "nvlink", "tdp_watts", "price", "score")


def rows(conn, import_id, columns=REQUIRED + ("import_index",)):
    sql = f"SELECT {', '.join(columns)} FROM scored_listings WHERE import_id = ? ORDER BY import_index"
    return conn.execute(sql, [import_id]).fetchall()


def error(line, column, value, message):
    return {"line": line, "column": column, "value": value, "message": message}


@pytest.fixture
def seeded(conn):
    """A connection to a database that already holds one batch (the sample file)."""
    import_csv(conn, SAMPLE, filename="scored_sample.csv")
    return conn


# --- What a successful import writes ---------------------------------------------------------------


def test_sample_file_becomes_one_batch(conn):
    before = datetime.datetime.now(datetime.timezone.utc)
    result = import_csv(conn, SAMPLE, source_name="acme", description="first run", actor="alice")
    after = datetime.datetime.now(datetime.timezone.utc)
    content = SAMPLE.read_bytes()
    with open(SAMPLE, newline="", encoding="utf-8") as f:
        expected_models = [r["canonical_model"] for r in csv.DictReader(f)]

    assert str(uuid.UUID(result.import_id, version=4)) == result.import_id
    finished = datetime.datetime.strptime(result.timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc
    )
    assert before <= finished <= after
    assert result.to_dict() == {
        "import_id": result.import_id,
        "record_count": len(expected_models),
        "first_model": expected_models[0],
        "last_model": expected_models[-1],
        "timestamp": result.timestamp,
        "filename": str(SAMPLE),
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
        "source": "acme",
        "description": "first run",
        "actor": "alice",
        "ignored_columns": [],
        "same_content_as": None,
        "previous_import_id": None,
    }
    batch = conn.execute(
        "SELECT import_id, filename, sha256, bytes, source, description, actor, record_count, status,"
        " imported_at, finished_at, started_at <= finished_at, error, rolled_back_at FROM import_batches"
    ).fetchall()
    db_finished = finished.strftime("%Y-%m-%d %H:%M:%S.%f")
    assert batch == [
        (
            result.import_id,
            str(SAMPLE),
            hashlib.sha256(content).hexdigest(),
            len(content),
            "acme",
            "first run",
            "alice",
            len(expected_models),
            "complete",
            db_finished,
            db_finished,
            1,
            None,
            None,
        )
    ]
    assert [r[0] for r in conn.execute("SELECT canonical_model FROM scored_listings ORDER BY id")] == expected_models
    assert [r[0] for r in conn.execute("SELECT import_index FROM scored_listings ORDER BY id")] == list(
        range(1, len(expected_models) + 1)
    )
    assert conn.execute("SELECT COUNT(*) FROM scored_listings WHERE import_id != ?", [result.import_id]).fetchone() == (
        0,
    )
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_every_column_is_typed_and_empty_optional_cells_are_null(conn):
    names = list(columns.COLUMNS)
    source = data(
        ",".join(names),
        'H100_PCIE_80GB,80,7,True,350,21000.5,0.81,new,3,1,"Smith, Lee & Co",US,https://e.com/1,broker,'
        '2025-04-19T06:25:43Z,Hopper,14592,2,5,PCIe,"said ""mint""",price_outlier,"NVIDIA H100, 80GB"',
        "RTX_4090,24,0,no,450,0,87.5,,,,,,,,,,,,,,,,",
    )
    result = import_csv(conn, io.BytesIO(source))
    assert rows(conn, result.import_id, tuple(names) + ("import_index",)) == [
        (
            "H100_PCIE_80GB",
            80,
            7,
            1,
            350,
            21000.5,
            0.81,
            "new",
            3,
            1,
            "Smith, Lee & Co",
            "US",
            "https://e.com/1",
            "broker",
            "2025-04-19T06:25:43Z",
            "Hopper",
            14592,
            2,
            5,
            "PCIe",
            'said "mint"',
            "price_outlier",
            "NVIDIA H100, 80GB",
            1,
        ),
        ("RTX_4090", 24, 0, 0, 450, 0.0, 87.5) + (None,) * 16 + (2,),
    ]
    assert conn.execute("SELECT typeof(price), typeof(score), typeof(nvlink) FROM scored_listings").fetchall() == [
        ("real", "real", "integer"),
        ("real", "real", "integer"),
    ]


def test_absent_optional_columns_take_the_schema_defaults(conn):
    result = import_csv(conn, io.BytesIO(data(HEADER, ROW)))
    assert rows(conn, result.import_id, ("form_factor", "title", "region")) == [("Standard", None, None)]


@pytest.mark.parametrize(
    "source,expected",
    [
        pytest.param(b"\xef\xbb\xbf" + data(HEADER, ROW), [("A10", 24, 0, 0, 150, 2397.01, 0.6504, 1)], id="bom"),
        pytest.param(
            data(HEADER, ROW, ROW, newline="\r\n"),
            [("A10", 24, 0, 0, 150, 2397.01, 0.6504, i) for i in (1, 2)],
            id="crlf",
        ),
        pytest.param(
            data(HEADER, ROW).rstrip(b"\n"), [("A10", 24, 0, 0, 150, 2397.01, 0.6504, 1)], id="no-final-newline"
        ),
        pytest.param(data(HEADER, "", ROW, "", ""), [("A10", 24, 0, 0, 150, 2397.01, 0.6504, 1)], id="blank-lines"),
        pytest.param(
            data("score,price,tdp_watts,nvlink,mig_support,vram_gb,canonical_model", "0.5,10,60,TRUE,1,4,T4"),
            [("T4", 4, 1, 1, 60, 10.0, 0.5, 1)],
            id="column-order-free",
        ),
        pytest.param(
            data(HEADER, "L4,24.0,0,yes,72,1e3,-0.25", "L4, 24 ,0, No ,72,+5,100"),
            [("L4", 24, 0, 1, 72, 1000.0, -0.25, 1), ("L4", 24, 0, 0, 72, 5.0, 100.0, 2)],
            id="number-and-boolean-spellings",
        ),
    ],
)
def test_accepted_variants(conn, source, expected):
    result = import_csv(conn, io.BytesIO(source))
    assert rows(conn, result.import_id) == expected


@pytest.mark.parametrize(
    "word,value",
    [(w, 1) for w in ("True", "true", "TRUE", "1", "yes", "YeS")]
    + [(w, 0) for w in ("False", "false", "0", "no", "NO")],
)
def test_boolean_spellings(conn, word, value):
    result = import_csv(conn, io.BytesIO(data(HEADER, f"A10,24,0,{word},150,1,0.5")))
    assert rows(conn, result.import_id, ("nvlink",)) == [(value,)]


def test_quoted_newlines_and_commas_keep_rows_and_line_numbers(conn):
    source = data(
        HEADER + ",title,notes",
        ROW + ',"two\r\nlines",plain',
        ROW + ',"three\nlines\nhere","with, comma"',
        ROW + ',"quote "" inside",',
    )
    result = import_csv(conn, io.BytesIO(source))
    assert rows(conn, result.import_id, ("title", "notes", "import_index")) == [
        ("two\r\nlines", "plain", 1),
        ("three\nlines\nhere", "with, comma", 2),
        ('quote " inside', None, 3),
    ]
    bad = source + data("A10,24,0,False,150,-1,0.5,x,y")
    with pytest.raises(ImportFailed) as failure:
        import_csv(conn, io.BytesIO(bad))
    assert failure.value.errors == [
        error(8, "price", "-1", "Line 8, column price: '-1' is negative; price must be >= 0")
    ]


def test_unknown_columns_are_ignored_and_named_in_file_order(conn):
    source = data("zeta," + HEADER + ",quantization_capable,import_id", "z," + ROW + ",True,not-mine")
    result = import_csv(conn, io.BytesIO(source))
    assert result.ignored_columns == ["zeta", "quantization_capable", "import_id"]
    assert rows(conn, result.import_id, ("import_id", "import_index")) == [(result.import_id, 1)]


def test_new_models_are_added_once_with_specs_from_their_first_row(conn):
    source = data(
        HEADER + ",generation,cuda_cores",
        "RTX_4090,24,0,False,450,1500,0.5,Ada Lovelace,16384",
        "A10,24,0,False,150,2000,0.5,Ampere,9216",
        "RTX_4090,99,1,True,999,1400,0.6,Other,1",
    )
    first = import_csv(conn, io.BytesIO(source))
    second = import_csv(conn, io.BytesIO(data(HEADER, "L4,24,0,False,72,2400,0.5", "A10,24,0,False,150,1,0.5")))
    models = conn.execute(
        "SELECT model, vram_gb, tdp_watts, mig_support, nvlink, generation, cuda_cores, slot_width,"
        " import_id, import_index FROM models ORDER BY id"
    ).fetchall()
    assert models == [
        ("RTX_4090", 24, 450, 0, 0, "Ada Lovelace", 16384, None, first.import_id, 1),
        ("A10", 24, 150, 0, 0, "Ampere", 9216, None, first.import_id, 2),
        ("L4", 24, 72, 0, 0, None, None, None, second.import_id, 1),
    ]


def test_a_model_already_in_the_store_is_left_alone(conn):
    conn.execute("INSERT INTO import_batches (import_id) VALUES ('old')")
    conn.execute("INSERT INTO models (model, vram_gb, import_id, import_index) VALUES ('A10', 1, 'old', 1)")
    result = import_csv(conn, io.BytesIO(data(HEADER, ROW)))
    assert conn.execute("SELECT model, vram_gb, import_id FROM models").fetchall() == [("A10", 1, "old")]
    assert rows(conn, result.import_id, ("canonical_model",)) == [("A10",)]


def test_reimport_is_a_new_batch_naming_the_previous_one(conn):
    results = [import_csv(conn, SAMPLE) for _ in range(3)]
    other = import_csv(conn, io.BytesIO(data(HEADER, ROW)))
    ids = [r.import_id for r in results]
    assert len(set(ids + [other.import_id])) == 4
    assert [r.same_content_as for r in results + [other]] == [None, ids[0], ids[1], None]
    counts = conn.execute(
        "SELECT import_id, COUNT(*), MIN(import_index), MAX(import_index) FROM scored_listings GROUP BY import_id"
    ).fetchall()
    n = results[0].record_count
    assert sorted(counts) == sorted([(i, n, 1, n) for i in ids] + [(other.import_id, 1, 1, 1)])


def test_file_object_source_and_progress(conn):
    content = SAMPLE.read_bytes()
    seen = []
    result = import_csv(conn, io.BytesIO(content), filename="upload.csv", progress=seen.append)
    assert (result.filename, result.bytes, result.sha256) == (
        "upload.csv",
        len(content),
        hashlib.sha256(content).hexdigest(),
    )
    assert seen == [len(content)]


def test_progress_counts_bytes_as_they_are_read(conn, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "READ_BUFFER_BYTES", 1000)
    path = tmp_path / "big.csv"
    path.write_bytes(data(HEADER, *[ROW] * 200))
    seen = []
    import_csv(conn, path, progress=seen.append)
    size = path.stat().st_size
    assert seen == list(range(1000, size, 1000)) + [size]


def test_a_text_mode_file_is_refused(conn):
    with pytest.raises(TypeError) as failure:
        import_csv(conn, io.StringIO(data(HEADER, ROW).decode()))
    assert str(failure.value) == "import_csv needs a binary file object (open the file with 'rb')"


def test_cache_size_is_restored_after_success_and_failure(conn):
    conn.execute("PRAGMA cache_size = -1234")
    import_csv(conn, io.BytesIO(data(HEADER, ROW)))
    with pytest.raises(ImportFailed):
        import_csv(conn, io.BytesIO(data(HEADER, "A10,x,0,False,150,1,0.5")))
    assert (conn.execute("PRAGMA cache_size").fetchone()[0], conn.in_transaction) == (-1234, False)


def test_inside_an_open_transaction_only_the_import_is_undone(conn):
    conn.execute("BEGIN")
    conn.execute("INSERT INTO import_batches (import_id) VALUES ('kept')")
    with pytest.raises(ImportFailed):
        import_csv(conn, io.BytesIO(data(HEADER, ROW, "A10,x,0,False,150,1,0.5")))
    result = import_csv(conn, io.BytesIO(data(HEADER, ROW)))
    conn.execute("COMMIT")
    assert conn.execute("SELECT import_id FROM import_batches ORDER BY id").fetchall() == [
        ("kept",),
        (result.import_id,),
    ]


# --- Bad input: exact errors, and nothing written --------------------------------------------------

LONG = "x" * (columns.MAX_FIELD_CHARS + 1)
TOO_LONG = f"a field is longer than {columns.MAX_FIELD_CHARS:,} characters (an unclosed quote, or not a CSV file?)"
AS_UTF8 = "save the file as UTF-8"
LATIN_1_OFFSET = len(data(HEADER, ROW)) + len("A10,24,0,False,150,1,0.5,Caf")
BAD_INPUTS = [
    ("empty", b"", [error(None, None, None, "The file is empty (0 bytes); expected a CSV header and rows")]),
    ("header-only", data(HEADER), [error(None, None, None, "The file has a header but no rows")]),
    (
        "header-and-blank-lines",
        data(HEADER, "", "", newline="\r\n"),
        [error(None, None, None, "The file has a header but no rows")],
    ),
    (
        "bom-only",
        b"\xef\xbb\xbf",
        [error(1, None, None, f"Line 1: the header is empty; expected column names such as {HEADER}")],
    ),
    (
        "missing-column",
        data("canonical_model,vram_gb,mig_support,nvlink,tdp_watts,score", "A10,24,0,False,150,0.5"),
        [error(1, "price", None, "Line 1: required column price is missing from the header")],
    ),
    (
        "missing-columns",
        data("Canonical_Model,vram_gb,mig_support,nvlink,tdp_watts,price", "A10,24,0,False,150,1"),
        [
            error(
                1,
                "canonical_model",
                None,
                "Line 1: required column canonical_model is missing from the header; did you mean canonical_model "
                "(the header has Canonical_Model)?",
            ),
            error(1, "score", None, "Line 1: required column score is missing from the header"),
        ],
    ),
    (
        "duplicate-column",
        data(HEADER + ",region, price", ROW + ",US,3"),
        [error(1, "price", None, "Line 1: column price appears more than once in the header (fields 6 and 9)")],
    ),
    (
        "not-an-integer",
        data(HEADER, "A10,24GB,0,False,150,1,0.5"),
        [error(2, "vram_gb", "24GB", "Line 2, column vram_gb: '24GB' is not an integer")],
    ),
    (
        "integer-beyond-64-bits",
        data(HEADER, "A10,99999999999999999999999,0,False,150,1,0.5"),
        [
            error(
                2,
                "vram_gb",
                "99999999999999999999999",
                "Line 2, column vram_gb: '99999999999999999999999' is too large for an integer column",
            )
        ],
    ),
    (
        "float-integer-beyond-64-bits",
        data(HEADER, "A10,24,0,False,1e30,1,0.5"),
        [error(2, "tdp_watts", "1e30", "Line 2, column tdp_watts: '1e30' is too large for an integer column")],
    ),
    (
        "fractional-integer",
        data(HEADER, "A10,24.5,0,False,150,1,0.5"),
        [error(2, "vram_gb", "24.5", "Line 2, column vram_gb: '24.5' is not an integer")],
    ),
    (
        "empty-required",
        data(HEADER, "A10,24,0,False,,1,0.5"),
        [error(2, "tdp_watts", "", "Line 2, column tdp_watts: a value is required")],
    ),
    (
        "blank-required",
        data(HEADER, "A10,24,0,False,150, ,0.5"),
        [error(2, "price", " ", "Line 2, column price: a value is required, found ' '")],
    ),
    (
        "empty-model",
        data(HEADER, ",24,0,False,150,1,0.5"),
        [error(2, "canonical_model", "", "Line 2, column canonical_model: a value is required")],
    ),
    (
        "lowercase-model",
        data(HEADER, "h100 pcie,24,0,False,150,1,0.5"),
        [
            error(
                2,
                "canonical_model",
                "h100 pcie",
                "Line 2, column canonical_model: 'h100 pcie' is not an UPPER_SNAKE model id such as H100_PCIE_80GB",
            )
        ],
    ),
    (
        "negative-price",
        data(HEADER, "A10,24,0,False,150,-0.01,0.5"),
        [error(2, "price", "-0.01", "Line 2, column price: '-0.01' is negative; price must be >= 0")],
    ),
    (
        "nan-price",
        data(HEADER, "A10,24,0,False,150,NaN,0.5"),
        [error(2, "price", "NaN", "Line 2, column price: 'NaN' is not a finite number")],
    ),
    (
        "inf-score",
        data(HEADER, "A10,24,0,False,150,1,inf"),
        [error(2, "score", "inf", "Line 2, column score: 'inf' is not a finite number")],
    ),
    (
        "overflow-score",
        data(HEADER, "A10,24,0,False,150,1,1e999"),
        [error(2, "score", "1e999", "Line 2, column score: '1e999' is not a finite number")],
    ),
    (
        "word-score",
        data(HEADER, "A10,24,0,False,150,1,high"),
        [error(2, "score", "high", "Line 2, column score: 'high' is not a number")],
    ),
    (
        "bad-boolean",
        data(HEADER, "A10,24,0,maybe,150,1,0.5"),
        [
            error(
                2,
                "nvlink",
                "maybe",
                "Line 2, column nvlink: 'maybe' is not a boolean (use True/False, true/false, 1/0 or yes/no)",
            )
        ],
    ),
    (
        "bad-optional-int",
        data(HEADER + ",quantity", ROW + ",a few"),
        [error(2, "quantity", "a few", "Line 2, column quantity: 'a few' is not an integer")],
    ),
    (
        "bad-timestamp",
        data(HEADER + ",seen_at", ROW + ",19/04/2025"),
        [
            error(
                2,
                "seen_at",
                "19/04/2025",
                "Line 2, column seen_at: '19/04/2025' is not an ISO 8601 timestamp such as 2025-04-19T06:25:43Z",
            )
        ],
    ),
    (
        "too-many-fields",
        data(HEADER, ROW + ",extra"),
        [error(2, None, None, "Line 2: expected 7 fields as in the header, found 8")],
    ),
    (
        "too-few-fields",
        data(HEADER, ROW, "A10,24,0"),
        [error(3, None, None, "Line 3: expected 7 fields as in the header, found 3")],
    ),
    (
        "latin-1",
        data(HEADER, ROW) + "A10,24,0,False,150,1,0.5,Café\n".encode("latin-1"),
        [
            error(
                3,
                None,
                None,
                f"Line 3: not valid UTF-8 (byte e9 at byte offset {LATIN_1_OFFSET} of the file); {AS_UTF8}",
            )
        ],
    ),
    (
        "latin-1-header",
        "prix_€,".encode("cp1252") + data(HEADER, ROW),
        [
            error(
                1, None, None, "Line 1: not valid UTF-8 (byte 80 at byte offset 5 of the file); save the file as UTF-8"
            )
        ],
    ),
    (
        "latin-1-after-bom",
        b"\xef\xbb\xbf\xff" + data(HEADER),
        [
            error(
                1, None, None, "Line 1: not valid UTF-8 (byte ff at byte offset 3 of the file); save the file as UTF-8"
            )
        ],
    ),
    (
        "utf-16",
        data(HEADER, ROW).decode().encode("utf-16"),
        [error(1, None, None, "Line 1: this is not a CSV file; it starts like UTF-16 text; save it as UTF-8")],
    ),
    (
        "html",
        data("<!DOCTYPE html>", "<html><body>Not found</body></html>"),
        [error(1, None, "<!DOCTYPE html>\n", "Line 1: this is not a CSV file; it starts like HTML or XML")],
    ),
    (
        "json",
        b'[{"canonical_model": "A10", "price": 1}]',
        [
            error(
                1,
                None,
                '[{"canonical_model": "A10", "price": 1}]',
                "Line 1: this is not a CSV file; it starts like JSON",
            )
        ],
    ),
    (
        "binary-nul",
        b"SQLite format 3\x00\x10\x00\x01\x01",
        [error(1, None, None, "Line 1: this is not a CSV file; it starts like binary data")],
    ),
    (
        "png",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        [
            error(
                1, None, None, "Line 1: not valid UTF-8 (byte 89 at byte offset 0 of the file); save the file as UTF-8"
            )
        ],
    ),
    (
        "unclosed-quote",
        data(HEADER + ",title", ROW + ",fine", ROW + ',"never closed', ROW + ",more"),
        [error(3, None, None, "Line 3: malformed CSV: a quoted field is still open at the end of the file")],
    ),
    (
        "carriage-return-line-ends",
        data(HEADER, ROW, ROW, newline="\r"),
        [
            error(
                1,
                None,
                None,
                "Line 1: malformed CSV: a line ends with a bare carriage return; lines must end with \\n or \\r\\n",
            )
        ],
    ),
    (
        "text-after-closing-quote",
        data(HEADER + ",title", ROW + ',"quoted"tail'),
        [
            error(
                2,
                None,
                None,
                "Line 2: malformed CSV: a closing quote must be followed by a comma or the end of the line",
            )
        ],
    ),
    (
        "absurd-field",
        data(HEADER + ",notes", ROW + ",short", ROW + "," + LONG),
        [
            error(
                3,
                None,
                None,
                f"Line 3: {TOO_LONG}",
            )
        ],
    ),
    (
        "absurd-line-without-newlines",
        data(HEADER) + b"A10," + b"x" * (csv_source.MAX_LINE_BYTES * 2),
        [
            error(
                2,
                None,
                None,
                f"Line 2: longer than {csv_source.MAX_LINE_BYTES:,} bytes (an unclosed quote, or not a CSV file?)",
            )
        ],
    ),
    (
        "errors-in-file-order",
        data(HEADER, "A10,24,0,False,150,1,x", ROW, "A10,y,0,False,150,-1,0.5", "A10,24"),
        [
            error(2, "score", "x", "Line 2, column score: 'x' is not a number"),
            error(4, "vram_gb", "y", "Line 4, column vram_gb: 'y' is not an integer"),
            error(4, "price", "-1", "Line 4, column price: '-1' is negative; price must be >= 0"),
            error(5, None, None, "Line 5: expected 7 fields as in the header, found 2"),
        ],
    ),
]


@pytest.mark.parametrize("source,expected", [pytest.param(s, e, id=i) for i, s, e in BAD_INPUTS])
def test_bad_input_is_refused_and_nothing_changes(seeded, source, expected):
    before = database_checksum(seeded)
    with pytest.raises(ImportFailed) as failure:
        import_csv(seeded, io.BytesIO(source))
    assert (failure.value.errors, failure.value.more) == (expected, 0)
    summary = expected[0]["message"] + (
        f" (and {len(expected) - 1} more error{'s' if len(expected) > 2 else ''})" if len(expected) > 1 else ""
    )
    assert str(failure.value) == summary
    assert database_checksum(seeded) == before


def test_bad_input_from_a_path_is_refused_too(seeded, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(data(HEADER, ROW, "A10,24,0,False,150,-5,0.5"))
    before = database_checksum(seeded)
    with pytest.raises(ImportFailed) as failure:
        import_csv(seeded, path)
    assert failure.value.errors == [
        error(3, "price", "-5", "Line 3, column price: '-5' is negative; price must be >= 0")
    ]
    assert database_checksum(seeded) == before


def test_errors_are_capped_and_the_rest_counted(seeded):
    before = database_checksum(seeded)
    source = data(HEADER, *[f"A10,24,0,False,150,-{i},0.5" for i in range(1, 61)])
    with pytest.raises(ImportFailed) as failure:
        import_csv(seeded, io.BytesIO(source), max_errors=5)
    assert failure.value.errors == [
        error(i + 1, "price", f"-{i}", f"Line {i + 1}, column price: '-{i}' is negative; price must be >= 0")
        for i in range(1, 6)
    ]
    assert failure.value.more == 55
    assert str(failure.value) == "Line 2, column price: '-1' is negative; price must be >= 0 (and 59 more errors)"
    assert database_checksum(seeded) == before


def test_long_values_are_shortened_in_errors(conn):
    value = "9" * 300 + "x"
    with pytest.raises(ImportFailed) as failure:
        import_csv(conn, io.BytesIO(data(HEADER, f"A10,{value},0,False,150,1,0.5")))
    assert failure.value.errors == [
        error(2, "vram_gb", "9" * 200 + "…", f"Line 2, column vram_gb: '{'9' * 60}…' is not an integer")
    ]


def test_line_numbers_across_chunks_with_quoted_newlines(conn, monkeypatch):
    monkeypatch.setattr(columns, "CHUNK_ROWS", 3)
    lines = [HEADER + ",notes"]
    for i in range(1, 11):
        notes = '"a\nb"' if i % 4 == 0 else "n"  # records 4 and 8 take two lines each
        price = "-1" if i in (3, 5, 9) else "1"
        lines.append(f"A10,24,0,False,150,{price},0.5,{notes}")
    with pytest.raises(ImportFailed) as failure:
        import_csv(conn, io.BytesIO(data(*lines)))
    # Record i starts on line i + 1, plus one for each two-line record before it.
    assert [(e["line"], e["value"]) for e in failure.value.errors] == [(4, "-1"), (7, "-1"), (12, "-1")]
    ok = import_csv(conn, io.BytesIO(data(*[line.replace(",-1,", ",1,") for line in lines])))
    assert rows(conn, ok.import_id, ("import_index",)) == [(i,) for i in range(1, 11)]


def test_a_broken_encoding_late_in_a_multi_chunk_file_names_its_line(conn, monkeypatch):
    monkeypatch.setattr(columns, "CHUNK_ROWS", 4)
    good = data(HEADER, *[ROW] * 9)
    with pytest.raises(ImportFailed) as failure:
        import_csv(conn, io.BytesIO(good + b"A10,24,0,False,150,1,0.5\xff\n" + data(ROW)))
    offset = len(good) + len("A10,24,0,False,150,1,0.5")
    assert failure.value.errors == [
        error(
            11,
            None,
            None,
            f"Line 11: not valid UTF-8 (byte ff at byte offset {offset} of the file); save the file as UTF-8",
        )
    ]
    assert conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone() == (0,)


# --- JSON records ----------------------------------------------------------------------------------


def record(**overrides):
    base = {
        "canonical_model": "A10",
        "vram_gb": 24,
        "mig_support": 0,
        "nvlink": False,
        "tdp_watts": 150,
        "price": 2397.01,
        "score": 0.65,
    }
    base.update(overrides)
    return base


def test_records_take_the_same_write_path(conn):
    records = [record(title="first", region=None), record(canonical_model="L4", nvlink="yes", price="10", extra=[1])]
    with pytest.raises(ImportFailed) as failure:
        import_records(conn, records)
    assert failure.value.errors == [
        error(None, "extra", "[1]", "Record 2, column extra: '[1]' is an array, not a single value")
    ]
    records[1].pop("extra")
    records[1]["shade"] = "blue"
    result = import_records(conn, records, source_name="api", actor="bob", description="json")
    payload = json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert (result.record_count, result.first_model, result.last_model, result.ignored_columns) == (
        2,
        "A10",
        "L4",
        ["shade"],
    )
    assert (result.sha256, result.bytes, result.filename) == (hashlib.sha256(payload).hexdigest(), len(payload), None)
    assert rows(conn, result.import_id, REQUIRED + ("title", "region", "import_index")) == [
        ("A10", 24, 0, 0, 150, 2397.01, 0.65, "first", None, 1),
        ("L4", 24, 0, 1, 150, 10.0, 0.65, None, None, 2),
    ]
    reordered = [dict(reversed(list(r.items()))) for r in records]
    assert import_records(conn, reordered).same_content_as == result.import_id


@pytest.mark.parametrize(
    "records,expected",
    [
        ([], [error(None, None, None, "No records to import: the list is empty")]),
        ({"canonical_model": "A10"}, [error(None, None, None, "Expected a list of listing objects")]),
        ([record(), "A10"], [error(None, None, None, "Record 2: expected an object, found a string")]),
        (
            [record(vram_gb=True)],
            [error(None, "vram_gb", "True", "Record 1, column vram_gb: 'True' is not an integer")],
        ),
        (
            [record(price=-3)],
            [error(None, "price", "-3", "Record 1, column price: '-3' is negative; price must be >= 0")],
        ),
        (
            [record(score=float("nan"))],
            [error(None, "score", "nan", "Record 1, column score: 'nan' is not a finite number")],
        ),
        (
            [record(), record(tdp_watts=None)],
            [error(None, "tdp_watts", "", "Record 2, column tdp_watts: a value is required")],
        ),
        (
            [record(), {k: v for k, v in record().items() if k != "score"}],
            [error(None, "score", "", "Record 2, column score: a value is required")],
        ),
        (
            [{k: v for k, v in record().items() if k != "price"}],
            [error(None, "price", None, "Records: required column price is missing from every record")],
        ),
        (
            [record(nvlink={"a": 1}), None, record(price="x")],
            [
                error(
                    None, "nvlink", '{"a": 1}', "Record 1, column nvlink: '{\"a\": 1}' is an object, not a single value"
                ),
                error(None, None, None, "Record 2: expected an object, found null"),
                error(None, "price", "x", "Record 3, column price: 'x' is not a number"),
            ],
        ),
    ],
)
def test_bad_records_are_refused_and_nothing_changes(seeded, records, expected):
    before = database_checksum(seeded)
    with pytest.raises(ImportFailed) as failure:
        import_records(seeded, records)
    assert (failure.value.errors, failure.value.more) == (expected, 0)
    assert database_checksum(seeded) == before


# --- Concurrency -----------------------------------------------------------------------------------


def test_concurrent_imports_each_get_their_own_id_and_contiguous_numbering(db_path, monkeypatch):
    monkeypatch.setattr(columns, "CHUNK_ROWS", 50)  # many chunks each, so that writers would interleave if they could
    files = {
        f"file-{t}": data(
            HEADER + ",source_url", *[f"A10,24,0,False,150,{t}.{i},0.5,https://e.com/{t}/{i}" for i in range(1, 401)]
        )
        for t in range(4)
    }
    results, failures = {}, []
    start = threading.Barrier(len(files))

    def run(name):
        conn = connect(db_path)
        try:
            start.wait()
            results[name] = import_csv(conn, io.BytesIO(files[name]), filename=name)
        except Exception as e:  # reported below; a thread cannot fail the test itself
            failures.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(name,)) for name in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    conn = connect(db_path)
    assert len({r.import_id for r in results.values()}) == 4
    for name, result in results.items():
        t = name.split("-")[1]
        assert rows(conn, result.import_id, ("import_index", "source_url")) == [
            (i, f"https://e.com/{t}/{i}") for i in range(1, 401)
        ]
    batches = conn.execute(
        "SELECT filename, import_id, record_count, status FROM import_batches ORDER BY filename"
    ).fetchall()
    assert batches == [(name, results[name].import_id, 400, "complete") for name in sorted(files)]
    conn.close()


def test_a_failing_import_next_to_a_good_one_leaves_only_the_good_one(db_path):
    good = data(HEADER, *[ROW] * 300)
    bad = data(HEADER, *[ROW] * 299, "A10,24,0,False,150,-1,0.5")
    outcome = {}

    def run(name, source):
        conn = connect(db_path)
        try:
            outcome[name] = import_csv(conn, io.BytesIO(source)).import_id
        except ImportFailed as e:
            outcome[name] = e.errors[0]["line"]
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=args) for args in (("good", good), ("bad", bad))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn = connect(db_path)
    assert outcome["bad"] == 301
    assert conn.execute("SELECT import_id, COUNT(*) FROM scored_listings GROUP BY import_id").fetchall() == [
        (outcome["good"], 300)
    ]
    assert conn.execute("SELECT import_id FROM import_batches").fetchall() == [(outcome["good"],)]
    conn.close()


def test_timestamps_sort_with_sqlite_current_timestamp(conn):
    result = import_csv(conn, io.BytesIO(data(HEADER, ROW)))
    imported_at = conn.execute("SELECT imported_at FROM import_batches").fetchone()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", imported_at)
    assert imported_at == result.timestamp.replace("T", " ").rstrip("Z")


# --- Records longer than any buffer ----------------------------------------------------------------


def test_a_record_longer_than_the_read_buffer_is_one_row(conn):
    notes = "n" * (2 * csv_source.READ_LINE_BYTES + csv_source.READ_LINE_BYTES // 2)  # 2.5 MiB on one line
    source = data(HEADER + ",notes", ROW + "," + notes, ROW + ",short")
    result = import_csv(conn, io.BytesIO(source))
    found = conn.execute("SELECT length(notes), import_index FROM scored_listings ORDER BY import_index").fetchall()
    assert (result.record_count, found) == (2, [(len(notes), 1), (5, 2)])


def test_a_multibyte_record_longer_than_the_read_buffer_is_one_row(conn):
    notes = "é" * (csv_source.READ_LINE_BYTES + 1000)  # 2 bytes each: the line is cut mid-character by the reader
    result = import_csv(conn, io.BytesIO(data(HEADER + ",notes", ROW + "," + notes)))
    found = conn.execute("SELECT notes FROM scored_listings").fetchall()
    assert (result.record_count, found) == (1, [(notes,)])


def test_a_header_longer_than_the_read_buffer_is_read_whole(conn):
    extra = [f"x{i}" for i in range(400_000)]  # about 3 MiB of column names
    header = ",".join(extra[:200_000] + [HEADER] + extra[200_000:])
    row = ",".join([""] * 200_000 + [ROW] + [""] * 200_000)
    result = import_csv(conn, io.BytesIO(data(header, row)))
    assert (result.record_count, result.ignored_columns == extra) == (1, True)
    assert rows(conn, result.import_id) == [("A10", 24, 0, 0, 150, 2397.01, 0.6504, 1)]


def test_a_header_longer_than_any_line_accepted_is_refused(conn):
    header = ("y" * (csv_source.MAX_LINE_BYTES + 10) + "," + HEADER).encode()
    with pytest.raises(ImportFailed) as caught:
        import_csv(conn, io.BytesIO(header + b"\n" + ROW.encode() + b"\n"))
    message = f"Line 1: longer than {csv_source.MAX_LINE_BYTES:,} bytes (an unclosed quote, or not a CSV file?)"
    assert caught.value.errors == [error(1, None, None, message)]


# --- Values mean what they say, in CSV and in JSON alike ------------------------------------------------

NOT_INT = "is not an integer (digits 0-9 only)"
NOT_NUMBER = "is not a number (digits 0-9, a point and an exponent only)"
NOT_TIMESTAMP = "is not an ISO 8601 timestamp such as 2025-04-19T06:25:43Z"
VALUE_CASES = [
    pytest.param("vram_gb", "2_4", f"'2_4' {NOT_INT}", id="underscore-int"),
    pytest.param(
        "vram_gb",
        "２４",
        f"'\\uff12\\uff14' {NOT_INT}; it contains \\uff12 (FULLWIDTH DIGIT TWO), \\uff14 (FULLWIDTH DIGIT FOUR)",
        id="full-width-digits",
    ),
    pytest.param(
        "tdp_watts",
        "١٥٠",
        f"'\\u0661\\u0665\\u0660' {NOT_INT}; it contains \\u0661 (ARABIC-INDIC DIGIT ONE), "
        "\\u0665 (ARABIC-INDIC DIGIT FIVE), \\u0660 (ARABIC-INDIC DIGIT ZERO)",
        id="arabic-indic-digits",
    ),
    pytest.param("price", "1_000.5", f"'1_000.5' {NOT_NUMBER}", id="underscore-price"),
    pytest.param(
        "score", "０.5", f"'\\uff10.5' {NOT_NUMBER}; it contains \\uff10 (FULLWIDTH DIGIT ZERO)", id="full-width-score"
    ),
    pytest.param("seen_at", "2025-13-45T99:99:99Z", f"'2025-13-45T99:99:99Z' {NOT_TIMESTAMP}", id="month-13"),
    pytest.param("seen_at", "2025-04-19T24:00:00Z", f"'2025-04-19T24:00:00Z' {NOT_TIMESTAMP}", id="hour-24"),
    pytest.param("seen_at", "2025-04-19T06:61Z", f"'2025-04-19T06:61Z' {NOT_TIMESTAMP}", id="minute-61"),
    pytest.param("seen_at", "0000-00-00", f"'0000-00-00' {NOT_TIMESTAMP}", id="zero-date"),
    pytest.param("seen_at", "0000-01-01", "'0000-01-01' is not a real calendar date", id="year-zero"),
    pytest.param("seen_at", "2025-02-29", "'2025-02-29' is not a real calendar date", id="february-29"),
    pytest.param(
        "seen_at", "2025-04-31T10:00:00Z", "'2025-04-31T10:00:00Z' is not a real calendar date", id="april-31"
    ),
    pytest.param(
        "seen_at",
        "２０２５-04-19",
        f"'\\uff12\\uff10\\uff12\\uff15-04-19' {NOT_TIMESTAMP}; it contains \\uff12 (FULLWIDTH DIGIT TWO), "
        "\\uff10 (FULLWIDTH DIGIT ZERO), \\uff15 (FULLWIDTH DIGIT FIVE)",
        id="full-width-date",
    ),
    pytest.param(
        "canonical_model",
        "Н100_PCIE_80GB",
        "'\\u041d100_PCIE_80GB' is not an UPPER_SNAKE model id such as H100_PCIE_80GB; "
        "it contains \\u041d (CYRILLIC CAPITAL LETTER EN)",
        id="cyrillic-en",
    ),
    pytest.param(
        "canonical_model",
        "\ufeffH100",
        "'\\ufeffH100' is not an UPPER_SNAKE model id such as H100_PCIE_80GB; "
        "it contains \\ufeff (ZERO WIDTH NO-BREAK SPACE, a byte order mark)",
        id="bom-in-value",
    ),
    pytest.param(
        "canonical_model",
        "H100\u200b",
        "'H100\\u200b' is not an UPPER_SNAKE model id such as H100_PCIE_80GB; it contains \\u200b (ZERO WIDTH SPACE)",
        id="zero-width-space",
    ),
    pytest.param(
        "canonical_model",
        "A" * 101,
        "the value is 101 characters long; canonical_model takes at most 100",
        id="model-too-long",
    ),
    pytest.param(
        "seller", "s" * 1001, "the value is 1,001 characters long; seller takes at most 1,000", id="seller-too-long"
    ),
    pytest.param(
        "source_url",
        "u" * 8193,
        "the value is 8,193 characters long; source_url takes at most 8,192",
        id="url-too-long",
    ),
    pytest.param(
        "title", "t" * 2001, "the value is 2,001 characters long; title takes at most 2,000", id="title-too-long"
    ),
]


def _with(column: str, value: str) -> dict:
    values = dict(zip(REQUIRED, ROW.split(",")))
    values[column] = value
    return values


@pytest.mark.parametrize("column,value,message", VALUE_CASES)
def test_values_that_do_not_mean_what_they_say_are_refused_from_csv(seeded, column, value, message):
    values = _with(column, value)
    before = database_checksum(seeded)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([list(values), list(values.values())])
    with pytest.raises(ImportFailed) as failure:
        import_csv(seeded, io.BytesIO(out.getvalue().encode("utf-8")))
    assert failure.value.errors == [
        error(2, column, value[:200] + ("…" if len(value) > 200 else ""), f"Line 2, column {column}: {message}")
    ]
    assert database_checksum(seeded) == before


@pytest.mark.parametrize("column,value,message", VALUE_CASES)
def test_values_that_do_not_mean_what_they_say_are_refused_from_json(seeded, column, value, message):
    before = database_checksum(seeded)
    with pytest.raises(ImportFailed) as failure:
        import_records(seeded, [record(), _with(column, value)])
    shown = value[:200] + ("…" if len(value) > 200 else "")
    assert failure.value.errors == [error(None, column, shown, f"Record 2, column {column}: {message}")]
    assert database_checksum(seeded) == before


@pytest.mark.parametrize(
    "column,value,stored",
    [
        ("price", "-0", 0.0),
        ("price", "-0.0", 0.0),
        ("score", "-0", 0.0),
        ("seen_at", "2024-02-29T23:59:59Z", "2024-02-29T23:59:59Z"),
        ("seen_at", "2025-12-31 23:59:59.5+14:00", "2025-12-31 23:59:59.5+14:00"),
        ("seen_at", "2025-04-30", "2025-04-30"),
        ("notes", "n" * columns.MAX_FIELD_CHARS, "n" * columns.MAX_FIELD_CHARS),
        ("canonical_model", "A" * 100, "A" * 100),
    ],
)
def test_values_at_the_edges_are_kept(conn, column, value, stored):
    csv_result = import_csv(
        conn, io.BytesIO(data(",".join(_with(column, value)), ",".join(_with(column, value).values())))
    )
    json_result = import_records(conn, [_with(column, value)])
    found = [
        conn.execute(f"SELECT {column} FROM scored_listings WHERE import_id = ?", [r.import_id]).fetchone()[0]
        for r in (csv_result, json_result)
    ]
    assert found == [stored, stored]
    if isinstance(stored, float):
        assert [math.copysign(1, v) for v in found] == [1, 1]  # not -0.0


def test_a_lone_surrogate_in_json_is_refused_by_row_and_column(seeded):
    before = database_checksum(seeded)
    with pytest.raises(ImportFailed) as failure:
        import_records(seeded, [record(), record(seller="a\ud800b")])
    message = (
        "Record 2, column seller: 'a\\ud800b' is not text; "
        "it contains \\ud800 (a lone surrogate, which is not a character)"
    )
    assert failure.value.errors == [error(None, "seller", "a\ud800b", message)]
    assert database_checksum(seeded) == before


def test_a_lone_surrogate_in_a_json_key_is_refused(seeded):
    with pytest.raises(ImportFailed) as failure:
        import_records(seeded, [{**record(), "x\udc00": 1}])
    message = (
        "Records: the key 'x\\udc00' is not text; it contains \\udc00 (a lone surrogate, which is not a character)"
    )
    assert failure.value.errors == [error(None, None, "x\udc00", message)]


def test_empty_header_columns_are_named_by_position(conn):
    with pytest.raises(ImportFailed) as failure:
        import_csv(conn, io.BytesIO(data(HEADER + ",,", ROW + ",,")))
    message = "has no name; name every column (or remove the empty ones)"
    assert failure.value.errors == [
        error(1, None, "", f"Line 1: column 8 of the header {message}"),
        error(1, None, "", f"Line 1: column 9 of the header {message}"),
    ]


def test_a_surrogate_encoded_in_csv_bytes_is_not_utf8(seeded):
    # UTF-8 has no encoding of a lone surrogate: the three bytes CESU-8 would use are refused with their offset.
    source = data(HEADER + ",seller", ROW + ",ok") + b"A10,24,0,False,150,1,0.5,x\xed\xa0\x80y\n"
    offset = source.index(b"\xed")
    with pytest.raises(ImportFailed) as failure:
        import_csv(seeded, io.BytesIO(source))
    message = f"Line 3: not valid UTF-8 (byte ed at byte offset {offset} of the file); save the file as UTF-8"
    assert failure.value.errors == [error(3, None, None, message)]


# --- JSON bodies read from a file, record by record -------------------------------------------------------


def json_file(tmp_path, body: bytes):
    path = tmp_path / "body.json"
    path.write_bytes(body)
    return path


def test_a_json_body_takes_the_same_path_as_a_list_of_records(conn, tmp_path):
    records = [record(), record(canonical_model="L4", nvlink=True, price=10, extra="x")]
    body = json.dumps(records).encode()
    scanned = json_source.scan_json(json_file(tmp_path, body))
    assert (scanned.header, scanned.records, scanned.exact_parser) == (list(records[1]), 2, False)
    from_file = importer.import_json(conn, scanned, expected_sha256=hashlib.sha256(body).hexdigest())
    from_list = import_records(conn, records)
    assert rows(conn, from_file.import_id) == rows(conn, from_list.import_id)
    assert (from_file.sha256, from_file.bytes, from_file.ignored_columns) == (
        hashlib.sha256(body).hexdigest(),
        len(body),
        ["extra"],
    )


@pytest.mark.parametrize(
    "body,message",
    [
        (b"", "The request body is empty; send a JSON array of listing objects"),
        (b'{"a": 1}', "Send a JSON array of listing objects, not an object"),
        (b"null", "Send a JSON array of listing objects, not null"),
        (b"[1] [2]", "The request body is not valid JSON: parse error: trailing garbage (near [1] [2])"),
        (b'[{"a": 1,', "The request body is not valid JSON: the body ends before the JSON does"),
        (
            b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]",
            "The request body nests arrays and objects more than 64 levels deep; "
            "send an array of listing objects whose values are single values",
        ),
        (
            json.dumps([{"k" * 1001: 1}]).encode(),
            f"Record 1: the key '{'k' * 60}…' is 1,001 characters long; a key (a column name) may be at most 1,000",
        ),
        (
            json.dumps([{f"c{i}": 1 for i in range(1001)}]).encode(),
            "The records use more than 1,000 different keys",
        ),
    ],
)
def test_json_bodies_that_are_not_an_array_of_records(tmp_path, body, message):
    with pytest.raises(json_source.InvalidJson) as caught:
        json_source.scan_json(json_file(tmp_path, body))
    assert str(caught.value) == message


def test_a_lone_surrogate_escape_in_a_json_body_is_refused_by_record_and_column(seeded, tmp_path):
    # yajl would read "\ud800" as "?"; the body is read by the exact parser instead.
    body = json.dumps([record(), record(seller="x\ud800"), record(notes="\U0001f600 fine")]).encode()
    scanned = json_source.scan_json(json_file(tmp_path, body))
    before = database_checksum(seeded)
    with pytest.raises(ImportFailed) as failure:
        importer.import_json(seeded, scanned)
    message = (
        "Record 2, column seller: 'x\\ud800' is not text; "
        "it contains \\ud800 (a lone surrogate, which is not a character)"
    )
    assert (scanned.exact_parser, failure.value.errors) == (True, [error(None, "seller", "x\ud800", message)])
    assert database_checksum(seeded) == before


def test_a_json_body_changed_after_it_was_received_is_refused(conn, tmp_path):
    body = json.dumps([record()]).encode()
    path = json_file(tmp_path, body)
    scanned = json_source.scan_json(path)
    path.write_bytes(json.dumps([record(canonical_model="L4")]).encode())
    with pytest.raises(importer.StorageError) as caught:
        importer.import_json(conn, scanned, expected_sha256=hashlib.sha256(body).hexdigest())
    assert (caught.value.kind, conn.execute("SELECT count(*) FROM import_batches").fetchone()[0]) == ("changed", 0)


def test_the_column_checks_hold_at_their_edges(conn):
    """Whole columns are checked at once (lengths for integers, a sum for reals); values at the edges still get the
    answer each would get alone."""

    def row(vram, price, score):
        return f"A10,{vram},0,False,150,{price},{score}"

    good = [
        row("9223372036854775807", "1e308", "0.5"),  # the largest integer; two prices whose sum overflows
        row("-9223372036854775808", "1e308", "-0.0"),
        row("0000000000000000000000042", "0", "0.1"),  # long, and small
    ]
    result = import_csv(conn, io.BytesIO(data(HEADER, *good)))
    assert rows(conn, result.import_id, ("vram_gb", "price", "score")) == [
        (9223372036854775807, 1e308, 0.5),
        (-9223372036854775808, 1e308, 0.0),
        (42, 0.0, 0.1),
    ]
    with pytest.raises(ImportFailed) as failure:
        import_csv(conn, io.BytesIO(data(HEADER, *good, row("9223372036854775808", "1", "nan"))))
    assert failure.value.errors == [
        error(
            5,
            "vram_gb",
            "9223372036854775808",
            "Line 5, column vram_gb: '9223372036854775808' is too large for an integer column",
        ),
        error(5, "score", "nan", "Line 5, column score: 'nan' is not a finite number"),
    ]
