"""POST /api/import: streamed multipart uploads and JSON payloads, every bad request, temp file cleanup, 413,
concurrency; and GET /api/imports, /api/imports/<import_id>."""

import asyncio
import datetime
import hashlib
import json
import socket
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from datasette_test import Datasette, actor_cookie

from datasette_glyph.engine.sqlite import connect
from datasette_glyph.web import uploads

from .json_style import refusal
from .support import (
    BOUNDARY,
    CSV,
    MULTIPART,
    TOKEN_CSRF,
    UPLOAD,
    make_csv,
    multipart,
    open_ds,
    part,
    table_counts,
    temp_files,
    wait_until,
    with_csrf_token,
)


def receiver(body: bytes, chunk_size: int, then_disconnect=False):
    """An ASGI receive callable delivering ``body`` in chunks (then, optionally, a disconnect)."""
    chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)] or [b""]
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    if then_disconnect:
        messages.append({"type": "http.disconnect"})
    else:
        messages[-1]["more_body"] = False

    async def receive():
        return messages.pop(0)

    return receive


def headers_for(body: bytes, content_type=MULTIPART) -> dict:
    return {"content-type": content_type, "content-length": str(len(body))}


# The streaming parser on its own ------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("chunk_size", [1, 7, 100, 65536])
async def test_multipart_upload_streams_the_file_part_to_a_temp_file(tmp_path, chunk_size):
    seen = {}
    async with uploads.multipart_upload(receiver(UPLOAD, chunk_size), headers_for(UPLOAD), tmp_path, 10**6) as up:
        seen = {
            "content": up.path.read_bytes(),
            "files": [p.name for p in temp_files(tmp_path)],
            "filename": up.filename,
            "size": up.size,
            "fields": up.fields,
        }
    assert seen == {
        "content": CSV,
        "files": [up.path.name],
        "filename": "prices.csv",
        "size": len(CSV),
        "fields": {"source": "acme-broker", "description": "nightly run \N{EM DASH} 3 rows"},
    }
    assert up.path.parent == uploads.process_dir(tmp_path)
    assert temp_files(tmp_path) == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "filename,expected",
    [("prices.csv", "prices.csv"), ("C:\\Users\\op\\prices.csv", "prices.csv"), ("a/b/c.csv", "c.csv"), (None, None)],
)
async def test_multipart_upload_keeps_only_the_file_name(tmp_path, filename, expected):
    body = multipart(part("file", CSV, filename=filename))
    async with uploads.multipart_upload(receiver(body, 1000), headers_for(body), tmp_path, 10**6) as up:
        assert (up.filename, up.path.read_bytes()) == (expected, CSV)


TRUNCATED = UPLOAD[: UPLOAD.index(b"RTX_4090")]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body,content_type,max_bytes,status,message",
    [
        (b"", MULTIPART, 10**6, 400, "The request body is empty; send the file as the multipart field 'file'"),
        (TRUNCATED, MULTIPART, 10**6, 400, "The multipart body is truncated: it ends before its closing boundary"),
        (UPLOAD[:-4], MULTIPART, 10**6, 400, "The multipart body is truncated: it ends before its closing boundary"),
        (
            CSV,
            MULTIPART,
            10**6,
            400,
            "Malformed multipart body: it does not follow the boundary given in Content-Type",
        ),
        (
            multipart(part("source", b"x")),
            MULTIPART,
            10**6,
            400,
            "The multipart body has no 'file' field; send the CSV file as 'file'",
        ),
        (
            multipart(part("file", CSV, "a.csv"), part("file", CSV, "b.csv")),
            MULTIPART,
            10**6,
            400,
            "Send one file per request: the body has more than one 'file' part",
        ),
        (
            multipart(part("file", CSV, "a.csv"), part("description", b"x" * (64 * 1024 + 1))),
            MULTIPART,
            10**6,
            400,
            "The form field 'description' is over 65,536 bytes",
        ),
        (
            multipart(part("file", CSV, "a.csv"), part("source", b"\xff\xfe")),
            MULTIPART,
            10**6,
            400,
            "The form field 'source' is not UTF-8 text",
        ),
        (
            f"--{BOUNDARY}\r\nContent-Type: text/csv\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
            MULTIPART,
            10**6,
            400,
            "Malformed multipart body: a part has no Content-Disposition: form-data name",
        ),
        (UPLOAD, "multipart/form-data", 10**6, 400, "Content-Type must be multipart/form-data with a boundary"),
        (UPLOAD, MULTIPART, len(UPLOAD) - 1, 413, f"The request body is over the limit of {len(UPLOAD) - 1:,} bytes"),
    ],
)
async def test_multipart_upload_refuses_bad_bodies_and_leaves_no_file(
    tmp_path, body, content_type, max_bytes, status, message
):
    for chunk_size in (5, 4096):
        with pytest.raises(uploads.UploadError) as info:
            async with uploads.multipart_upload(
                receiver(body, chunk_size), headers_for(body, content_type), tmp_path, max_bytes
            ):
                raise AssertionError("the body should have been refused")
        assert (info.value.status, info.value.message, temp_files(tmp_path)) == (status, message, [])


