"""Where uploads wait to be imported: a private folder, one locked folder per server process, files checked.

An upload's temp file must be one that only the server's user can create or replace, the file imported must
be the file received, servers sharing the folder must never remove each other's uploads, and a full disk
under the folder is a JSON 507, never a 500.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.sqlite import StorageError, connect
from datasette_glyph.web import uploads

from .locks import lock_held_elsewhere, wait_until_waiting_for_a_lock
from .server import datasette_command, free_port, make_scored_csv, running_server, spawn, write_config_file
from .support import wait_until

CSV = b"canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score\nA10,24,0,False,150,2397.01,0.6504\n"
OTHER_USER = 12345


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def files_in(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- The upload folder -------------------------------------------------------------------------------------


def test_the_upload_folder_is_created_private(tmp_path):
    folder = uploads.upload_dir(str(tmp_path / "a" / "uploads"))
    assert (folder, mode(folder), os.lstat(folder).st_uid) == (tmp_path / "a" / "uploads", 0o700, os.getuid())


def test_the_default_upload_folder_is_per_user_in_the_system_temp_folder():
    expected = Path(tempfile.gettempdir()) / f"datasette-glyph-uploads-{os.getuid()}"
    assert (uploads.upload_dir(None), mode(expected)) == (expected, 0o700)


def test_an_own_folder_open_to_others_is_made_private(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    folder.chmod(0o777)
    assert uploads.check_upload_dir(str(folder)) == (
        folder,
        f"the upload folder {folder} was open to other users (mode 0777); it is now private (0700)",
    )
    assert mode(folder) == 0o700


def test_a_folder_of_another_user_is_refused(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir(mode=0o700)
    os.chown(folder, OTHER_USER, OTHER_USER)
    with pytest.raises(uploads.UnsafeUploadDir) as caught:
        uploads.upload_dir(str(folder))
    assert (caught.value.status, caught.value.message) == (
        503,
        f"The upload folder {folder} belongs to user id {OTHER_USER}, not to the server's user ({os.getuid()}): "
        "whoever owns it could read or replace uploads. Remove it, or set upload_dir to a folder of the server's "
        "user.",
    )


def test_a_symbolic_link_is_refused(tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "uploads").symlink_to(tmp_path / "real")
    with pytest.raises(uploads.UnsafeUploadDir) as caught:
        uploads.upload_dir(str(tmp_path / "uploads"))
    assert caught.value.message == (
        f"The upload folder {tmp_path / 'uploads'} is a symbolic link; refusing to write uploads through it. "
        "Set upload_dir to a real folder that only the server's user can write to."
    )


def test_a_server_refuses_to_start_on_an_unsafe_upload_folder(tmp_path, db_path):
    folder = tmp_path / "uploads"
    folder.mkdir(mode=0o700)
    os.chown(folder, OTHER_USER, OTHER_USER)
    config = write_config_file(tmp_path, None, {"allow_import": True, "upload_dir": str(folder)})
    run = subprocess.run(
        [datasette_command(), "serve", str(db_path), "-m", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    output = run.stdout + run.stderr
    assert (run.returncode != 0, "Traceback" in output) == (True, False), output
    assert f"datasette-glyph: The upload folder {folder} belongs to user id {OTHER_USER}" in output


def test_a_server_makes_an_open_upload_folder_private_and_says_so(tmp_path, db_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    folder.chmod(0o757)
    with running_server(db_path, plugin_config={"allow_import": True, "upload_dir": str(folder)}) as server:
        assert mode(folder) == 0o700
        note = (
            f"datasette-glyph: the upload folder {folder} was open to other users (mode 0757); it is now private (0700)"
        )
        assert note in server.log().splitlines()


# --- One locked folder per process; cleaning up only what nobody holds -------------------------------------

# A process that writes one upload temp file into the shared folder, says where, and waits to be killed.
UPLOADER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from datasette_glyph.web import uploads
    path = uploads.new_temp_path(Path(sys.argv[1]))
    path.write_bytes(b"in flight")
    print(os.getpid(), path, flush=True)
    sys.stdin.read()
    """)


