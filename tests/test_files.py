"""Kept originals: every import keeps the bytes it read; download, re-import, verify, prune, sweep, crash safety."""

import contextlib
import datetime
import functools
import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from datasette.cli import cli
from datasette_test import actor_cookie

from datasette_glyph.engine import errors, file_upkeep, files, importer, lineage, migrator
from datasette_glyph.engine.sqlite import connect

from . import support
from .server import datasette_command, make_scored_csv

CSV = (
    b"canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score,region,source_url\r\n"
    b"H100_PCIE_80GB,80,7,True,350,21000.0,0.81,US,https://example.com/1\r\n"
    b'A100_40GB_PCIE,40,7,True,250,6000.0,0.7,"EU, west",https://example.com/2\r\n'
    b"RTX_4090,24,0,False,450,1500.0,0.5,,https://example.com/3\r\n"
)
CSV_SHA = hashlib.sha256(CSV).hexdigest()
JSON_BODY = (
    b'[{"canonical_model": "L40S", "vram_gb": 48, "mig_support": 0, "nvlink": false, "tdp_watts": 350,'
    b' "price": 7000.5, "score": 0.66, "notes": "caf\xc3\xa9"}]'
)
LISTING_COLUMNS = (
    "canonical_model, price, vram_gb, tdp_watts, mig_support, nvlink, score, region, source_url, import_index"
)


make_ds = functools.partial(support.make_ds, root=True)


async def upload(ds, content=CSV, filename="prices.csv", fields=None, cookies=None):
    return await ds.client.post(
        "/api/import",
        content=support.multipart(
            *(support.part(name, value.encode()) for name, value in (fields or {}).items()),
            support.part("file", content, filename=filename, content_type="text/csv"),
        ),
        headers={"content-type": support.MULTIPART},
        cookies=cookies or {},
    )


def store_of(db_path) -> Path:
    return Path(str(db_path) + "-files.db")


def kept_shas(db_path) -> list:
    """The SHA-256 of every file kept in the store's files database (None for one still being written)."""
    if not store_of(db_path).exists():
        return []
    with contextlib.closing(sqlite3.connect(store_of(db_path))) as files_conn:
        return [r[0] for r in files_conn.execute("SELECT sha256 FROM kept_files ORDER BY sha256")]


def kept_bytes(db_path, sha) -> bytes:
    with contextlib.closing(sqlite3.connect(store_of(db_path))) as files_conn:
        return b"".join(
            zlib.decompress(r[0])
            for r in files_conn.execute(
                "SELECT data FROM kept_chunks WHERE file_id = (SELECT id FROM kept_files WHERE sha256 = ?) "
                "ORDER BY seq",
                [sha],
            )
        )


def replace_kept(db_path, sha, content: bytes) -> None:
    """Put other bytes in place of a kept file's, compressed as the store compresses them (only the SHA-256
    can tell)."""
    with contextlib.closing(sqlite3.connect(store_of(db_path))) as files_conn, files_conn:
        file_id = files_conn.execute("SELECT id FROM kept_files WHERE sha256 = ?", [sha]).fetchone()[0]
        files_conn.execute("DELETE FROM kept_chunks WHERE file_id = ?", [file_id])
        files_conn.execute("INSERT INTO kept_chunks VALUES (?, 0, ?)", [file_id, zlib.compress(content)])


def drop_kept(db_path, sha) -> None:
    with contextlib.closing(sqlite3.connect(store_of(db_path))) as files_conn, files_conn:
        file_id = files_conn.execute("SELECT id FROM kept_files WHERE sha256 = ?", [sha]).fetchone()[0]
        files_conn.execute("DELETE FROM kept_chunks WHERE file_id = ?", [file_id])
        files_conn.execute("DELETE FROM kept_files WHERE id = ?", [file_id])


def stored_size(db_path, sha) -> int:
    with contextlib.closing(sqlite3.connect(store_of(db_path))) as files_conn:
        return files_conn.execute("SELECT stored_bytes FROM kept_files WHERE sha256 = ?", [sha]).fetchone()[0]


def the_store(conn, db_path):
    return files.open_store(conn, db_path)


def listing_rows(conn, import_id):
    return conn.execute(
        f"SELECT {LISTING_COLUMNS} FROM scored_listings WHERE import_id = ? ORDER BY import_index", [import_id]
    ).fetchall()


