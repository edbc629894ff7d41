import json
import os
import sqlite3
import subprocess
import sys

import pytest
from datasette.utils import StartupError
from datasette_test import Datasette

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect

from .conftest import build_legacy_database
from .server import running_server

NEWEST = migrator.load_migrations()[-1].id
APPLIED = [f"datasette-glyph: applied {m.label} (up) to glyph" for m in migrator.load_migrations()]
NOT_OURS = {
    "legacy": "datasette-glyph: glyph ({path}) was made by the old store; startup does not adopt it: adopt it with "
    "datasette glyph-migrate {path}",
    "someone else's": "datasette-glyph: glyph ({path}) is not a glyph database: it holds the tables notes, not "
    "glyph's nor the old store's, so neither startup nor glyph-migrate migrates it. " + migrator.NOT_GLYPH_ADVICE,
}


def make(path, setup):
    """A database file in one of the states startup can meet."""
    if setup == "created":
        sqlite3.connect(path).execute("VACUUM")  # what datasette --create makes: a file with no tables
        return
    if setup == "legacy":
        build_legacy_database(path).close()
        return
    conn = connect(path)
    if setup == "at 0001":
        migrator.migrate(conn, target="0001")
    elif setup == "newest":
        migrator.migrate(conn)
    elif setup == "someone else's":
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.close()


def contents(path):
    conn = sqlite3.connect(path)
    schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    rows = {name: conn.execute(f"SELECT * FROM [{name}]").fetchall() for kind, name, _ in schema if kind == "table"}
    conn.close()
    return schema, rows


def version_of(path):
    conn = sqlite3.connect(path)
    version = migrator.current_version(conn)
    conn.close()
    return version


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "setup,config,expected_version,expected_stderr,untouched",
    [
        ("created", {"migrate": True}, NEWEST, APPLIED, False),
        ("at 0001", {"migrate": True}, NEWEST, APPLIED[1:], False),
        ("newest", {"migrate": True}, NEWEST, [], True),
        ("legacy", {"migrate": True}, "0001", [NOT_OURS["legacy"]], True),
        ("someone else's", {"migrate": True}, None, [NOT_OURS["someone else's"]], True),
        ("created", {"migrate": False}, None, [], True),
        ("created", {}, None, [], True),
        ("at 0001", {}, "0001", [], True),
    ],
)
async def test_startup_migrates_only_a_database_it_owns(
    tmp_path, capsys, setup, config, expected_version, expected_stderr, untouched
):
    path = str(tmp_path / "glyph.db")
    make(path, setup)
    before = contents(path)
    ds = Datasette([path], plugin_config={"datasette-glyph": config})
    await ds.invoke_startup()
    expected_stderr = [line.format(path=path) for line in expected_stderr]
    assert (version_of(path), capsys.readouterr().err.splitlines()) == (expected_version, expected_stderr)
    assert (contents(path) == before) is untouched


@pytest.mark.asyncio
async def test_a_migrated_database_is_ready_to_serve(tmp_path):
    path = str(tmp_path / "glyph.db")
    make(path, "created")
    ds = Datasette([path], plugin_config={"datasette-glyph": {"migrate": True}})
    await ds.invoke_startup()
    response = await ds.client.get("/glyph/import_batches.json?_shape=array")
    assert (response.status_code, response.json()) == (200, [])
    response = await ds.client.get("/glyph/glyph_migrations.json?_shape=array&_col=name")
    assert [row["name"] for row in response.json()] == [m.name for m in migrator.load_migrations()]


@pytest.mark.asyncio
async def test_startup_refuses_to_run_on_a_drifted_database(tmp_path):
    path = str(tmp_path / "glyph.db")
    make(path, "at 0001")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE glyph_migrations SET checksum = 'edited' WHERE id = '0001'")
    ds = Datasette([path], plugin_config={"datasette-glyph": {"migrate": True}})
    with pytest.raises(StartupError) as e:
        await ds.invoke_startup()
    assert str(e.value) == (
        "datasette-glyph could not migrate glyph: Checksum drift: 0001_inherited_schema.up.sql changed after it was "
        "applied to this database. Restore the file as it was (a change to the schema needs a new migration), then "
        "run again."
    )
    assert version_of(path) == "0001"