@pytest.mark.asyncio
async def test_multipart_upload_stops_reading_once_over_the_limit(tmp_path):
    read = []
    body = multipart(part("file", CSV * 1000, "big.csv"))
    inner = receiver(body, 1000)

    async def receive():
        message = await inner()
        read.append(len(message["body"]))
        return message

    with pytest.raises(uploads.UploadError) as info:
        async with uploads.multipart_upload(receive, {"content-type": MULTIPART}, tmp_path, 10_000):
            pass
    assert (info.value.status, sum(read), temp_files(tmp_path)) == (413, 11_000, [])


@pytest.mark.parametrize(
    "content_length,max_bytes,error",
    [
        (None, 10, None),
        ("10", 10, None),
        ("11", 10, (413, "The request body is 11 bytes; the limit is 10 bytes")),
        (
            "536870913",
            512 * 1024 * 1024,
            (413, "The request body is 536,870,913 bytes; the limit is 536,870,912 bytes"),
        ),
        ("ten", 10, (400, "Content-Length is not a number: 'ten'")),
    ],
)
def test_check_content_length(content_length, max_bytes, error):
    headers = {} if content_length is None else {"content-length": content_length}
    try:
        uploads.check_content_length(headers, max_bytes)
        got = None
    except uploads.UploadError as e:
        got = (e.status, e.message)
    assert got == error


def batch_count(db_path) -> int:
    conn = connect(db_path)
    try:
        return conn.execute("SELECT COUNT(*) FROM import_batches").fetchone()[0]
    finally:
        conn.close()


# The endpoint's bad requests -----------------------------------------------------------------------------------


def refused(status, message):
    return status, {"ok": False, "errors": [{"message": message}], "more": 0}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "content_type,body,expected",
    [
        (
            MULTIPART,
            multipart(part("source", b"acme")),
            refused(400, "The multipart body has no 'file' field; send the CSV file as 'file'"),
        ),
        (
            "text/csv",
            CSV,
            refused(
                400,
                "Send multipart/form-data with the CSV file as the field 'file', or application/json; "
                "got Content-Type 'text/csv'",
            ),
        ),
        (
            None,
            CSV,
            refused(
                400,
                "Send multipart/form-data with the CSV file as the field 'file', or application/json; "
                "got no Content-Type",
            ),
        ),
        (
            MULTIPART,
            CSV,
            refused(400, "Malformed multipart body: it does not follow the boundary given in Content-Type"),
        ),
        (MULTIPART, TRUNCATED, refused(400, "The multipart body is truncated: it ends before its closing boundary")),
        (MULTIPART, b"", refused(400, "The request body is empty; send the file as the multipart field 'file'")),
        ("multipart/form-data", UPLOAD, refused(400, "Content-Type must be multipart/form-data with a boundary")),
        (
            "application/json",
            b"",
            refused(400, "The request body is empty; send a JSON array of listing objects"),
        ),
        (
            "application/json",
            b"[{",
            refused(
                400,
                "The request body is not valid JSON: the body ends before the JSON does",
            ),
        ),
        (
            "application/json",
            b'{"canonical_model": "L40S"}',
            refused(400, "Send a JSON array of listing objects, not an object"),
        ),
        (
            MULTIPART,
            UPLOAD + b"x" * 5000,
            refused(413, f"The request body is {len(UPLOAD) + 5000:,} bytes; the limit is 5,000 bytes"),
        ),
        (
            "application/json",
            b"[" + b" " * 3000 + b"]",
            refused(413, "The request body is 3,002 bytes; the limit is 3,000 bytes"),
        ),
    ],
)
async def test_bad_requests_change_nothing(db_path, upload_folder, content_type, body, expected):
    ds = await open_ds(db_path, upload_folder, max_upload_bytes=5000, max_json_bytes=3000)
    headers = {"content-type": content_type} if content_type else {}
    response = await ds.client.post("/api/import", content=body, headers=headers)
    assert (response.status_code, response.json()) == expected
    assert (table_counts(db_path), temp_files(upload_folder)) == ((0, 0, 0), [])