def file_records(conn):
    return conn.execute(
        "SELECT import_id, sha256, bytes, media_type, keep, reimport_of, removed_at FROM import_files ORDER BY rowid"
    ).fetchall()


def keep(conn, db_path, content=CSV, **options):
    """Import ``content`` keeping its original, as the command line and the server do."""
    import io

    original = files.Original(files.open_store(conn, db_path), files.CSV_TYPE)
    return importer.import_csv(conn, io.BytesIO(content), original=original, **options)


# The store -------------------------------------------------------------------------------------------------


def test_an_import_keeps_its_bytes_compressed_under_their_sha256(conn, db_path):
    result = keep(conn, db_path, filename="prices.csv")
    assert (kept_shas(db_path), kept_bytes(db_path, CSV_SHA)) == ([CSV_SHA], CSV)
    assert stat.S_IMODE(os.stat(store_of(db_path)).st_mode) == 0o600
    assert file_records(conn) == [(result.import_id, CSV_SHA, len(CSV), "text/csv", 0, None, None)]
    assert conn.execute("SELECT stored_bytes FROM import_files").fetchone()[0] == stored_size(db_path, CSV_SHA)


def test_the_same_bytes_imported_twice_are_one_file(conn, db_path):
    first = keep(conn, db_path)
    second = keep(conn, db_path)
    assert kept_shas(db_path) == [CSV_SHA]
    assert [r[:2] for r in file_records(conn)] == [(first.import_id, CSV_SHA), (second.import_id, CSV_SHA)]


@pytest.mark.parametrize(
    "content",
    [
        b"",  # refused before a row is read
        b"canonical_model,price\n",  # refused at its header
        CSV + b"RTX_4090,24,0,maybe,450,1500.0,0.5,,x\r\n",  # refused at its last row
    ],
)
def test_a_refused_import_keeps_nothing(conn, db_path, content):
    with pytest.raises(errors.ImportFailed):
        keep(conn, db_path, content=content)
    assert (kept_shas(db_path), file_records(conn)) == ([], [])


def test_the_store_must_be_private(tmp_path, conn, db_path):
    store = store_of(db_path)
    store.symlink_to(tmp_path / "elsewhere.db")
    result = CliRunner().invoke(cli, ["glyph-import", str(db_path), "-"], input=CSV.decode())
    assert (result.exit_code, result.output) == (
        1,
        f"Error: The files database {store} is a symbolic link; refusing to keep originals through it\n",
    )


# Command line -----------------------------------------------------------------------------------------------


run = support.run_cli


def test_cli_import_keeps_the_file_unless_told_not_to(tmp_path, db_path):
    path = tmp_path / "prices.csv"
    path.write_bytes(CSV)
    assert run("glyph-import", db_path, path, "--quiet").exit_code == 0
    assert run("glyph-import", db_path, path, "--quiet", "--no-keep-file").exit_code == 0
    elsewhere = tmp_path / "kept.db"
    moved = run("glyph-import", db_path, path, "--quiet", "--files-db", elsewhere)
    assert (moved.exit_code, moved.output) == (
        1,
        f"Error: {db_path} keeps its original files in {store_of(db_path)}, not {elsewhere}; leave the files "
        "database setting out (the store finds its own)\n",
    )
    assert run("glyph-import", db_path, path, "--quiet").exit_code == 0
    conn = connect(db_path)
    ids = [r[0] for r in conn.execute("SELECT import_id FROM import_batches ORDER BY id")]
    assert [r[0] for r in file_records(conn)] == [ids[0], ids[2]]
    assert (kept_shas(db_path), elsewhere.exists()) == ([CSV_SHA], False)


