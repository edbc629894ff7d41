"""Idempotency-Key on POST /api/import and /api/persist/listings: a retried request answers the first result and
imports nothing; another request with the same key is refused; the key is kept with its batch, in its transaction."""

import json
import socket
import threading
import time

import pytest
from datasette_test import actor_cookie

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect

from .support import (
    CSV,
    MULTIPART,
    UPLOAD,
    make_csv,
    multipart,
    open_ds,
    part,
    table_counts,
    temp_files,
    with_csrf_token,
)

KEY = "7c3e7a52-1c0e-4c8a-9a57-2d1c2b6f0b11"


async def post(ds, body=UPLOAD, key=KEY, content_type=MULTIPART, path="/api/import", **headers):
    headers = {"content-type": content_type, **headers}
    if key is not None:
        headers["idempotency-key"] = key
    return await ds.client.post(path, content=body, headers=headers)


def keys_kept(db_path) -> list:
    conn = connect(db_path)
    try:
        return conn.execute("SELECT idempotency_key, import_id FROM import_idempotency_keys ORDER BY rowid").fetchall()
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_the_same_request_again_answers_the_first_result_and_imports_nothing(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    first = await post(ds)
    again = await post(ds)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert ("idempotency-replayed" in first.headers, again.headers["idempotency-replayed"]) == (False, "true")
    assert table_counts(db_path) == (1, 3, 3)
    assert keys_kept(db_path) == [(KEY, first.json()["import_id"])]
    # Without a key (or with another) the same file is a new import, as always
    assert (await post(ds, key=None)).json()["previous_import_id"] == first.json()["import_id"]
    another = await post(ds, key="another")
    assert (another.status_code, another.json()["record_count"], "idempotency-replayed" in another.headers) == (
        200,
        3,
        False,
    )
    assert table_counts(db_path)[0] == 3
    assert temp_files(upload_folder) == []


def test_a_replay_after_a_rollback_answers_the_first_result_and_imports_nothing(db_path, upload_folder):
    """The README: the same key with the same request answers the first answer again, byte for byte, "even if the
    batch was rolled back since". A real server; the rollback is the API's DELETE."""
    from .server import running_server

    config = {"allow_import": True, "allow_rollback": True, "upload_dir": str(upload_folder)}
    headers = {"Content-Type": MULTIPART, "Idempotency-Key": KEY}
    with running_server(db_path, plugin_config=config) as server:
        first = server.request("POST", "/api/import", body=UPLOAD, headers=headers)
        assert first.status == 200, first.text
        import_id = first.json()["import_id"]
        rolled_back = server.request("DELETE", f"/api/imports/{import_id}")
        assert (rolled_back.status, rolled_back.json()["status"]) == (200, "rolled_back")
        again = server.request("POST", "/api/import", body=UPLOAD, headers=headers)
        record = server.get(f"/api/imports/{import_id}").json()
    assert (again.status, again.headers.get("idempotency-replayed"), again.json()) == (200, "true", first.json())
    assert (record["status"], table_counts(db_path)[:2]) == ("rolled_back", (1, 0))
    assert keys_kept(db_path) == [(KEY, import_id)]


def test_a_replay_is_the_first_answer_byte_for_byte(db_path, upload_folder):
    from .server import running_server

    headers = {"Content-Type": MULTIPART, "Idempotency-Key": KEY}
    with running_server(db_path, plugin_config={"allow_import": True, "upload_dir": str(upload_folder)}) as server:
        first = server.request("POST", "/api/import", body=UPLOAD, headers=headers)
        again = server.request("POST", "/api/import", body=UPLOAD, headers=headers)
    assert (first.status, again.headers.get("idempotency-replayed")) == (200, "true")
    assert again.body == first.body


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body, content_type",
    [
        (multipart(part("source", b"acme-broker"), part("file", make_csv(4), filename="prices.csv")), MULTIPART),
        (  # the same file, another description
            multipart(
                part("source", b"acme-broker"),
                part("file", CSV, filename="prices.csv"),
                part("description", b"a different run"),
            ),
            MULTIPART,
        ),
        (json.dumps([{"canonical_model": "RTX_4090", "price": 1500}]).encode(), "application/json"),
    ],
    ids=["other file", "other description", "json body"],
)
async def test_the_same_key_with_another_request_is_409_and_changes_nothing(db_path, upload_folder, body, content_type):
    ds = await open_ds(db_path, upload_folder)
    first = (await post(ds)).json()
    refused = await post(ds, body=body, content_type=content_type)
    assert (refused.status_code, refused.json()) == (
        409,
        {
            "ok": False,
            "errors": [
                {
                    "message": f'Idempotency-Key "{KEY}" was first sent with another request (import '
                    f"{first['import_id']}); the same key must come with the same file, source and description. "
                    "Send a new key for a new import"
                }
            ],
            "more": 0,
        },
    )
    assert (table_counts(db_path), keys_kept(db_path)) == ((1, 3, 3), [(KEY, first["import_id"])])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "key, shown",
    [
        ("", ""),
        ("x" * 256, "x" * 40 + "..."),
        ("cl\u00e9", r"cl\u00c3\u00a9"),  # the header's UTF-8 bytes, read as Latin-1, shown escaped
        ("two words", "two words"),
        ("tab\there", r"tab\there"),
    ],
)
async def test_an_unusable_key_is_400_before_the_body_is_read(db_path, upload_folder, key, shown):
    ds = await open_ds(db_path, upload_folder)
    response = await ds.client.post(
        "/api/import",
        content=UPLOAD,
        headers={"content-type": MULTIPART, "idempotency-key": key.encode("utf-8")},
    )
    message = f'Idempotency-Key "{shown}" is not usable: send 1 to 255 visible ASCII characters (a UUID is a good key)'
    assert (response.status_code, response.json()) == (400, {"ok": False, "errors": [{"message": message}], "more": 0})
    assert (table_counts(db_path), keys_kept(db_path)) == ((0, 0, 0), [])