def start_uploader(folder: Path, pid_namespace: bool):
    # With a PID namespace of its own, each uploader is process 1, as in a container: host name and process
    # id cannot tell such servers apart, and cleanup must not need to.
    prefix = ["unshare", "--pid", "--fork", "--kill-child"] if pid_namespace else []
    process = subprocess.Popen(
        prefix + [sys.executable, "-c", UPLOADER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    pid, path = process.stdout.readline().split()
    return process, int(pid), Path(path)


def test_cleanup_removes_only_folders_whose_process_has_ended(tmp_path):
    folder = uploads.upload_dir(str(tmp_path / "common"))
    (folder / "notes.txt").write_bytes(b"not ours")
    (folder / "glyph-upload.host.1.0123abcd.part").write_bytes(b"an older version's file")
    first, first_pid, first_file = start_uploader(folder, pid_namespace=True)
    second, second_pid, second_file = start_uploader(folder, pid_namespace=True)
    try:
        assert (first_pid, second_pid) == (1, 1)
        assert uploads.clean_stale_uploads(folder) == []
        assert (first_file.read_bytes(), second_file.read_bytes()) == (b"in flight", b"in flight")
        os.killpg(os.getpgid(first.pid), 0)  # still there
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        time.sleep(0.2)  # unshare's child (the uploader) goes when unshare does
        # the killed process's folder is stale only once nothing holds its lock
        deadline = time.monotonic() + 10
        removed = []
        while not removed and time.monotonic() < deadline:
            removed = uploads.clean_stale_uploads(folder)
            time.sleep(0.05)
        assert removed == [first_file.parent]
        assert files_in(folder) == sorted(
            ["notes.txt", "glyph-upload.host.1.0123abcd.part", str(second_file.relative_to(folder))]
        )
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.stdin.close()
                process.wait(10)


def test_this_process_never_removes_its_own_folder(tmp_path):
    folder = uploads.upload_dir(str(tmp_path / "common"))
    path = uploads.new_temp_path(folder)
    path.write_bytes(b"x")
    assert (uploads.clean_stale_uploads(folder), path.read_bytes()) == ([], b"x")
    assert (mode(path.parent), path.parent.parent) == (0o700, folder)


# --- The file imported is the file received ----------------------------------------------------------------


def test_the_engine_refuses_a_file_that_is_not_the_one_received(db_path, tmp_path):
    conn = connect(db_path)
    path = tmp_path / "upload.csv"
    path.write_bytes(CSV.replace(b"A10", b"L4"))  # what an attacker put in its place
    with pytest.raises(StorageError) as caught:
        import_csv(conn, path, expected_sha256=hashlib.sha256(CSV).hexdigest())
    assert str(caught.value) == (
        "The file read for the import is not the file received (its SHA-256 differs): it was changed on disk "
        "meanwhile; the import was not saved (nothing was written)."
    )
    assert conn.execute("SELECT count(*) FROM import_batches").fetchone()[0] == 0
    result = import_csv(conn, io.BytesIO(CSV), expected_sha256=hashlib.sha256(CSV).hexdigest())
    assert result.sha256 == hashlib.sha256(CSV).hexdigest()


def test_a_server_refuses_an_upload_swapped_while_it_waited(db_path, tmp_path):
    folder = tmp_path / "uploads"
    big = make_scored_csv(tmp_path / "big.csv", 100_000)
    small = tmp_path / "small.csv"
    small.write_bytes(CSV)
    swapped = CSV.replace(b"A10", b"SWAPPED_9000")
    answers = {}
    with running_server(db_path, plugin_config={"allow_import": True, "upload_dir": str(folder)}) as server:

        def post(name, path):
            answers[name] = server.upload_csv(path)

        def part_of_size(size):
            found = [p for p in folder.rglob("*.part") if p.stat().st_size == size]
            return found[0] if found else None

        # Another process holds the write lock: the big file's import, all in, waits for it on the write thread
        # (seen asleep in SQLite's busy handler), and the small one queues behind it until the lock goes
        with lock_held_elsewhere(db_path, "write"):
            first = threading.Thread(target=post, args=("big", big))
            first.start()
            wait_until(lambda: part_of_size(big.stat().st_size), "the big file all in")
            wait_until_waiting_for_a_lock(server.process)
            second = threading.Thread(target=post, args=("small", small))
            second.start()
            waiting = wait_until(lambda: part_of_size(len(CSV)), "the small file all in")
            replacement = waiting.with_name("replacement")
            replacement.write_bytes(swapped)
            os.replace(replacement, waiting)
        first.join(120)
        second.join(120)
        assert answers["big"].status == 200
        assert (answers["small"].status, answers["small"].json()) == (
            503,
            {
                "ok": False,
                "errors": [
                    {
                        "message": "The file read for the import is not the file received (its SHA-256 differs): it "
                        "was changed on disk meanwhile; the import was not saved (nothing was written)."
                    }
                ],
                "more": 0,
            },
        )
        listed = server.get("/api/imports").json()["imports"]
        assert [b["record_count"] for b in listed] == [100_000]
        assert server.get("/api/listings?model=SWAPPED_9000").json() == []
        assert "Traceback" not in server.log()


# --- A full disk under the upload folder -------------------------------------------------------------------

FULL = "The server's upload folder is full; the upload was not kept (nothing was written)"


def test_a_full_upload_disk_is_a_json_507_and_the_next_upload_works(db_path, tmp_path):
    # The server may write no file over 1 MiB (RLIMIT_FSIZE): the upload folder fills up as a full disk does.
    folder = tmp_path / "uploads"
    config = write_config_file(tmp_path, None, {"allow_import": True, "upload_dir": str(folder)})
    argv = ["prlimit", f"--fsize={1 << 20}", datasette_command(), "serve", str(db_path), "--host", "127.0.0.1"]
    argv += ["-m", str(config)]
    env = dict(os.environ, DATASETTE_SECRET="glyph-test-secret")
    server = spawn(db_path, free_port(), argv, tmp_path / "server.log", env, 60)
    try:
        big = make_scored_csv(tmp_path / "big.csv", 20_000)  # about 4 MB
        answer = server.upload_csv(big)
        assert (answer.status, answer.json()) == (507, {"ok": False, "errors": [{"message": FULL}], "more": 0})
        body = json.dumps(
            [
                {
                    "canonical_model": "L4",
                    "vram_gb": 24,
                    "mig_support": 0,
                    "nvlink": False,
                    "tdp_watts": 72,
                    "price": 2000,
                    "score": 0.5,
                    "notes": "n" * 2_000_000,
                }
            ]
        ).encode()
        answer = server.request("POST", "/api/import", body=body, headers={"Content-Type": "application/json"})
        assert (answer.status, answer.json()) == (507, {"ok": False, "errors": [{"message": FULL}], "more": 0})
        assert files_in(folder) == []
        small = tmp_path / "small.csv"
        small.write_bytes(CSV)
        answer = server.upload_csv(small)
        assert (answer.status, answer.json()["ok"], answer.json()["record_count"]) == (200, True, 1)
        assert [b["record_count"] for b in server.get("/api/imports").json()["imports"]] == [1]
        assert "Traceback" not in server.log()
    finally:
        server.stop()