def test_cli_reimport_gives_identical_rows_with_a_new_id(tmp_path, db_path):
    path = tmp_path / "prices.csv"
    path.write_bytes(CSV)
    run("glyph-import", db_path, path, "--source", "broker-x", "--description", "nightly")
    conn = connect(db_path)
    first = conn.execute("SELECT import_id FROM import_batches").fetchone()[0]
    result = run("glyph-reimport", db_path, first[:8], "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert (body["reimport_of"], body["previous_import_id"], body["record_count"]) == (first, first, 3)
    assert (body["filename"], body["source"], body["description"], body["sha256"]) == (
        "prices.csv",
        "broker-x",
        "nightly",
        CSV_SHA,
    )
    assert body["import_id"] != first
    assert listing_rows(conn, body["import_id"]) == listing_rows(conn, first)
    assert file_records(conn)[1] == (body["import_id"], CSV_SHA, len(CSV), "text/csv", 0, first, None)


def test_cli_brings_back_a_rolled_back_import(tmp_path, db_path):
    path = tmp_path / "prices.csv"
    path.write_bytes(CSV)
    run("glyph-import", db_path, path)
    conn = connect(db_path)
    first = conn.execute("SELECT import_id FROM import_batches").fetchone()[0]
    before = listing_rows(conn, first)
    lineage.rollback_import(conn, first, actor="ops")
    assert listing_rows(conn, first) == []
    result = run("glyph-reimport", db_path, first)
    again = conn.execute("SELECT import_id FROM import_batches ORDER BY id DESC").fetchone()[0]
    assert (result.exit_code, result.output) == (
        0,
        f"Imported 3 rows from the kept file of {first} as {again}\n",
    )
    assert listing_rows(conn, again) == before


@pytest.mark.parametrize("kept", [False, True])
def test_cli_reimport_refuses_what_it_cannot_read(tmp_path, db_path, kept):
    path = tmp_path / "prices.csv"
    path.write_bytes(CSV)
    run("glyph-import", db_path, path, *([] if kept else ["--no-keep-file"]))
    first = connect(db_path).execute("SELECT import_id FROM import_batches").fetchone()[0]
    if kept:
        drop_kept(db_path, CSV_SHA)
        why = (
            f"The original file of import {first} is missing from the files database {store_of(db_path)}; "
            "datasette glyph-files --verify reports every missing or damaged file"
        )
    else:
        why = f"The original file of import {first} was not kept, so it cannot be re-imported"
    result = run("glyph-reimport", db_path, first)
    assert (result.exit_code, result.output) == (1, f"Error: {why} ({db_path}); nothing was imported\n")
    assert connect(db_path).execute("SELECT COUNT(*) FROM import_batches").fetchone()[0] == 1


def test_verify_reports_a_flipped_byte_and_a_missing_file(tmp_path, conn, db_path):
    first = keep(conn, db_path)
    other = CSV.replace(b"21000.0", b"21500.0")
    second = keep(conn, db_path, content=other)
    third = keep(conn, db_path, content=other)
    store = store_of(db_path)
    assert (run("glyph-files", db_path, "--verify").exit_code, run("glyph-files", db_path, "--verify").output) == (
        0,
        f"Verified 2 kept file(s) in {store}: 0 missing or damaged\n",
    )
    # A flipped byte in the stored original: compressed as the store does, so that only the SHA-256 can tell
    damaged = bytearray(CSV)
    damaged[60] ^= 0x01
    replace_kept(db_path, CSV_SHA, bytes(damaged))
    other_sha = hashlib.sha256(other).hexdigest()
    drop_kept(db_path, other_sha)
    result = run("glyph-files", db_path, "--verify")
    damaged_sha = hashlib.sha256(bytes(damaged)).hexdigest()
    assert (result.exit_code, result.output) == (
        1,
        f"damaged: {CSV_SHA} of import {first.import_id}: holds {len(CSV):,} bytes with SHA-256 {damaged_sha}\n"
        f"missing: {other_sha} of imports {second.import_id}, {third.import_id}: not in {store}\n"
        f"Verified 2 kept file(s) in {store}: 2 missing or damaged\n",
    )
    # a re-import reads the damaged file, sees its SHA-256 differ, and writes nothing
    result = run("glyph-reimport", db_path, first.import_id)
    assert (result.exit_code, result.output) == (
        1,
        f"Error: The kept file of import {first.import_id} is damaged (its SHA-256 is not the batch's); nothing was "
        f"imported. datasette glyph-files {db_path} --verify reports every damaged file\n",
    )
    assert conn.execute("SELECT COUNT(*) FROM import_batches").fetchone()[0] == 3


def corrupt_chunk(db_path, sha, data=b"not zlib at all") -> None:
    with contextlib.closing(sqlite3.connect(store_of(db_path))) as files_conn, files_conn:
        files_conn.execute(
            "UPDATE kept_chunks SET data = ? WHERE file_id = (SELECT id FROM kept_files WHERE sha256 = ?)", [data, sha]
        )


def test_verify_reports_a_file_that_is_not_gzip(conn, db_path):
    result = keep(conn, db_path)
    corrupt_chunk(db_path, CSV_SHA)
    output = run("glyph-files", db_path, "--verify")
    assert (output.exit_code, output.output) == (
        1,
        f"damaged: {CSV_SHA} of import {result.import_id}: cannot be read: Error -3 while decompressing data: "
        "incorrect header check\n"
        f"Verified 1 kept file(s) in {store_of(db_path)}: 1 missing or damaged\n",
    )


# Prune ------------------------------------------------------------------------------------------------------

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
# (label, source, days before NOW, content number: the same number is the same bytes)
BATCHES = [
    ("a-old", "broker", 40, 1),
    ("a-mid", "broker", 20, 2),
    ("a-new", "broker", 1, 3),
    ("b-old", "market", 50, 4),
    ("b-new", "market", 2, 1),  # the same bytes as a-old
    ("c-old", None, 45, 5),
]


def prune_setup(conn, db_path, marked=()):
    ids = {}
    for label, source, days, number in BATCHES:
        content = CSV.replace(b"21000.0", f"{21000 + number}.0".encode())
        result = keep(conn, db_path, content=content, source_name=source)
        when = (NOW - datetime.timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S.%f")
        conn.execute("UPDATE import_batches SET imported_at = ? WHERE import_id = ?", [when, result.import_id])
        ids[label] = result.import_id
    for label in marked:
        file_upkeep.set_keep(conn, ids[label], True)
    return ids


@pytest.mark.parametrize(
    "options,marked,gone",
    [
        ({"older_than": datetime.timedelta(days=30)}, (), ["b-old", "c-old"]),  # a-old's bytes are b-new's too
        ({"older_than": datetime.timedelta(days=10)}, (), ["a-mid", "b-old", "c-old"]),
        ({"older_than": datetime.timedelta(days=10)}, ("b-old",), ["a-mid", "c-old"]),
        ({"keep_last": 1}, (), ["a-mid", "b-old"]),  # a-old's bytes: b-new is market's newest
        ({"keep_last": 2}, (), []),
        ({"keep_last": 0}, (), ["a-old", "a-mid", "a-new", "b-old", "b-new", "c-old"]),
        ({"keep_last": 0}, ("a-new", "b-new"), ["a-mid", "b-old", "c-old"]),
        ({"keep_last": 1, "older_than": datetime.timedelta(days=25)}, (), ["b-old"]),
    ],
)
def test_prune_rules(conn, db_path, options, marked, gone):
    ids = prune_setup(conn, db_path, marked)
    labels = {v: k for k, v in ids.items()}
    file_upkeep.prune(conn, the_store(conn, db_path), now=NOW, **options)
    removed = [labels[i] for i, *_, removed_at in file_records(conn) if removed_at is not None]
    assert removed == gone
    live = {sha for _, sha, *_rest, removed_at in file_records(conn) if removed_at is None}
    assert kept_shas(db_path) == sorted(live)
    assert file_upkeep.verify(conn, the_store(conn, db_path)) == (len(live), [])


def test_prune_command_and_the_keep_mark(conn, db_path):
    ids = prune_setup(conn, db_path)
    result = run("glyph-files", db_path, "--keep", ids["b-old"][:8])
    assert (result.exit_code, result.output) == (0, f"Marked the file of {ids['b-old']} as kept\n")
    marked_sha = file_records(conn)[3][1]
    sizes = {sha: stored_size(db_path, sha) for sha in {r[1] for r in file_records(conn)}}
    freed = sum(size for sha, size in sizes.items() if sha != marked_sha)
    result = run("glyph-files", db_path, "--prune", "--older-than", "0d")
    assert (result.exit_code, result.output) == (0, f"Pruned 4 file(s) of 5 imports, freeing {freed:,} bytes\n")
    assert kept_shas(db_path) == [marked_sha]
    response = run("glyph-reimport", db_path, ids["a-old"])
    assert response.exit_code == 1
    assert response.output.startswith(f"Error: The original file of import {ids['a-old']} was removed (pruned) at ")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--prune"], "--prune needs --older-than, --keep-last or both"),
        (["--older-than", "3d"], "--older-than and --keep-last go with --prune"),
        ([], "Say what to do: --verify, --prune, --keep, --release, --delete or --move-from"),
    ],
)
def test_glyph_files_usage(db_path, args, message):
    result = run("glyph-files", db_path, *args)
    assert (result.exit_code, result.output.splitlines()[-1]) == (2, f"Error: {message}")


