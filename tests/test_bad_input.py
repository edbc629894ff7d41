"""Bad input, sent to a real server: each case of the corpus gets its 4xx and exact message, never a 500, and
the database is byte-for-byte the same afterwards (a checksum of every table). Values that look dangerous but
are valid text (spreadsheet formulas, path tricks in file names) are accepted and stored verbatim."""

from __future__ import annotations

import sqlite3

import pytest

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect

from .bad_input_corpus import GOOD_CSV, MAX_UPLOAD_BYTES, Case, all_cases, csv_bytes, row
from .server import start_server
from .support import database_checksum

CASES = all_cases()


def chunked(body: bytes, size: int = 64 * 1024):
    """``body`` in HTTP/1.1 chunked transfer framing: no Content-Length, so only reading it finds its size."""
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        yield b"%x\r\n" % len(piece) + piece + b"\r\n"
    yield b"0\r\n\r\n"


def send(server, case: Case):
    body = chunked(case.body) if case.headers.get("Transfer-Encoding") == "chunked" else case.body or None
    return server.request(case.method, case.path, body=body, headers=case.headers)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("bad-input")
    db_path = work / "glyph.db"
    conn = connect(db_path)
    migrator.migrate(conn)
    conn.close()
    upload_dir = work / "uploads"
    server = start_server(
        db_path,
        plugin_config={"allow_import": True, "upload_dir": str(upload_dir), "max_upload_bytes": MAX_UPLOAD_BYTES},
        log_dir=work,
    )
    server.upload_dir = upload_dir
    # Something to keep unchanged: one good import
    good = work / "good.csv"
    good.write_bytes(GOOD_CSV)
    answer = server.upload_csv(good)
    assert (answer.status, answer.json()["ok"]) == (200, True), answer.text
    yield server
    server.stop()
    assert "Traceback" not in server.log()


def test_corpus_is_large_and_varied():
    kinds = {c.path.split("?")[0] for c in CASES}
    assert len(CASES) >= 40
    assert kinds == {"/api/import", "/api/listings", "/glyph/scored_listings.json"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(server, case):
    before = database_checksum(server.db_path)
    response = send(server, case)
    after = database_checksum(server.db_path)
    assert (response.status, after) == (case.status, before), response.text[:500]
    if case.messages is not None:
        body = response.json()
        if case.status == 200:
            assert body == case.messages
        else:
            assert body["ok"] is False
            assert [e["message"] if isinstance(e, dict) else e for e in body["errors"]] == case.messages
    assert sorted(p.name for p in server.upload_dir.rglob("*") if p.is_file()) == []


# Spreadsheet formulas are valid text in the optional text columns: stored verbatim, and never evaluated (the
# store has no spreadsheet export; Datasette's CSV export writes them as they are, like any other text).
FORMULAS = ["=cmd|' /C calc'!A0", "+SUM(A1:A9)", "-2+3", "@SUM(1)", '=HYPERLINK("http://example.com","x")', "\t=1+1"]


def test_formula_like_text_is_stored_verbatim(server, tmp_path):
    rows = [row(seller=f, notes=f, title=f, source_url=f"https://example.com/f/{i}") for i, f in enumerate(FORMULAS)]
    path = tmp_path / "formulas.csv"
    path.write_bytes(csv_bytes(rows))
    response = server.upload_csv(path)
    assert response.status == 200, response.text
    import_id = response.json()["import_id"]
    listed = server.get(f"/api/listings?import_id={import_id}").json()
    assert [(r["seller"], r["notes"], r["title"]) for r in listed] == [(f, f, f) for f in FORMULAS]
    conn = sqlite3.connect(server.db_path)
    stored = conn.execute(
        "SELECT seller, notes, title FROM scored_listings WHERE import_id = ? ORDER BY import_index", [import_id]
    ).fetchall()
    conn.close()
    assert stored == [(f, f, f) for f in FORMULAS]


@pytest.mark.parametrize(
    "filename,stored",
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/absolute/path/listings.csv", "listings.csv"),
        ("listings\x00.csv", "listings\x00.csv"),
        ("l" * 4000 + ".csv", "l" * 4000 + ".csv"),
        ('quote".csv', 'quote".csv'),
        ("<script>alert(1)</script>.csv", "script>.csv"),  # "/" makes the rest a directory
    ],
    ids=["dot-dot", "backslashes", "absolute", "NUL", "4,000 chars", "quote", "script"],
)
def test_path_tricks_in_file_names_stay_names(server, tmp_path, filename, stored):
    path = tmp_path / "upload.csv"
    path.write_bytes(GOOD_CSV)
    response = server.upload_csv(path, filename=filename)
    assert response.status == 200, response.text
    body = response.json()
    assert body["filename"] == stored
    batch = server.get(f"/api/imports/{body['import_id']}").json()
    assert batch["filename"] == stored
    # The file went to the upload folder under the server's own name, and is gone
    assert sorted(p.name for p in server.upload_dir.rglob("*") if p.is_file()) == []