@pytest.mark.asyncio
async def test_startup_leaves_an_immutable_database_alone(tmp_path, capsys):
    path = str(tmp_path / "glyph.db")
    make(path, "at 0001")
    ds = Datasette(immutables=[path], plugin_config={"datasette-glyph": {"migrate": True}})
    await ds.invoke_startup()
    assert (version_of(path), capsys.readouterr().err.splitlines()) == (
        "0001",
        ["datasette-glyph: glyph is read-only; not migrating it"],
    )


def test_datasette_create_with_migrate_gives_a_ready_database(tmp_path):
    """The real command: ``datasette glyph.db --create`` with ``migrate: true`` makes, migrates and serves it."""
    metadata = tmp_path / "metadata.json"
    metadata.write_text(json.dumps({"plugins": {"datasette-glyph": {"database": "glyph", "migrate": True}}}))
    datasette = os.path.join(os.path.dirname(sys.executable), "datasette")
    result = subprocess.run(
        [datasette, "glyph.db", "--create", "-m", str(metadata), "--get", "/glyph/scored_listings.json?_shape=array"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (0, "[]\n", APPLIED)
    assert version_of(str(tmp_path / "glyph.db")) == NEWEST


@pytest.fixture
def unwritable(tmp_path):
    """A database file this process cannot write, as on a read-only filesystem: made immutable with chattr when
    running as root (who may write any file whatever its mode), read-only by mode otherwise."""
    path = tmp_path / "glyph.db"
    make(str(path), "newest")
    sqlite3.connect(path).execute("PRAGMA journal_mode = delete")  # no WAL files left beside it
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o444)
    yield path
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_unwritable_database_with_migrate_gives_one_line_and_is_served_read_only(unwritable, tmp_path):
    metadata = tmp_path / "metadata.json"
    metadata.write_text(json.dumps({"plugins": {"datasette-glyph": {"database": "glyph", "migrate": True}}}))
    datasette = os.path.join(os.path.dirname(sys.executable), "datasette")
    result = subprocess.run(
        [datasette, str(unwritable), "-m", str(metadata), "--get", "/-/versions.json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr.splitlines()) == (
        0,
        [f"datasette-glyph: cannot write glyph ({unwritable} is not writable); serving it read-only, not migrating it"],
    )
    assert "datasette" in json.loads(result.stdout)


@pytest.mark.asyncio
async def test_an_unwritable_database_refuses_imports_as_a_read_only_server(unwritable):
    ds = Datasette([str(unwritable)], plugin_config={"datasette-glyph": {"migrate": True, "allow_import": True}})
    await ds.invoke_startup()
    response = await ds.client.post("/api/import", content=b"[]", headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["errors"][0]["message"].startswith("This server is read-only")) == (
        503,
        True,
    )


def test_a_database_that_is_not_glyphs_gets_one_story_from_startup_the_api_and_glyph_migrate(tmp_path):
    """Startup, the API's 503 and glyph-migrate say the same of a file with other tables: what it is, that
    glyph-migrate will not adopt it, and what to do instead; none of them changes it."""
    path = tmp_path / "notes.db"
    make(path, "someone else's")
    before = contents(path)
    held = "it holds the tables notes, not glyph's nor the old store's"
    with running_server(path, plugin_config={"migrate": True}, log_dir=tmp_path) as server:
        answer = server.get("/api/imports")
        log = server.log()
    migrated = subprocess.run(
        [sys.executable, "-m", "datasette", "glyph-migrate", str(path)], capture_output=True, text=True
    )
    assert (
        f"datasette-glyph: notes ({path}) is not a glyph database: {held}, so neither startup nor glyph-migrate "
        f"migrates it. {migrator.NOT_GLYPH_ADVICE}\n"
    ) in log
    assert (answer.status, answer.json()) == (
        503,
        {
            "ok": False,
            "errors": [{"message": f"The database notes is not a glyph database: {held}. {migrator.NOT_GLYPH_ADVICE}"}],
            "more": 0,
            "schema_version": None,
            "needed_version": NEWEST,
            "command": None,
        },
    )
    assert (migrated.returncode, migrated.stdout, migrated.stderr) == (
        1,
        "",
        "Error: This is not a database of the old store, nor one datasette-glyph manages: expected the tables "
        "import_batches, listings, models, quantized_listings, schema_version, scored_listings; missing "
        "import_batches, listings, models, quantized_listings, schema_version, scored_listings; found notes. "
        f"Nothing was changed. {migrator.NOT_GLYPH_ADVICE}.\n",
    )
    assert "glyph-migrate glyph.db" in migrator.NOT_GLYPH_ADVICE and contents(path) == before
