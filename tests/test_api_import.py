"""POST /api/import: streamed multipart uploads and JSON payloads, every bad request, temp file cleanup, 413,
concurrency; and GET /api/imports, /api/imports/<import_id>."""

import asyncio
import os
import socket
import subprocess
import sys

import pytest
from datasette_test import Datasette

from datasette_glyph import uploads
from datasette_glyph.db import connect

CSV = (
    b"canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score,region\r\n"
    b"H100_PCIE_80GB,80,7,True,350,21000.0,0.81,US\r\n"
    b'A100_40GB_PCIE,40,7,True,250,6000.0,0.7,"EU, west"\r\n'
    b"RTX_4090,24,0,False,450,1500.0,0.5,\r\n"
)
BOUNDARY = "glyphboundary42"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def part(name, value: bytes, filename=None, content_type=None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    headers = f"Content-Disposition: {disposition}\r\n" + (f"Content-Type: {content_type}\r\n" if content_type else "")
    return f"--{BOUNDARY}\r\n{headers}\r\n".encode() + value + b"\r\n"


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


UPLOAD = multipart(
    part("source", b"acme-broker"),
    part("file", CSV, filename="prices.csv", content_type="text/csv"),
    part("description", "nightly run \N{EM DASH} 3 rows".encode()),
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
            "files": [p.name for p in tmp_path.iterdir()],
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
    assert up.path.name.startswith(f"glyph-upload.{socket.gethostname().replace('.', '_')}.{os.getpid()}.")
    assert list(tmp_path.iterdir()) == []


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
        assert (info.value.status, info.value.message, list(tmp_path.iterdir())) == (status, message, [])


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
    assert (info.value.status, sum(read), list(tmp_path.iterdir())) == (413, 11_000, [])


@pytest.mark.asyncio
async def test_client_disconnect_mid_upload_removes_the_temp_file(tmp_path):
    files_when_disconnected = []
    inner = receiver(UPLOAD[: len(UPLOAD) // 2], 50, then_disconnect=True)

    async def receive():
        message = await inner()
        if message["type"] == "http.disconnect":
            files_when_disconnected.extend(p.name for p in tmp_path.iterdir())
        return message

    with pytest.raises(uploads.ClientDisconnected):
        async with uploads.multipart_upload(receive, headers_for(UPLOAD), tmp_path, 10**6):
            pass
    assert (len(files_when_disconnected), list(tmp_path.iterdir())) == (1, [])


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


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_clean_stale_uploads_removes_only_files_of_dead_processes_on_this_host(tmp_path):
    host = socket.gethostname().replace(".", "_")
    names = {
        "dead": f"glyph-upload.{host}.{dead_pid()}.0123abcd.part",
        "mine": f"glyph-upload.{host}.{os.getpid()}.0123abcd.part",
        "parent": f"glyph-upload.{host}.{os.getppid()}.0123abcd.part",  # alive
        "other host": f"glyph-upload.elsewhere.{dead_pid()}.0123abcd.part",
        "not ours": "notes.txt",
        "odd name": "glyph-upload.x.part",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    removed = uploads.clean_stale_uploads(tmp_path)
    assert ([p.name for p in removed], sorted(p.name for p in tmp_path.iterdir())) == (
        [names["dead"]],
        sorted(v for k, v in names.items() if k != "dead"),
    )


@pytest.mark.asyncio
async def test_startup_cleans_the_upload_folder(db_path, tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    host = socket.gethostname().replace(".", "_")
    stale = folder / f"glyph-upload.{host}.{dead_pid()}.feedface.part"
    live = folder / f"glyph-upload.{host}.{os.getppid()}.feedface.part"
    stale.write_bytes(b"half a file")
    live.write_bytes(b"in flight")
    ds = Datasette([str(db_path)], plugin_config={"datasette-glyph": {"upload_dir": str(folder)}})
    await ds.invoke_startup()
    assert list(folder.iterdir()) == [live]


def test_default_upload_dir_is_in_the_system_temp_dir():
    import tempfile

    assert uploads.upload_dir(None) == uploads.Path(tempfile.gettempdir()) / "datasette-glyph-uploads"


def batch_count(db_path) -> int:
    conn = connect(db_path)
    try:
        return conn.execute("SELECT COUNT(*) FROM import_batches").fetchone()[0]
    finally:
        conn.close()


def table_counts(db_path) -> tuple:
    """(import_batches, scored_listings, models) row counts: what an import would change."""
    conn = connect(db_path)
    try:
        return tuple(
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("import_batches", "scored_listings", "models")
        )
    finally:
        conn.close()


# The endpoint's bad requests -----------------------------------------------------------------------------------


@pytest.fixture
def upload_folder(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


async def open_ds(db_path, upload_folder, **config):
    settings = {"allow_import": True, "upload_dir": str(upload_folder), **config}
    ds = Datasette([str(db_path)], plugin_config={"datasette-glyph": settings})
    await ds.invoke_startup()
    return ds


def refused(status, message):
    return status, {"ok": False, "errors": [message], "more": 0}


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
                "The request body is not valid JSON: Expecting property name enclosed in double quotes: "
                "line 1 column 3 (char 2)",
            ),
        ),
        (
            "application/json",
            b'{"canonical_model": "L40S"}',
            refused(400, "Send a JSON array of listing objects, not a JSON dict"),
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
    assert (table_counts(db_path), list(upload_folder.iterdir())) == ((0, 0, 0), [])


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
    assert (sum(sent) < 12_000, table_counts(db_path), list(upload_folder.iterdir())) == (True, (0, 0, 0), [])


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_import_is_post_only(db_path, upload_folder, method):
    ds = await open_ds(db_path, upload_folder)
    response = await ds.client.request(method, "/api/import")
    assert (response.status_code, response.headers["allow"], response.json()) == (
        405,
        "POST",
        {"ok": False, "errors": [f"{method} is not allowed here; use POST"]},
    )


@pytest.mark.asyncio
async def test_anonymous_import_is_refused_by_default(db_path, upload_folder):
    ds = Datasette([str(db_path)], plugin_config={"datasette-glyph": {"upload_dir": str(upload_folder)}})
    response = await ds.client.post("/api/import", content=UPLOAD, headers={"content-type": MULTIPART})
    assert (response.status_code, response.json()) == refused(
        403, "An anonymous request may not import: the glyph-import permission is required"
    )
    assert (table_counts(db_path), list(upload_folder.iterdir())) == ((0, 0, 0), [])


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


@pytest.mark.asyncio
async def test_client_disconnect_leaves_no_temp_file_and_no_rows(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    files_when_disconnected = []
    inner = receiver(UPLOAD[: len(UPLOAD) - 40], 30, then_disconnect=True)

    async def receive():
        message = await inner()
        if message["type"] == "http.disconnect":
            files_when_disconnected.extend(p.name for p in upload_folder.iterdir())
        return message

    await call_asgi(ds, "POST", "/api/import", headers_for(UPLOAD), receive)
    assert (len(files_when_disconnected), list(upload_folder.iterdir()), table_counts(db_path)) == (
        1,
        [],
        (0, 0, 0),
    )