def test_an_age_must_have_a_unit(db_path):
    result = run("glyph-files", db_path, "--prune", "--older-than", "30")
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for '--older-than': '30' is not an age such as 30d, 12h, 90m or 2w"
    )


# Sweep ------------------------------------------------------------------------------------------------------


def test_sweep_removes_only_old_files_no_batch_names(conn, db_path):
    named = keep(conn, db_path)
    old = time.time() - files.SWEEP_GRACE_SECONDS - 5
    with contextlib.closing(sqlite3.connect(store_of(db_path))) as files_conn, files_conn:
        files_conn.execute("UPDATE kept_files SET written_at = ?", [old])
        for sha, when in [("a" * 64, old), ("b" * 64, time.time()), (None, old), (None, time.time())]:
            files_conn.execute("INSERT INTO kept_files (sha256, written_at) VALUES (?, ?)", [sha, when])
    assert file_upkeep.sweep(conn, the_store(conn, db_path)) == sorted([files.TEMP_PREFIX + "4", "a" * 64])
    assert kept_shas(db_path) == [None, CSV_SHA, "b" * 64]
    assert file_records(conn)[0][0] == named.import_id


# HTTP -------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_upload_download_round_trip(db_path):
    ds = await make_ds(db_path, allow_import=True)
    response = await upload(ds, filename="prices 2026/05.csv")
    assert response.status_code == 200, response.text
    import_id = response.json()["import_id"]
    download = await ds.client.get(f"/api/imports/{import_id}/file")
    assert (download.status_code, download.content) == (200, CSV)
    assert {k: download.headers[k] for k in ("content-type", "content-length", "content-disposition")} == {
        "content-type": "text/csv; charset=utf-8",
        "content-length": str(len(CSV)),
        "content-disposition": "attachment; filename=\"05.csv\"; filename*=UTF-8''05.csv",
    }
    listed = (await ds.client.get("/api/imports")).json()["imports"][0]
    stored = stored_size(db_path, CSV_SHA)
    assert {k: listed[k] for k in ("file_kept", "file_bytes", "file_stored_bytes", "reimport_of")} == {
        "file_kept": True,
        "file_bytes": len(CSV),
        "file_stored_bytes": stored,
        "reimport_of": None,
    }
    detail = (await ds.client.get(f"/api/imports/{import_id}")).json()
    assert (detail["file_kept"], detail["file_bytes"]) == (True, len(CSV))


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/api/import", "/api/persist/listings"])
async def test_a_json_body_is_kept_as_received(db_path, path):
    ds = await make_ds(db_path, allow_import=True)
    response = await ds.client.post(path, content=JSON_BODY, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    import_id = response.json()["import_id"]
    download = await ds.client.get(f"/api/imports/{import_id}/file")
    assert (download.status_code, download.content, download.headers["content-type"]) == (
        200,
        JSON_BODY,
        "application/json",
    )
    assert download.headers["content-disposition"] == (
        f"attachment; filename=\"{import_id}.json\"; filename*=UTF-8''{import_id}.json"
    )
    again = await ds.client.post(f"/api/imports/{import_id}/reimport")
    assert again.status_code == 200, again.text
    conn = connect(db_path)
    assert conn.execute(
        "SELECT import_id, canonical_model, price, notes FROM scored_listings ORDER BY id"
    ).fetchall() == [(import_id, "L40S", 7000.5, "café"), (again.json()["import_id"], "L40S", 7000.5, "café")]


@pytest.mark.asyncio
async def test_keep_files_off(db_path):
    ds = await make_ds(db_path, allow_import=True, keep_files=False)
    response = await upload(ds)
    import_id = response.json()["import_id"]
    assert not store_of(db_path).exists()
    download = await ds.client.get(f"/api/imports/{import_id}/file")
    assert (download.status_code, download.json()) == (
        404,
        {"ok": False, "errors": [{"message": f"The original file of import {import_id} was not kept"}], "more": 0},
    )
    listed = (await ds.client.get("/api/imports")).json()["imports"][0]
    assert (listed["file_kept"], listed["file_bytes"]) == (False, None)
    again = await ds.client.post(f"/api/imports/{import_id}/reimport")
    assert (again.status_code, again.json()["errors"]) == (
        404,
        [{"message": f"The original file of import {import_id} was not kept, so it cannot be re-imported"}],
    )


@pytest.mark.asyncio
async def test_files_dir_setting(tmp_path, db_path):
    elsewhere = tmp_path / "kept-originals.db"
    ds = await make_ds(db_path, allow_import=True, files_db=str(elsewhere))
    import_id = (await upload(ds)).json()["import_id"]
    with contextlib.closing(sqlite3.connect(elsewhere)) as files_conn:
        assert files_conn.execute("SELECT sha256 FROM kept_files").fetchall() == [(CSV_SHA,)]
    assert store_of(db_path).exists() is False
    assert (await ds.client.get(f"/api/imports/{import_id}/file")).content == CSV


@pytest.mark.asyncio
async def test_unknown_import(db_path):
    ds = await make_ds(db_path, allow_import=True)
    for response in [
        await ds.client.get("/api/imports/no-such-id/file"),
        await ds.client.post("/api/imports/no-such-id/reimport"),
    ]:
        assert (response.status_code, response.json()["errors"]) == (
            404,
            [{"message": "No import with import_id 'no-such-id'"}],
        )


@pytest.mark.asyncio
async def test_rollback_then_reimport_over_http(db_path):
    ds = await make_ds(db_path, allow_import=True, allow_rollback=True)
    first = (await upload(ds, fields={"source": "broker-x"})).json()
    conn = connect(db_path)
    before = listing_rows(conn, first["import_id"])
    rolled_back = await ds.client.delete(f"/api/imports/{first['import_id']}")
    answer = rolled_back.json()
    assert (rolled_back.status_code, answer["import_id"], answer["status"], answer["removed"]) == (
        200,
        first["import_id"],
        "rolled_back",
        {"scored_listings": 3, "listings": 0, "quantized_listings": 0, "models": 3},
    )
    assert listing_rows(conn, first["import_id"]) == []
    # the rolled-back batch's file is still there to download
    assert (await ds.client.get(f"/api/imports/{first['import_id']}/file")).content == CSV
    response = await ds.client.post(f"/api/imports/{first['import_id']}/reimport")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["reimport_of"], body["previous_import_id"], body["source"], body["record_count"]) == (
        first["import_id"],
        None,  # the only earlier batch of these bytes was rolled back: no earlier import
        "broker-x",
        3,
    )
    assert body["links"]["page"] == f"/-/glyph/imports/{body['import_id']}"
    assert listing_rows(conn, body["import_id"]) == before
    page = await ds.client.get(f"/-/glyph/imports/{body['import_id']}")
    assert f'Re-imported from <a href="/-/glyph/imports/{first["import_id"]}" id="glyph-reimport-of">' in page.text