@pytest.mark.asyncio
async def test_a_refused_import_keeps_nothing_so_its_key_serves_the_corrected_retry(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    bad = multipart(part("file", CSV.replace(b"21000.0", b"lots"), filename="prices.csv"))
    good = multipart(part("file", CSV, filename="prices.csv"))
    refused = await post(ds, body=bad)
    assert (refused.status_code, refused.json()) == (
        422,
        {
            "ok": False,
            "errors": [
                {
                    "line": 2,
                    "column": "price",
                    "value": "lots",
                    "message": "Line 2, column price: 'lots' is not a number",
                }
            ],
            "more": 0,
        },
    )
    assert (table_counts(db_path), keys_kept(db_path)) == ((0, 0, 0), [])
    retried = await post(ds, body=good)
    assert (retried.status_code, "idempotency-replayed" in retried.headers) == (200, False)
    assert keys_kept(db_path) == [(KEY, retried.json()["import_id"])]


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/api/import", "/api/persist/listings"])
async def test_json_imports_take_the_key_too(db_path, upload_folder, path):
    ds = await open_ds(db_path, upload_folder)
    record = {"canonical_model": "RTX_4090", "vram_gb": 24, "mig_support": 0, "nvlink": False, "tdp_watts": 450}
    body = json.dumps([{**record, "price": 1500, "score": 0.5, "import_id": None, "import_index": None}]).encode()
    first = await post(ds, body=body, content_type="application/json", path=path)
    again = await post(ds, body=body, content_type="application/json", path=path)
    assert (first.status_code, again.status_code, again.headers["idempotency-replayed"]) == (200, 200, "true")
    assert again.json() == first.json()
    assert table_counts(db_path) == (1, 1, 1)


@pytest.mark.asyncio
async def test_a_key_belongs_to_the_actor_who_sent_it(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder, allow_import={"id": ["alice", "bob"]})

    async def post_as(name):
        cookies = {"ds_actor": actor_cookie(ds, {"id": name})}
        headers = {"content-type": MULTIPART, "idempotency-key": KEY}
        await with_csrf_token(ds, cookies, headers)
        return await ds.client.post("/api/import", content=UPLOAD, headers=headers, cookies=cookies)

    alice = await post_as("alice")
    bob = await post_as("bob")
    assert (alice.status_code, bob.status_code) == (200, 409)
    assert bob.json()["errors"][0]["message"] == f'Idempotency-Key "{KEY}" belongs to another actor; send a new key'
    assert (await post_as("alice")).json() == alice.json()
    assert table_counts(db_path) == (1, 3, 3)


# A real server and real clients -------------------------------------------------------------------------------


def test_a_client_gone_after_its_upload_gets_its_first_result_on_retry(db_path, tmp_path, upload_folder):
    """The upload is complete when the client goes away: the import still commits (the server cannot tell whether
    the answer arrived). The retry with the same key learns its result instead of importing again."""
    from .server import multipart_envelope, running_server

    csv_path = tmp_path / "big.csv"
    csv_path.write_bytes(make_csv(20_000))
    prefix, suffix, content_type = multipart_envelope("file", "big.csv", {}, "text/csv")
    body = prefix + csv_path.read_bytes() + suffix
    with running_server(db_path, plugin_config={"allow_import": True, "upload_dir": str(upload_folder)}) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            head = (
                f"POST /api/import HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nIdempotency-Key: {KEY}\r\n\r\n"
            )
            client.sendall(head.encode() + body)
        # gone without reading a byte of the answer
        deadline = time.monotonic() + 60
        while not keys_kept(db_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        retry = server.upload_csv(csv_path, headers={"Idempotency-Key": KEY})
    assert (retry.status, retry.headers["idempotency-replayed"], retry.json()["record_count"]) == (200, "true", 20_000)
    assert keys_kept(db_path) == [(KEY, retry.json()["import_id"])]
    assert table_counts(db_path)[:2] == (1, 20_000)


def test_two_requests_racing_with_one_key_import_once(db_path, tmp_path, upload_folder):
    from .server import running_server

    csv_path = tmp_path / "race.csv"
    csv_path.write_bytes(make_csv(10_000))
    answers = []
    with running_server(db_path, plugin_config={"allow_import": True, "upload_dir": str(upload_folder)}) as server:
        # All three have sent the whole file before any sends the multipart's closing boundary: no request can be
        # imported (nor its key kept) before the other two are in flight
        all_sent = threading.Barrier(3, timeout=120)
        size = csv_path.stat().st_size

        def at_the_end(sent, total):
            if sent == total == size:
                all_sent.wait()

        def send():
            answers.append(server.upload_csv(csv_path, headers={"Idempotency-Key": KEY}, on_chunk=at_the_end))

        threads = [threading.Thread(target=send) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [a.status for a in answers] == [200] * 3
    assert len({a.json()["import_id"] for a in answers}) == 1
    assert sorted(a.headers.get("idempotency-replayed", "") for a in answers) == ["", "true", "true"]
    assert table_counts(db_path)[:2] == (1, 10_000)


# The migration that keeps the keys ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_keys_survive_a_migration_round_trip(db_path, upload_folder):
    ds = await open_ds(db_path, upload_folder)
    first = (await post(ds)).json()
    conn = connect(db_path)
    kept_before = conn.execute("SELECT rowid, * FROM import_idempotency_keys").fetchall()
    migrations = [m.id for m in migrator.load_migrations()]
    previous = migrations[migrations.index("0008") - 1]
    migrator.migrate(conn, target=previous)
    assert "import_idempotency_keys" not in [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    assert migrator.kept_aside(conn) == [
        ("glyph_kept_0008_import_idempotency_keys", 1),
        ("glyph_kept_0010_import_files_store", 1),
    ]
    migrator.migrate(conn)
    assert conn.execute("SELECT rowid, * FROM import_idempotency_keys").fetchall() == kept_before
    assert migrator.kept_aside(conn) == []
    conn.close()
    ds = await open_ds(db_path, upload_folder)
    again = await post(ds)
    assert (again.headers["idempotency-replayed"], again.json()) == ("true", first)


LISTING = (
    b'{"canonical_model": "L40S", "vram_gb": 48, "mig_support": 0, "nvlink": false, "tdp_watts": 350, "price": 7500, '
    b'"score": 0.6'
)


@pytest.mark.parametrize(
    "path,body,content_type",
    [
        ("/api/import?source=replayed", None, None),
        ("/api/import?source=replayed", b"[" + LISTING + b', "zeta": 1, "alpha": 2}]', "application/json"),
        ("/api/persist/listings", b"[" + LISTING + b', "import_id": null, "import_index": null}]', "application/json"),
    ],
)
def test_a_replayed_answer_is_the_first_answer_byte_for_byte(db_path, tmp_path, path, body, content_type):
    from .server import running_server

    upload_folder = tmp_path / "uploads"
    csv_path = tmp_path / "listings.csv"
    csv_path.write_bytes(CSV if isinstance(CSV, bytes) else CSV.encode())
    headers = {"Idempotency-Key": KEY}
    with running_server(db_path, plugin_config={"allow_import": True, "upload_dir": str(upload_folder)}) as server:

        def send():
            if body is None:
                return server.upload_csv(csv_path, path=path, headers=headers)
            return server.request("POST", path, body=body, headers={**headers, "Content-Type": content_type})

        first, again = send(), send()
    assert (first.status, again.status, again.headers.get("idempotency-replayed")) == (200, 200, "true")
    assert again.body == first.body
    assert again.headers["content-type"] == first.headers["content-type"] == "application/json; charset=utf-8"
