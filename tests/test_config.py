"""Which database the plugin works on, with the demo metadata.yml and with a database named in the config."""

import subprocess

import pytest

from datasette_glyph.engine.sqlite import connect

from .server import REPO, datasette_command, running_server

METADATA = REPO / "metadata.yml"


@pytest.mark.parametrize("name", ["listings.db", "data/gpu.sqlite", "glyph.db"])
def test_the_demo_metadata_works_with_any_database_name(tmp_path, name):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with running_server(path, metadata_path=METADATA, extra_args=["--create"], log_dir=tmp_path) as server:
        imports = server.get("/api/imports")
        upload = server.upload_csv(REPO / "sample" / "scored_sample.csv")
    assert (imports.status, upload.status, upload.json()["record_count"]) == (200, 200, 40)
    conn = connect(path)
    assert conn.execute("SELECT COUNT(*) FROM scored_listings").fetchone()[0] == 40
    conn.close()


def test_a_configured_database_that_is_not_served_is_a_one_line_error(tmp_path):
    config = tmp_path / "metadata.yml"
    config.write_text("plugins:\n  datasette-glyph:\n    database: glyph\n    migrate: true\n", encoding="utf-8")
    result = subprocess.run(
        [datasette_command(), "other.db", "--create", "-m", str(config), "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "Error: datasette-glyph is configured to use the database 'glyph', which is not being served "
        "(serving: other); serve glyph.db or change plugins: datasette-glyph: database; "
        "removed the empty file other.db\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.yml"]


def test_an_existing_database_is_never_removed(tmp_path, db_path):
    config = tmp_path / "metadata.yml"
    config.write_text("plugins:\n  datasette-glyph:\n    database: elsewhere\n", encoding="utf-8")
    before = db_path.read_bytes()
    result = subprocess.run(
        [datasette_command(), str(db_path), "-m", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert (result.returncode, result.stderr) == (
        1,
        "Error: datasette-glyph is configured to use the database 'elsewhere', which is not being served "
        "(serving: glyph); serve elsewhere.db or change plugins: datasette-glyph: database\n",
    )
    assert db_path.read_bytes() == before
