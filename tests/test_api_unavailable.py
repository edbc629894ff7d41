"""503s instead of 500s: a database at the wrong schema version, a migration running, a busy writer.

Every request goes to a real ``datasette`` process (tests/server.py); a lock is held by a real second process
(tests/locks.py), and a waiting server is seen waiting (asleep in SQLite's busy handler), not given time.
"""

import json
import sqlite3
import threading

import pytest

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect

from .conftest import build_legacy_database
from .hand_market import A_ID, insert_market
from .locks import lock_held_elsewhere, wait_until_waiting_for_a_lock
from .server import running_server
from .support import FULL_DISK_PLUGIN, error_message

NEWEST = migrator.load_migrations()[-1].id
PREVIOUS = migrator.load_migrations()[-2].id
RECORDS = [
    {"canonical_model": "L40S", "vram_gb": 48, "mig_support": 0, "nvlink": False, "tdp_watts": 350, "price": 7500.0,
     "score": 0.6}
]  # fmt: skip
JSON = {"Content-Type": "application/json"}


def serve(path, **config):
    settings = {"allow_import": True, "allow_rollback": True, **config}
    return running_server(path, plugin_config=settings)


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


@pytest.fixture(
    scope="module",
    params=[
        ("created", None, "0 (no migration applied)"),
        ("old store", "0001", "0001"),
        (PREVIOUS, PREVIOUS, PREVIOUS),
    ],
    ids=["created", "old store", "previous"],
)
def unmigrated(request, tmp_path_factory):
    """A server on a database in each state that is not the newest schema: (server, path, state, found, label)."""
    state, found, label = request.param
    path = tmp_path_factory.mktemp("unmigrated") / "glyph.db"
    make(path, state)
    with serve(path) as server:
        yield server, path, found, label


@pytest.mark.parametrize("method,url,headers,body", REQUESTS)
def test_api_answers_503_naming_the_versions_and_the_command(unmigrated, method, url, headers, body):
    server, path, found, label = unmigrated
    before = tables(path)
    response = server.request(method, url, headers=headers, body=body)
    assert (response.status, response.headers.get("retry-after"), response.json()) == (
        503,
        "5",
        not_migrated(path, found, label),
    )
    assert tables(path) == before


