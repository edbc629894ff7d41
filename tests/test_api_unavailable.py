"""503s instead of 500s: a database at the wrong schema version, a migration running, a busy writer."""

import json
import sqlite3
import threading
import time

import pytest
from datasette_test import Datasette

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect

from .conftest import build_legacy_database
from .test_lineage import A_ID, insert_market

NEWEST = migrator.load_migrations()[-1].id
PREVIOUS = migrator.load_migrations()[-2].id
RECORDS = [
    {"canonical_model": "L40S", "vram_gb": 48, "mig_support": 0, "nvlink": False, "tdp_watts": 350, "price": 7500.0,
     "score": 0.6}
]  # fmt: skip
JSON = {"content-type": "application/json"}


async def serve(path, **config):
    settings = {"allow_import": True, "allow_rollback": True, **config}
    ds = Datasette([str(path)], plugin_config={"datasette-glyph": settings})
    await ds.invoke_startup()
    return ds


def make(path, state):
    if state == "created":
        sqlite3.connect(path).execute("VACUUM")
    elif state == "old store":
        build_legacy_database(path).close()
    elif state == "someone else's":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.close()
    else:
        conn = connect(path)
        migrator.migrate(conn, target=state)
        conn.close()


def not_migrated(path, found, label):
    command = f"datasette glyph-migrate {path}"
    return {
        "ok": False,
        "errors": [
            {
                "message": f"The database glyph is at schema version {label}; this datasette-glyph needs {NEWEST}. "
                f"Run {command} (if it is running, wait for it to finish)"
            }
        ],
        "more": 0,
        "schema_version": found,
        "needed_version": NEWEST,
        "command": command,
    }


def tables(path):
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    counts = {name: conn.execute(f"SELECT COUNT(*) FROM [{name}]").fetchone()[0] for name in names}
    conn.close()
    return counts