@pytest.mark.asyncio
async def test_pages_link_the_file_and_offer_a_reimport(db_path):
    ds = await make_ds(db_path, allow_import={"id": "alice"})
    conn = connect(db_path)
    result = keep(conn, db_path, filename="prices.csv")
    cookies = {"ds_actor": actor_cookie(ds, {"id": "alice"})}
    url = f"/api/imports/{result.import_id}/file"
    page = (await ds.client.get(f"/-/glyph/imports/{result.import_id}", cookies=cookies)).text
    assert f'<a href="{url}" id="glyph-file-download">Download the original file</a> ({len(CSV)} bytes' in page
    assert f'<form id="glyph-reimport" class="core" action="/api/imports/{result.import_id}/reimport"' in page
    anonymous = (await ds.client.get(f"/-/glyph/imports/{result.import_id}")).text
    assert (url in anonymous, 'id="glyph-reimport"' in anonymous) == (True, False)
    listing = (await ds.client.get("/-/glyph/imports")).text
    assert (
        f'<a href="{url}" class="glyph-file-link" title="Download the file as it was imported">{len(CSV)} bytes</a>'
        in listing
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "actor,download,reimport",
    [
        (None, 403, 403),
        ({"id": "bob"}, 200, 403),
        ({"id": "alice"}, 200, 200),
    ],
)
async def test_permissions(db_path, actor, download, reimport):
    ds = await make_ds(
        db_path,
        metadata={"databases": {"glyph": {"allow": {"id": ["alice", "bob"]}}}},
        allow_import={"id": "alice"},
    )
    conn = connect(db_path)
    result = keep(conn, db_path)
    cookies = {"ds_actor": actor_cookie(ds, actor)} if actor else {}
    headers = {}
    if actor and support.TOKEN_CSRF:
        page = await ds.client.get("/-/glyph/imports", cookies=cookies)
        cookies["ds_csrftoken"] = page.cookies.get("ds_csrftoken") or ""
        headers["x-csrftoken"] = cookies["ds_csrftoken"]
    got = await ds.client.get(f"/api/imports/{result.import_id}/file", cookies=cookies)
    posted = await ds.client.post(f"/api/imports/{result.import_id}/reimport", cookies=cookies, headers=headers)
    assert (got.status_code, posted.status_code) == (download, reimport)
    if download == 403:
        assert got.json()["errors"] == [{"message": "You may not view import_batches"}]
    if reimport == 403 and actor:
        assert posted.json()["errors"] == [
            {"message": "Actor 'bob' may not import: the glyph-import permission is required"}
        ]
    batches = conn.execute("SELECT COUNT(*) FROM import_batches").fetchone()[0]
    assert batches == (2 if reimport == 200 else 1)