@pytest.mark.asyncio
async def test_chunked_body_over_the_limit_is_refused_without_reading_the_rest(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder, max_upload_bytes=10_000)
    sent = []

    async def chunks():  # no Content-Length: the limit can only be enforced while reading
        yield part("file", b"", filename="big.csv")[:-2]
        for _ in range(100):
            sent.append(1000)
            yield CSV * 6  # 1,000 bytes

    response = await ds.client.post("/api/import", content=chunks(), headers={"content-type": MULTIPART})
    assert (response.status_code, response.json()) == refused(413, "The request body is over the limit of 10,000 bytes")
    assert (sum(sent) < 12_000, table_counts(db_path), temp_files(upload_folder)) == (True, (0, 0, 0), [])


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_import_is_post_only(db_path, upload_folder, method):
    ds = await open_ds(db_path, upload_folder)
    response = await ds.client.request(method, "/api/import")
    assert (response.status_code, response.headers["allow"], response.json()) == (
        405,
        "POST",
        {"ok": False, "errors": [{"message": f"{method} is not allowed here; use POST"}], "more": 0},
    )


@pytest.mark.asyncio
async def test_anonymous_import_is_refused_by_default(db_path, upload_folder):
    ds = Datasette([str(db_path)], plugin_config={"datasette-glyph": {"upload_dir": str(upload_folder)}})
    response = await ds.client.post("/api/import", content=UPLOAD, headers={"content-type": MULTIPART})
    assert (response.status_code, response.json()) == refused(
        403, "An anonymous request may not import: the glyph-import permission is required"
    )
    assert (table_counts(db_path), temp_files(upload_folder)) == ((0, 0, 0), [])