REQUESTS = [
    ("GET", "/api/listings", {}, b""),
    ("GET", "/api/imports", {}, b""),
    ("GET", f"/api/imports/{A_ID}", {}, b""),
    ("GET", f"/api/imports/{A_ID}/diff/{A_ID}", {}, b""),
    ("GET", "/api/listings/history?source_url=x", {}, b""),
    ("POST", "/api/import", JSON, json.dumps(RECORDS).encode()),
    ("DELETE", f"/api/imports/{A_ID}", {}, b""),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("method,url,headers,body", REQUESTS)
@pytest.mark.parametrize(
    "state,found,label",
    [
        ("created", None, "0 (no migration applied)"),
        ("old store", "0001", "0001"),
        (PREVIOUS, PREVIOUS, PREVIOUS),
    ],
)
async def test_api_answers_503_naming_the_versions_and_the_command(
    tmp_path, method, url, headers, body, state, found, label
):
    path = tmp_path / "glyph.db"
    make(path, state)
    before = tables(path)
    ds = await serve(path)
    response = await ds.client.request(method, url, headers=headers, content=body)
    assert (response.status_code, response.headers.get("retry-after"), response.json()) == (
        503,
        "5",
        not_migrated(path, found, label),
    )
    assert tables(path) == before


@pytest.mark.asyncio
@pytest.mark.parametrize("method,url,headers,body", REQUESTS)
async def test_a_database_with_other_tables_gets_a_503_that_says_what_it_is(tmp_path, method, url, headers, body):
    """glyph-migrate refuses such a file, so the answer does not advise it (nor a retry): it says what to do."""
    path = tmp_path / "glyph.db"
    make(path, "someone else's")
    before = tables(path)
    ds = await serve(path)
    response = await ds.client.request(method, url, headers=headers, content=body)
    message = (
        "The database glyph is not a glyph database: it holds the tables notes, not glyph's nor the old store's. "
        + migrator.NOT_GLYPH_ADVICE
    )
    assert (response.status_code, response.headers.get("retry-after"), response.json()) == (
        503,
        None,
        {
            "ok": False,
            "errors": [{"message": message}],
            "more": 0,
            "schema_version": None,
            "needed_version": NEWEST,
            "command": None,
        },
    )
    assert tables(path) == before


@pytest.mark.asyncio
async def test_the_old_store_url_answers_the_same_503_with_detail(tmp_path):
    path = tmp_path / "glyph.db"
    make(path, "old store")
    ds = await serve(path)
    response = await ds.client.post("/api/persist/listings", headers=JSON, content=json.dumps(RECORDS).encode())
    expected = not_migrated(path, "0001", "0001")
    assert (response.status_code, response.json()) == (503, {**expected, "detail": expected["errors"][0]["message"]})


@pytest.mark.asyncio
async def test_a_database_newer_than_the_plugin_is_503_too(db_path):
    conn = connect(db_path)
    conn.execute("INSERT INTO glyph_migrations (id, name, checksum, applied_at) VALUES ('9999', 'future', 'x', 'now')")
    conn.close()
    ds = await serve(db_path)
    response = await ds.client.get("/api/imports")
    assert (response.status_code, response.json()["errors"]) == (
        503,
        [
            {
                "message": f"The database glyph is at schema version 9999, newer than the {NEWEST} this "
                f"datasette-glyph needs: upgrade datasette-glyph, or take the database back with "
                f"datasette glyph-migrate {db_path} --to {NEWEST}"
            }
        ],
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("page", ["/-/glyph/imports", f"/-/glyph/imports/{A_ID}", "/-/glyph/import"])
async def test_pages_say_the_same(tmp_path, page):
    path = tmp_path / "glyph.db"
    make(path, "old store")
    ds = await serve(path)
    response = await ds.client.get(page)
    message = not_migrated(path, "0001", "0001")["errors"][0]["message"]
    assert (response.status_code, message in response.text) == (503, True)


def hold_write_lock(path, locked: threading.Event, seconds: float, then=None):
    """Another process's writer: take the write lock, keep it ``seconds``, run ``then(conn)`` and commit."""
    conn = connect(path)
    conn.execute("BEGIN IMMEDIATE")
    locked.set()
    time.sleep(seconds)
    if then:
        then(conn)
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.asyncio
async def test_an_import_never_lands_between_the_steps_of_a_migration(db_path):
    """The import arrives while a migration holds the lock; when it gets the lock the database is one version down,
    so it is refused, and nothing of it is written."""
    ds = await serve(db_path)
    locked = threading.Event()
    down_one_step = threading.Thread(
        target=hold_write_lock, args=(db_path, locked, 0.5, lambda conn: migrator.migrate(conn, rollback=1))
    )
    down_one_step.start()
    locked.wait()
    response = await ds.client.post("/api/import", headers=JSON, content=json.dumps(RECORDS).encode())
    down_one_step.join()
    assert (response.status_code, response.json()) == (503, not_migrated(db_path, PREVIOUS, PREVIOUS))
    conn = connect(db_path)
    assert conn.execute("SELECT COUNT(*) FROM import_batches").fetchone()[0] == 0
    conn.close()


@pytest.mark.asyncio
async def test_an_import_waits_for_a_short_lock_and_then_imports(db_path):
    ds = await serve(db_path, write_wait_ms=5000)
    locked = threading.Event()
    writer = threading.Thread(target=hold_write_lock, args=(db_path, locked, 0.5))
    writer.start()
    locked.wait()
    response = await ds.client.post("/api/import", headers=JSON, content=json.dumps(RECORDS).encode())
    writer.join()
    assert (response.status_code, response.json()["record_count"]) == (200, 1)


BUSY = {
    "ok": False,
    "errors": [
        {
            "message": "The database glyph is busy: another process held its write lock for more than 200 ms "
            "(write_wait_ms). Nothing was written; try again."
        }
    ],
    "more": 0,
}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "method,url,headers,body",
    [
        ("POST", "/api/import", JSON, json.dumps(RECORDS).encode()),
        ("DELETE", f"/api/imports/{A_ID}", {}, b""),
    ],
)
async def test_a_busy_writer_means_a_bounded_wait_then_503_with_retry_after(db_path, method, url, headers, body):
    conn = connect(db_path)
    insert_market(conn)
    conn.close()
    before = tables(db_path)
    ds = await serve(db_path, write_wait_ms=200)
    locked = threading.Event()
    writer = threading.Thread(target=hold_write_lock, args=(db_path, locked, 2.0))
    writer.start()
    locked.wait()
    started = time.monotonic()
    response = await ds.client.request(method, url, headers=headers, content=body)
    waited = time.monotonic() - started
    writer.join()
    assert (response.status_code, response.headers.get("retry-after"), response.json(), waited < 1.5) == (
        503,
        "5",
        BUSY,
        True,
    )
    assert tables(db_path) == before


@pytest.mark.asyncio
async def test_a_full_database_is_a_507_and_nothing_is_written(db_path):
    ds = await serve(db_path)
    db = ds.get_database("glyph")
    pages = await db.execute_write_fn(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0], block=True)
    # the file may not grow past what it holds now: as a full disk would have it
    await db.execute_write_fn(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}").fetchone(), block=True)
    before = tables(db_path)
    records = [dict(RECORDS[0], notes="x" * 2000) for _ in range(200)]
    response = await ds.client.post("/api/import", headers=JSON, content=json.dumps(records).encode())
    assert (response.status_code, response.headers.get("retry-after"), response.json()) == (
        507,
        None,
        {
            "ok": False,
            "errors": [{"message": "The database's disk is full; the import was not saved (nothing was written)."}],
            "more": 0,
        },
    )
    assert tables(db_path) == before


def test_the_503_example_in_api_md_is_what_a_server_answers(tmp_path):
    """docs/api.md's example of a database that needs migrating, word for word, from a real server."""
    import re
    from pathlib import Path

    from .server import running_server

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    example = re.search(
        r'```json\n *(\{"ok": false, "errors": \[\{"message": "The database glyph is at .*?) *```', text, re.S
    )
    documented = json.loads(example.group(1))
    srv = tmp_path / "srv"
    srv.mkdir()
    path = srv / "glyph.db"
    conn = connect(path)
    migrator.migrate(conn, target="0001")
    conn.close()
    with running_server(path, log_dir=tmp_path) as server:
        answer = server.get("/api/imports")
    assert (answer.status, answer.json()) == (503, json.loads(json.dumps(documented).replace("/srv/", f"{srv}/")))