@pytest.mark.asyncio
async def test_a_missing_kept_file_is_a_404_not_a_500(db_path):
    ds = await make_ds(db_path)
    conn = connect(db_path)
    result = keep(conn, db_path)
    drop_kept(db_path, CSV_SHA)
    response = await ds.client.get(f"/api/imports/{result.import_id}/file")
    assert (response.status_code, response.json()["errors"]) == (
        404,
        [
            {
                "message": f"The original file of import {result.import_id} is missing from the files database "
                f"{store_of(db_path)}; "
                "datasette glyph-files --verify reports every missing or damaged file"
            }
        ],
    )


# Migration 0007 -----------------------------------------------------------------------------------------------


def test_0007_round_trips_with_kept_files(conn, db_path):
    first = keep(conn, db_path)
    files.reimport(conn, the_store(conn, db_path), first.import_id, actor="ops")
    keep(conn, db_path, content=CSV.replace(b"1500.0", b"1400.0"))
    file_upkeep.set_keep(conn, first.import_id, True)
    file_upkeep.prune(conn, the_store(conn, db_path), keep_last=1)
    records = file_records(conn)
    top = conn.execute("SELECT rowid, * FROM import_files ORDER BY rowid").fetchall()
    schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    assert [s.direction for s in migrator.migrate(conn, target="0005")] == ["down"] * (
        len(migrator.load_migrations()) - 5
    )
    assert "import_files" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert ("glyph_kept_0007_import_files", 3) in migrator.kept_aside(conn)
    migrator.migrate(conn)
    assert conn.execute("SELECT rowid, * FROM import_files ORDER BY rowid").fetchall() == top
    assert conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == schema
    assert file_records(conn) == records
    assert migrator.kept_aside(conn) == []