async def call_asgi(ds, method, path, headers, receive):
    """Drive Datasette's ASGI app directly: the only way to make a client vanish half way through a body."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()] + [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }
    sent = []

    async def send(message):
        sent.append(message)

    await ds.app()(scope, receive, send)
    return sent


@pytest.mark.parametrize("sent", ["half", "all but the closing boundary"])
def test_client_disconnect_leaves_no_temp_file_and_no_rows(db_path, upload_folder, sent):
    """A real client on a real socket sends part of an upload to a real server and closes the connection once the
    server has its temp file: the server removes the file, writes nothing, and goes on serving."""
    from .server import running_server

    body = UPLOAD[: len(UPLOAD) // 2] if sent == "half" else UPLOAD[: len(UPLOAD) - 40]
    head = (
        f"POST /api/import HTTP/1.1\r\nHost: localhost\r\nContent-Type: {MULTIPART}\r\n"
        f"Content-Length: {len(UPLOAD)}\r\n\r\n"
    ).encode()
    config = {"allow_import": True, "upload_dir": str(upload_folder)}
    with running_server(db_path, plugin_config=config) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            client.sendall(head + body)
            at_disconnect = wait_until(lambda: temp_files(upload_folder), "the server's temp file of the upload")
        wait_until(lambda: temp_files(upload_folder) == [], "the temp file removed after the disconnect")
        after = server.get("/api/imports")
        log = server.log()
    assert (len(at_disconnect), table_counts(db_path)) == (1, (0, 0, 0))
    assert (after.status, after.json()["total"], "Traceback" in log) == (200, 0, False)


# Imports that succeed ------------------------------------------------------------------------------------------


def rows_of(db_path, import_id) -> list:
    conn = connect(db_path)
    try:
        return conn.execute(
            "SELECT import_index, canonical_model, price, region FROM scored_listings WHERE import_id = ? ORDER BY id",
            [import_id],
        ).fetchall()
    finally:
        conn.close()


def batch_of(db_path, import_id) -> dict:
    conn = connect(db_path)
    try:
        cursor = conn.execute(
            "SELECT filename, source, description, actor, status, record_count, bytes, sha256 FROM import_batches"
            " WHERE import_id = ?",
            [import_id],
        )
        return dict(zip([d[0] for d in cursor.description], cursor.fetchone()))
    finally:
        conn.close()


def check_generated(body: dict) -> dict:
    """Check the two generated values of an import result (a uuid4, a recent UTC timestamp); return the rest."""
    assert uuid.UUID(body["import_id"]).version == 4
    stamp = datetime.datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.timezone.utc) - stamp).total_seconds()) < 60
    return {k: v for k, v in body.items() if k not in ("import_id", "timestamp")}


def expected_links(import_id):
    return {
        "rows": f"/glyph/scored_listings?import_id={import_id}",
        "json": f"/glyph/scored_listings.json?import_id={import_id}",
        "api": f"/api/listings?import_id={import_id}",
    }


@pytest.mark.asyncio
async def test_multipart_import(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    seen_during_import = []

    # httpx builds its own multipart body (its boundary, its part order), like any client would
    response = await ds.client.post(
        "/api/import",
        files={"file": ("prices.csv", CSV, "text/csv")},
        data={"source": "acme-broker", "description": "nightly"},
    )
    seen_during_import.extend(temp_files(upload_folder))
    body = response.json()
    import_id = body["import_id"]
    assert (response.status_code, check_generated(body)) == (
        200,
        {
            "ok": True,
            "record_count": 3,
            "first_model": "H100_PCIE_80GB",
            "last_model": "RTX_4090",
            "filename": "prices.csv",
            "sha256": hashlib.sha256(CSV).hexdigest(),
            "bytes": len(CSV),
            "source": "acme-broker",
            "description": "nightly",
            "actor": None,
            "ignored_columns": [],
            "same_content_as": None,
            "previous_import_id": None,
            "links": expected_links(import_id),
        },
    )
    assert rows_of(db_path, import_id) == [
        (1, "H100_PCIE_80GB", 21000.0, "US"),
        (2, "A100_40GB_PCIE", 6000.0, "EU, west"),
        (3, "RTX_4090", 1500.0, None),
    ]
    assert batch_of(db_path, import_id) == {
        "filename": "prices.csv",
        "source": "acme-broker",
        "description": "nightly",
        "actor": None,
        "status": "complete",
        "record_count": 3,
        "bytes": len(CSV),
        "sha256": hashlib.sha256(CSV).hexdigest(),
    }
    assert (seen_during_import, temp_files(upload_folder)) == ([], [])


@pytest.mark.asyncio
async def test_the_answer_does_not_wait_for_the_checkpoint_which_follows_it(db_path, upload_folder):
    """The import runs in the server's own transaction and commits with SQLite's automatic checkpoint off (the
    COMMIT has synced the WAL: the rows are durable), and a checkpoint is queued on the write thread behind it; the
    connection's setting comes back."""
    ds = await open_ds(db_path, upload_folder)
    db = ds.get_database("glyph")
    statements = []
    await db.execute_write_fn(lambda conn: conn.set_trace_callback(statements.append), block=True)
    response = await ds.client.post("/api/import", files={"file": ("big.csv", make_csv(15000), "text/csv")})
    assert response.status_code == 200, response.text
    await db.execute_write_fn(lambda conn: conn.set_trace_callback(None), block=True)  # after the queued checkpoint
    # The import runs in the transaction the server opened for it, not in a SAVEPOINT inside it (which would copy
    # every page the import changes to a sub-journal first)
    assert "SAVEPOINT glyph_import" not in statements and "BEGIN IMMEDIATE" in statements
    commit = statements.index("PRAGMA wal_autocheckpoint = 0") + 1  # (Datasette 1.0a commits writes of its own)
    assert statements[commit : commit + 2] == ["COMMIT", "PRAGMA wal_autocheckpoint = 1000"]
    assert [s for s in statements[commit:] if "checkpoint" in s] == [
        "PRAGMA wal_autocheckpoint = 1000",
        "PRAGMA wal_checkpoint(PASSIVE)",
    ]
    conn = sqlite3.connect(db_path)
    try:
        busy, log_frames, checkpointed = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert log_frames > 1000 and checkpointed == log_frames  # more than SQLite checkpoints at; all copied
        assert conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone() == (15000,)
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_the_same_file_twice_makes_two_batches_the_second_naming_the_first(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    first = (await ds.client.post("/api/import", content=UPLOAD, headers={"content-type": MULTIPART})).json()
    second = (await ds.client.post("/api/import", content=UPLOAD, headers={"content-type": MULTIPART})).json()
    assert (first["same_content_as"], second["same_content_as"]) == (None, first["import_id"])
    assert second["previous_import_id"] == second["same_content_as"]  # the older name, kept for existing clients
    assert first["import_id"] != second["import_id"]
    assert [r[0] for r in rows_of(db_path, first["import_id"])] == [1, 2, 3]
    assert [r[0] for r in rows_of(db_path, second["import_id"])] == [1, 2, 3]
    assert table_counts(db_path) == (2, 6, 3)


@pytest.mark.asyncio
async def test_a_file_part_without_a_file_name_records_no_name(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    body = multipart(part("file", CSV))  # what curl -F "file=<prices.csv" sends
    response = await ds.client.post("/api/import", content=body, headers={"content-type": MULTIPART})
    import_id = response.json()["import_id"]
    assert (response.status_code, response.json()["filename"], batch_of(db_path, import_id)["filename"]) == (
        200,
        None,
        None,
    )


@pytest.mark.asyncio
async def test_the_importing_actor_is_recorded(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder, allow_import={"id": ["alice"]})
    cookies = {"ds_actor": actor_cookie(ds, {"id": "alice"})}
    headers = {"content-type": MULTIPART}
    await with_csrf_token(ds, cookies, headers)
    response = await ds.client.post("/api/import", content=UPLOAD, headers=headers, cookies=cookies)
    import_id = response.json()["import_id"]
    assert (response.status_code, response.json()["actor"], batch_of(db_path, import_id)["actor"]) == (
        200,
        "alice",
        "alice",
    )


@pytest.mark.asyncio
async def test_invalid_file_content_is_422_with_the_engine_errors_and_writes_nothing(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    bad = CSV.replace(b"6000.0", b"six grand").replace(b"RTX_4090,24", b"RTX_4090,lots")
    response = await ds.client.post(
        "/api/import", content=multipart(part("file", bad, "bad.csv")), headers={"content-type": MULTIPART}
    )
    assert (response.status_code, response.json()) == (
        422,
        {
            "ok": False,
            "errors": [
                {
                    "line": 3,
                    "column": "price",
                    "value": "six grand",
                    "message": "Line 3, column price: 'six grand' is not a number",
                },
                {
                    "line": 4,
                    "column": "vram_gb",
                    "value": "lots",
                    "message": "Line 4, column vram_gb: 'lots' is not an integer",
                },
            ],
            "more": 0,
        },
    )
    assert (table_counts(db_path), temp_files(upload_folder)) == ((0, 0, 0), [])


@pytest.mark.asyncio
async def test_many_errors_are_capped_and_counted(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    bad = make_csv(80).replace(b",0.", b",zero.")
    response = await ds.client.post(
        "/api/import", content=multipart(part("file", bad, "bad.csv")), headers={"content-type": MULTIPART}
    )
    body = response.json()
    assert (response.status_code, len(body["errors"]), body["more"], body["errors"][0]["line"]) == (422, 50, 30, 2)
    assert table_counts(db_path) == (0, 0, 0)


LISTING = {
    "canonical_model": "L40S",
    "vram_gb": 48,
    "mig_support": 0,
    "nvlink": False,
    "tdp_watts": 350,
    "price": 7500.0,
    "score": 0.6,
}


@pytest.mark.asyncio
async def test_json_array_import(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    records = [LISTING, {**LISTING, "canonical_model": "RTX_4090", "price": 1500, "region": "EU"}]
    response = await ds.client.post(
        "/api/import?source=legacy-client&description=json",
        content=json.dumps(records).encode(),
        headers={"content-type": "application/json"},
    )
    body = response.json()
    assert (response.status_code, body["record_count"], body["first_model"], body["last_model"]) == (
        200,
        2,
        "L40S",
        "RTX_4090",
    )
    assert (body["source"], body["description"], body["filename"], body["links"]) == (
        "legacy-client",
        "json",
        None,
        expected_links(body["import_id"]),
    )
    assert rows_of(db_path, body["import_id"]) == [(1, "L40S", 7500.0, None), (2, "RTX_4090", 1500.0, "EU")]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "records,errors",
    [
        ([], [{"line": None, "column": None, "value": None, "message": "No records to import: the list is empty"}]),
        (
            [LISTING, "L40S"],
            [{"line": None, "column": None, "value": None, "message": "Record 2: expected an object, found a string"}],
        ),
    ],
)
async def test_json_array_refused(db_path, upload_folder, records, errors):
    ds = await open_ds(db_path, upload_folder)
    response = await ds.client.post(
        "/api/import", content=json.dumps(records).encode(), headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()) == (422, {"ok": False, "errors": errors, "more": 0})
    assert table_counts(db_path) == (0, 0, 0)


# Several clients at once ---------------------------------------------------------------------------------------


def check_lineage_order(db_path) -> dict:
    """Rows of each import hold consecutive rowids numbered 1..n in order, and rowid order is import order."""
    conn = connect(db_path)
    try:
        by_rowid = conn.execute("SELECT import_id, import_index FROM scored_listings ORDER BY id").fetchall()
        by_time = conn.execute(
            "SELECT s.import_id, s.import_index FROM scored_listings s JOIN import_batches b USING (import_id)"
            " ORDER BY b.imported_at, s.import_index"
        ).fetchall()
        spans = conn.execute(
            "SELECT import_id, COUNT(*), MIN(import_index), MAX(import_index), MAX(id) - MIN(id) + 1"
            " FROM scored_listings GROUP BY import_id"
        ).fetchall()
    finally:
        conn.close()
    assert by_rowid == by_time
    return {import_id: (count, low, high, rowid_span) for import_id, count, low, high, rowid_span in spans}


@pytest.mark.asyncio
async def test_concurrent_imports_each_get_their_own_batch_while_reads_keep_answering(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    sizes = [3000, 50, 2000, 1, 2500, 700]
    done = []

    async def upload(i, rows):
        response = await ds.client.post(
            "/api/import", files={"file": (f"part{i}.csv", make_csv(rows, seed=i), "text/csv")}
        )
        done.append(i)
        return response

    async def read_while_importing():
        statuses = []
        while len(done) < len(sizes):
            for path in ("/api/listings?limit=5", "/glyph/scored_listings.json?_shape=array&_size=5", "/api/imports"):
                statuses.append((await ds.client.get(path)).status_code)
            await asyncio.sleep(0)
        return statuses

    *responses, statuses = await asyncio.gather(*(upload(i, n) for i, n in enumerate(sizes)), read_while_importing())
    results = [r.json() for r in responses]
    assert [(r.status_code, body["record_count"]) for r, body in zip(responses, results)] == [(200, n) for n in sizes]
    assert (len(statuses) > 0, set(statuses)) == (True, {200})
    ids = [body["import_id"] for body in results]
    assert check_lineage_order(db_path) == {i: (n, 1, n, n) for i, n in zip(ids, sizes)}
    assert temp_files(upload_folder) == []


@pytest.mark.asyncio
async def test_listings_come_in_import_order_then_file_order(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    ids = []
    for i, rows in enumerate([3, 2, 4]):
        response = await ds.client.post(
            "/api/import", files={"file": (f"f{i}.csv", make_csv(rows, seed=i), "text/csv")}
        )
        ids.append(response.json()["import_id"])
    listings = (await ds.client.get("/api/listings")).json()
    assert [(ids.index(x["import_id"]), x["import_index"]) for x in listings] == [
        (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (2, 4)
    ]  # fmt: skip
    only = (await ds.client.get(f"/api/listings?import_id={ids[1]}")).json()
    assert [(x["import_id"], x["import_index"], x["source_url"]) for x in only] == [
        (ids[1], 1, "https://x/1/0"),
        (ids[1], 2, "https://x/1/1"),
    ]


def test_concurrent_uploads_to_a_real_server(db_path, tmp_path, upload_folder):
    """Threads posting files to a running ``datasette`` while other threads read: every answer is 200, each
    import is numbered 1..n in consecutive rows, and no "database is locked" appears."""
    import threading

    from .server import running_server

    sizes = [20000, 15000, 10000, 5000]
    files = []
    for i, rows in enumerate(sizes):
        path = tmp_path / f"upload{i}.csv"
        path.write_bytes(make_csv(rows, seed=i))
        files.append(path)
    config = {"allow_import": True, "upload_dir": str(upload_folder)}
    with running_server(db_path, plugin_config=config) as server:
        results, reads, uploading = {}, [], threading.Event()
        uploading.set()

        def upload(i):
            results[i] = server.upload_csv(files[i], fields={"source": f"thread-{i}"})

        def read():
            while uploading.is_set():
                for path in ("/api/listings?limit=20", "/glyph/scored_listings.json?_size=5&_nosuggest=1"):
                    reads.append(server.get(path).status)

        uploaders = [threading.Thread(target=upload, args=(i,)) for i in range(len(sizes))]
        readers = [threading.Thread(target=read) for _ in range(2)]
        for thread in readers + uploaders:
            thread.start()
        for thread in uploaders:
            thread.join()
        uploading.clear()
        for thread in readers:
            thread.join()
        log = server.log()
    assert [(results[i].status, results[i].json()["record_count"]) for i in range(len(sizes))] == [
        (200, n) for n in sizes
    ]
    assert (len(reads) > 0, set(reads), "database is locked" in log) == (True, {200}, False)
    ids = [results[i].json()["import_id"] for i in range(len(sizes))]
    assert check_lineage_order(db_path) == {i: (n, 1, n, n) for i, n in zip(ids, sizes)}
    assert temp_files(upload_folder) == []


# GET /api/imports and /api/imports/<import_id> ---------------------------------------------------------------


async def json_import(ds, records, description):
    response = await ds.client.post(
        f"/api/import?description={description}",
        content=json.dumps(records).encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200
    return response.json()["import_id"]


def stored_batch(db_path, import_id) -> dict:
    """The batch record as the API shows it: stored UTC times (``2026-11-27 13:28:32.852201``) with T and Z."""
    from datasette_glyph.engine.lineage import BATCH_COLUMNS

    conn = connect(db_path)
    try:
        row = conn.execute(
            f"SELECT {', '.join(BATCH_COLUMNS)} FROM import_batches WHERE import_id = ?", [import_id]
        ).fetchone()
        record = dict(zip(BATCH_COLUMNS, row))
    finally:
        conn.close()
    for key in ("imported_at", "started_at", "finished_at", "rolled_back_at"):
        if record[key] is not None:
            record[key] = record[key].replace(" ", "T") + "Z"
    # JSON bodies are kept as received (keep_files is on by default): the body's size, and its gzip beside the db
    files_db = connect(f"{db_path}-files.db")
    stored = files_db.execute("SELECT stored_bytes FROM kept_files WHERE sha256 = ?", [record["sha256"]]).fetchone()
    files_db.close()
    record.update(file_kept=True, file_bytes=record["bytes"], file_stored_bytes=stored[0], reimport_of=None)
    return record


@pytest.mark.asyncio
async def test_imports_list_is_newest_first_and_paginated(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    ids = [await json_import(ds, [LISTING], f"batch {i}") for i in range(3)]
    everything = (await ds.client.get("/api/imports")).json()
    assert everything == {
        "ok": True,
        "imports": [stored_batch(db_path, i) for i in reversed(ids)],
        "total": 3,
        "next": None,
    }
    page = (await ds.client.get("/api/imports?limit=2")).json()
    assert (page["imports"], page["total"], page["next"]) == (
        everything["imports"][:2],
        3,
        "http://localhost/api/imports?limit=2&offset=2",
    )
    rest = (await ds.client.get(page["next"].replace("http://localhost", ""))).json()
    assert rest == {"ok": True, "imports": everything["imports"][2:], "total": 3, "next": None}
    assert (await ds.client.get("/api/imports?offset=3")).json() == {
        "ok": True,
        "imports": [],
        "total": 3,
        "next": None,
    }


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query,error",
    [
        ("limit=0", "limit: must be between 1 and 500 (got '0')"),
        ("limit=501", "limit: must be between 1 and 500 (got '501')"),
        ("limit=all", "limit: must be an integer (got 'all')"),
        ("offset=-2", "offset: must be >= 0 (got '-2')"),
    ],
)
async def test_imports_list_bad_parameters(db_path, upload_folder, query, error):
    ds = await open_ds(db_path, upload_folder)
    response = await ds.client.get("/api/imports?" + query)
    assert (response.status_code, response.json()) == (422, {"ok": False, "errors": [refusal(query, error)], "more": 0})


@pytest.mark.asyncio
async def test_previous_import_id_never_names_a_rolled_back_batch(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder, allow_rollback=True)
    first = await json_import(ds, [LISTING], "first")
    rolled_back = await json_import(ds, [LISTING], "second")
    deleted = await ds.client.delete(f"/api/imports/{rolled_back}")
    third = await ds.client.post(
        "/api/import?description=third",
        content=json.dumps([LISTING]).encode(),
        headers={"content-type": "application/json"},
    )
    assert (deleted.status_code, third.json()["previous_import_id"]) == (200, first)


@pytest.mark.asyncio
async def test_import_detail_has_the_record_and_per_model_prices(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    records = [
        LISTING,
        {**LISTING, "price": 7000.0, "score": 0.8},
        {**LISTING, "price": 9000.0, "score": 0.1},
        {**LISTING, "canonical_model": "RTX_4090", "price": 1500.0, "score": 0.5},
    ]
    import_id = await json_import(ds, records, "detail")
    response = await ds.client.get(f"/api/imports/{import_id}")
    assert (response.status_code, response.json()) == (
        200,
        {
            "ok": True,
            **stored_batch(db_path, import_id),
            "models": [
                {
                    "canonical_model": "L40S",
                    "row_count": 3,
                    "min_price": 7000.0,
                    "median_price": 7500.0,
                    "max_price": 9000.0,
                    "mean_score": pytest.approx(0.5),
                },
                {
                    "canonical_model": "RTX_4090",
                    "row_count": 1,
                    "min_price": 1500.0,
                    "median_price": 1500.0,
                    "max_price": 1500.0,
                    "mean_score": 0.5,
                },
            ],
        },
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "method,path,status,body",
    [
        (
            "GET",
            "/api/imports/nope",
            404,
            {"ok": False, "errors": [{"message": "No import with import_id 'nope'"}], "more": 0},
        ),
        (
            "PUT",
            "/api/imports/nope",
            405,
            {"ok": False, "errors": [{"message": "PUT is not allowed here; use GET, DELETE"}], "more": 0},
        ),
        (
            "POST",
            "/api/imports",
            405,
            {"ok": False, "errors": [{"message": "POST is not allowed here; use GET"}], "more": 0},
        ),
    ],
)
async def test_imports_unknown_and_wrong_methods(db_path, upload_folder, method, path, status, body):
    ds = await open_ds(db_path, upload_folder)
    response = await ds.client.request(method, path)
    assert (response.status_code, response.json()) == (status, body)


# Datasette's own views of an import ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_datasette_table_json_filters_by_import_id(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    first = await json_import(ds, [LISTING, LISTING], "first")
    second = await json_import(ds, [LISTING, {**LISTING, "price": 1.0}, LISTING], "second")
    rows = (await ds.client.get(f"/glyph/scored_listings.json?import_id={second}&_shape=array")).json()
    assert [(r["import_id"], r["import_index"], r["price"]) for r in rows] == [
        (second, 1, 7500.0),
        (second, 2, 1.0),
        (second, 3, 7500.0),
    ]
    # the default shape differs between versions: rows as arrays plus a count on 0.65, objects and _extra on 1.0a
    if TOKEN_CSRF:
        data = (await ds.client.get(f"/glyph/scored_listings.json?import_id={first}")).json()
        index = data["columns"].index("import_index")
        assert (data["filtered_table_rows_count"], [row[index] for row in data["rows"]]) == (2, [1, 2])
    else:
        data = (await ds.client.get(f"/glyph/scored_listings.json?import_id={first}&_extra=count")).json()
        assert (data["count"], [row["import_index"] for row in data["rows"]]) == (2, [1, 2])


@pytest.mark.asyncio
async def test_table_view_links_each_row_to_its_import(db_path, upload_folder):
    import re

    # the project's metadata.yml names import_batches.label as the label column
    metadata = yaml.safe_load((Path(__file__).parent.parent / "metadata.yml").read_text())
    plugin_config = {**metadata.pop("plugins")["datasette-glyph"], "upload_dir": str(upload_folder)}
    ds = Datasette([str(db_path)], metadata=metadata, plugin_config={"datasette-glyph": plugin_config})
    await ds.invoke_startup()
    import_id = await json_import(ds, [LISTING], "linked")
    html = (await ds.client.get(f"/glyph/scored_listings?import_id={import_id}")).text
    cells = re.findall(r'<td class="col-import_id[^"]*"[^>]*>(.*?)</td>', html, re.S)
    links = [re.search(r'<a [^>]*href="([^"]+)"[^>]*>([^<]+)</a>', cell).groups() for cell in cells]
    assert [label for _, label in links] == [
        f"linked · {stored_batch(db_path, import_id)['imported_at'][:19].replace('T', ' ')}"
    ]
    target = await ds.client.get(links[0][0])
    assert (target.status_code, import_id in target.text) == (200, True)


def test_the_readme_curl_command_imports_the_sample_with_the_demo_config(db_path):
    from .server import running_server

    root = Path(__file__).parent.parent
    sample = root / "sample" / "scored_sample.csv"
    with running_server(db_path, metadata_path=root / "metadata.yml") as server:
        curl = subprocess.run(
            ["curl", "-s", "-X", "POST", f"{server.url}/api/import", "-F", "file=@sample/scored_sample.csv"],
            cwd=root,
            capture_output=True,
            check=True,
        )
    body = json.loads(curl.stdout)
    assert (body["ok"], body["record_count"], body["filename"], body["sha256"]) == (
        True,
        len(sample.read_text(encoding="utf-8").splitlines()) - 1,
        "scored_sample.csv",
        hashlib.sha256(sample.read_bytes()).hexdigest(),
    )


def test_temp_file_of_a_killed_server_is_removed_when_a_server_starts(db_path, tmp_path, upload_folder):
    from .server import running_server

    csv_path = tmp_path / "big.csv"
    csv_path.write_bytes(make_csv(60000))
    with running_server(db_path, plugin_config={"allow_import": True, "upload_dir": str(upload_folder)}) as server:
        left_behind = []

        def kill_half_way(sent, size):
            if sent >= size // 2 and not left_behind:
                # the server has written part of what it received to its temp file
                found = wait_until(
                    lambda: [p for p in temp_files(upload_folder) if p.stat().st_size >= size // 4],
                    "a temp file holding a quarter of the upload",
                )
                left_behind.extend(p.name for p in found)
                server.kill()

        with pytest.raises(OSError):
            server.upload_csv(csv_path, chunk_size=64 * 1024, on_chunk=kill_half_way)
        assert len(left_behind) == 1
        assert [p.name for p in temp_files(upload_folder)] == left_behind
        server.restart()
        assert (temp_files(upload_folder), table_counts(db_path)) == ([], (0, 0, 0))