@pytest.mark.parametrize("method,url,headers,body", REQUESTS)
def test_a_database_with_other_tables_gets_a_503_that_says_what_it_is(tmp_path, method, url, headers, body):
    """glyph-migrate refuses such a file, so the answer does not advise it (nor a retry): it says what to do."""
    path = tmp_path / "glyph.db"
    make(path, "someone else's")
    before = tables(path)
    with serve(path) as server:
        response = server.request(method, url, headers=headers, body=body)
    message = (
        "The database glyph is not a glyph database: it holds the tables notes, not glyph's nor the old store's. "
        + migrator.NOT_GLYPH_ADVICE
    )
    assert (response.status, response.headers.get("retry-after"), response.json()) == (
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


def test_the_old_store_url_answers_the_same_503_with_detail(tmp_path):
    path = tmp_path / "glyph.db"
    make(path, "old store")
    with serve(path) as server:
        response = server.request("POST", "/api/persist/listings", headers=JSON, body=json.dumps(RECORDS).encode())
    expected = not_migrated(path, "0001", "0001")
    assert (response.status, response.json()) == (503, {**expected, "detail": expected["errors"][0]["message"]})


def test_a_database_newer_than_the_plugin_is_503_too(db_path):
    conn = connect(db_path)
    conn.execute("INSERT INTO glyph_migrations (id, name, checksum, applied_at) VALUES ('9999', 'future', 'x', 'now')")
    conn.close()
    with serve(db_path) as server:
        response = server.get("/api/imports")
    assert (response.status, response.json()["errors"]) == (
        503,
        [
            {
                "message": f"The database glyph is at schema version 9999, newer than the {NEWEST} this "
                f"datasette-glyph needs: upgrade datasette-glyph, or take the database back with "
                f"datasette glyph-migrate {db_path} --to {NEWEST}"
            }
        ],
    )


@pytest.mark.parametrize("page", ["/-/glyph/imports", f"/-/glyph/imports/{A_ID}", "/-/glyph/import"])
def test_pages_say_the_same(tmp_path, page):
    path = tmp_path / "glyph.db"
    make(path, "old store")
    with serve(path) as server:
        response = server.get(page)
    message = not_migrated(path, "0001", "0001")["errors"][0]["message"]
    assert (response.status, error_message(response.text)) == (503, message)


def in_a_thread(fn, *args, **kwargs):
    """Start ``fn`` in a thread; returns a function that joins it and gives what ``fn`` returned."""
    result = []
    thread = threading.Thread(target=lambda: result.append(fn(*args, **kwargs)))
    thread.start()

    def join():
        thread.join(120)
        return result[0]

    return join


def test_an_import_never_lands_between_the_steps_of_a_migration(db_path):
    """The import arrives while a migration (another process) holds the lock; when it gets the lock the database
    is one version down, so it is refused, and nothing of it is written."""
    with serve(db_path, write_wait_ms=120_000) as server:
        down_one_step = "from datasette_glyph.engine import migrator\nmigrator.migrate(conn, rollback=1)\n"
        with lock_held_elsewhere(db_path, "write", then=down_one_step):
            answer = in_a_thread(server.request, "POST", "/api/import", headers=JSON, body=json.dumps(RECORDS).encode())
            wait_until_waiting_for_a_lock(server.process)
        response = answer()
    assert (response.status, response.json()) == (503, not_migrated(db_path, PREVIOUS, PREVIOUS))
    conn = connect(db_path)
    assert conn.execute("SELECT COUNT(*) FROM import_batches").fetchone()[0] == 0
    conn.close()


def test_an_import_waits_for_a_lock_and_then_imports(db_path):
    with serve(db_path, write_wait_ms=120_000) as server:
        with lock_held_elsewhere(db_path, "write"):
            answer = in_a_thread(server.request, "POST", "/api/import", headers=JSON, body=json.dumps(RECORDS).encode())
            wait_until_waiting_for_a_lock(server.process)  # the import has met the lock and waits
        response = answer()
    assert (response.status, response.json()["ok"], response.json()["record_count"]) == (200, True, 1)


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


@pytest.mark.parametrize(
    "method,url,headers,body",
    [
        ("POST", "/api/import", JSON, json.dumps(RECORDS).encode()),
        ("DELETE", f"/api/imports/{A_ID}", {}, b""),
    ],
)
def test_a_busy_writer_means_a_bounded_wait_then_503_with_retry_after(db_path, method, url, headers, body):
    """The lock is held until the answer has come: an answer at all shows that the wait was bounded."""
    conn = connect(db_path)
    insert_market(conn)
    conn.close()
    before = tables(db_path)
    with serve(db_path, write_wait_ms=200) as server:
        with lock_held_elsewhere(db_path, "write"):
            response = server.request(method, url, headers=headers, body=body)
    assert (response.status, response.headers.get("retry-after"), response.json()) == (503, "5", BUSY)
    assert tables(db_path) == before


def test_a_full_database_is_a_507_and_nothing_is_written(tmp_path, db_path):
    """The database file may not grow past 20 more pages (a plugin sets max_page_count on the server's
    connections, as a full disk would have it)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "full_disk.py").write_text(FULL_DISK_PLUGIN)
    before = tables(db_path)
    records = [dict(RECORDS[0], notes="x" * 2000) for _ in range(200)]
    settings = {"allow_import": True, "allow_rollback": True}
    with running_server(db_path, plugin_config=settings, extra_args=["--plugins-dir", str(plugins)]) as server:
        response = server.request("POST", "/api/import", headers=JSON, body=json.dumps(records).encode())
        log = server.log()
    assert (response.status, response.headers.get("retry-after"), response.json()) == (
        507,
        None,
        {
            "ok": False,
            "errors": [{"message": "The database's disk is full; the import was not saved (nothing was written)."}],
            "more": 0,
        },
    )
    assert (tables(db_path), "Traceback" in log) == (before, False)


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