# Crash safety -------------------------------------------------------------------------------------------------


def _kept_names(store: Path):
    """The SHA-256 of every complete file in a files database."""
    if not store.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as files_conn:
            return [r[0] for r in files_conn.execute("SELECT sha256 FROM kept_files WHERE sha256 IS NOT NULL")]
    except sqlite3.OperationalError:  # not yet created
        return []


def _wait_for(predicate, timeout, interval=0.0005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(interval)
    return None


@pytest.mark.asyncio
async def test_sigkill_between_keeping_the_file_and_committing_leaves_no_orphan(tmp_path):
    """A real glyph-import, SIGKILLed right after its kept file is renamed into place and the folder synced,
    before its commit. The next server start sweeps the file."""
    csv_path = make_scored_csv(tmp_path / "big.csv", 60_000)
    caught = None
    for attempt in range(4):  # on a busy machine the import may commit before it is stopped: aim again
        db_path = tmp_path / f"attempt{attempt}" / "glyph.db"
        db_path.parent.mkdir()
        conn = connect(db_path)
        migrator.migrate(conn)
        earlier = keep(conn, db_path)  # a committed batch whose file must survive the sweep
        store = store_of(db_path)
        process = subprocess.Popen(
            [datasette_command(), "glyph-import", str(db_path), str(csv_path), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            appeared = _wait_for(lambda store=store: [n for n in _kept_names(store) if n != CSV_SHA], timeout=120)
            os.kill(process.pid, signal.SIGSTOP)
            committed = conn.execute("SELECT COUNT(*) FROM import_batches").fetchone()[0]
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.wait(timeout=60)
        assert appeared, process.stderr.read()
        if committed == 1:  # stopped between renaming its file into place and committing
            caught = appeared[0]
            break
    assert caught is not None, "the import always committed before it could be stopped"
    assert process.returncode == -signal.SIGKILL
    assert sqlite3.connect(db_path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # the killed import left its file (and nothing in the database); a young file is left alone
    assert sorted(_kept_names(store)) == sorted([CSV_SHA, caught])
    await make_ds(db_path)
    assert sorted(_kept_names(store)) == sorted([CSV_SHA, caught])
    # an hour later the next server start removes it; every committed batch still has its file
    old = time.time() - files.SWEEP_GRACE_SECONDS - 1
    with contextlib.closing(sqlite3.connect(store)) as files_conn, files_conn:
        files_conn.execute("UPDATE kept_files SET written_at = ?", [old])
    await make_ds(db_path)
    assert kept_shas(db_path) == [CSV_SHA]
    assert file_records(conn) == [(earlier.import_id, CSV_SHA, len(CSV), "text/csv", 0, None, None)]
    assert file_upkeep.verify(conn, the_store(conn, db_path)) == (1, [])
    # and the next import of the same file works
    assert run("glyph-import", db_path, csv_path, "--quiet").exit_code == 0
    assert file_upkeep.verify(conn, the_store(conn, db_path)) == (2, [])


def test_an_original_that_cannot_be_kept_refuses_the_import(tmp_path, conn, db_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    original = files.Original(files.FileStore(gone / "files.db", "x", str(db_path)), files.CSV_TYPE)
    gone.rmdir()  # the folder vanished under the server: the file cannot be written
    with pytest.raises(files.KeptFileError) as e:
        importer.import_csv(conn, __import__("io").BytesIO(CSV), original=original)
    assert (str(e.value), e.value.status) == (
        f"The original file could not be kept in {gone / 'files.db'} (No such file or directory); the import "
        "was not saved (nothing was written). Make room there, or set keep_files: false (--no-keep-file).",
        503,
    )
    assert conn.execute("SELECT COUNT(*) FROM import_batches").fetchone()[0] == 0


@pytest.mark.asyncio
async def test_a_kept_file_that_is_not_gzip_is_refused_as_damaged(db_path):
    ds = await make_ds(db_path)
    conn = connect(db_path)
    result = keep(conn, db_path)
    corrupt_chunk(db_path, CSV_SHA, b"plain text, not compressed")
    response = await ds.client.get(f"/api/imports/{result.import_id}/file")
    assert (response.status_code, response.json()["errors"]) == (
        503,
        [{"message": files.damaged_message(result.import_id)}],
    )
    again = await ds.client.post(f"/api/imports/{result.import_id}/reimport")
    # nobody may import here; with the permission it is the 503 below
    assert (again.status_code, again.json()) == (
        403,
        {
            "ok": False,
            "errors": [{"message": "An anonymous request may not import: the glyph-import permission is required"}],
            "more": 0,
        },
    )
    ds = await make_ds(db_path, allow_import=True)
    again = await ds.client.post(f"/api/imports/{result.import_id}/reimport")
    assert (again.status_code, again.json()["errors"]) == (
        503,
        [
            {
                "message": f"The kept file of import {result.import_id} is damaged (its SHA-256 is not the batch's); "
                "nothing was imported. datasette glyph-files --verify reports every damaged file"
            }
        ],
    )
