"""Large CSV files read by a second process (``reading.Reader``): the same batch as the one-process path, the
same errors, the original kept byte for byte, and a refused import, with nothing written, when the reading
process stops or the file changes under it."""

import io
import os
import signal
import subprocess
import sys

import pytest

from datasette_glyph.engine import batch, files, migrator, reading
from datasette_glyph.engine.errors import ImportFailed
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.sqlite import StorageError, connect

from .server import datasette_command, make_scored_csv
from .support import HEADER, data, database_checksum, open_ds

ROW = "A10,24,0,False,150,{price},0.5,https://example.com/{n}"


def rows_file(path, lines, header=HEADER + ",source_url", newline="\n", prefix=b""):
    path.write_bytes(prefix + (newline.join([header, *lines]) + newline).encode())
    return path


def good_lines(count, start=0):
    return [ROW.format(price=100 + n, n=n) for n in range(start, start + count)]


@pytest.fixture
def readers(monkeypatch):
    """Every file takes the second process; returns the readers started, to show that they were."""
    started = []
    real = reading.Reader.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(reading, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(reading.Reader, "__init__", init)
    return started


def outcome(db_path, path, **options):
    """What importing ``path`` into a fresh database gives: the batch and its rows, or the errors."""
    conn = connect(db_path)
    migrator.migrate(conn)
    try:
        result = import_csv(conn, path, filename="f.csv", **options)
    except ImportFailed as e:
        written = "SELECT (SELECT COUNT(*) FROM scored_listings), (SELECT COUNT(*) FROM import_batches)"
        return "refused", e.errors, e.more, conn.execute(written).fetchone()
    finally:
        conn.close()
    conn = connect(db_path)
    rows = conn.execute(
        "SELECT canonical_model, price, score, source_url, import_index FROM scored_listings ORDER BY id"
    ).fetchall()
    summary = conn.execute(
        "SELECT canonical_model, row_count, min_price, median_price, max_price FROM import_model_stats"
    ).fetchall()
    conn.close()
    return "imported", result.record_count, result.sha256, result.bytes, rows, summary


# Each case: how to write the file, and the one outcome both paths must give ("imported" or "refused")
CASES = {
    "valid": ("imported", lambda p: rows_file(p, good_lines(1_234))),
    "market file": ("imported", lambda p: make_scored_csv(p, 2_000, seed=4)),
    "BOM and CRLF, a quoted field over two lines": (
        "imported",
        lambda p: rows_file(
            p,
            good_lines(700) + ['A10,24,0,False,150,9,0.5,"https://example.com/a\nb"'] + good_lines(600, 700),
            newline="\r\n",
            prefix=b"\xef\xbb\xbf",
        ),
    ),
    "bad values in several chunks, more than max_errors": (
        "refused",
        lambda p: rows_file(
            p, [line if n % 97 else line.replace(",150,", ",hot,") for n, line in enumerate(good_lines(6_000))]
        ),
    ),
    "a short row": ("refused", lambda p: rows_file(p, good_lines(800) + ["A10,24,0"] + good_lines(10, 800))),
    "broken UTF-8 after two chunks": (
        "refused",
        lambda p: p.write_bytes(
            data(HEADER + ",source_url", *good_lines(1_100))
            + b"A10,24,0,False,150,1,0.5,https://\xff\n"
            + data(*good_lines(5))
        )
        and p,
    ),
    "a quote left open": ("refused", lambda p: rows_file(p, good_lines(900) + ['A10,24,0,False,150,1,0.5,"https://x'])),
}


@pytest.mark.parametrize("case", CASES)
def test_the_second_process_gives_the_batch_or_the_errors_the_first_would(tmp_path, monkeypatch, readers, case):
    expected, write = CASES[case]
    path = write(tmp_path / "f.csv")
    two = outcome(tmp_path / "two.db", path, max_errors=20)
    assert len(readers) == 1 and readers[0].process.returncode == 0
    monkeypatch.setattr(reading, "PARALLEL_MIN_BYTES", 10**12)
    one = outcome(tmp_path / "one.db", path, max_errors=20)
    assert len(readers) == 1
    assert two == one
    assert two[0] == expected
    if expected == "refused":
        assert two[1] and two[3] == (0, 0)  # at least one error named, and nothing written


def test_a_file_object_opened_on_a_path_is_read_by_the_second_process_from_its_start(tmp_path, readers, conn):
    path = rows_file(tmp_path / "f.csv", good_lines(1_500))
    with open(path, "rb") as f:
        result = import_csv(conn, f, filename="upload.csv")
    assert (len(readers), result.record_count, result.filename) == (1, 1_500, "upload.csv")
    with open(path, "rb") as f:
        f.read(10)  # not at its start: this process reads it
        with pytest.raises(ImportFailed):
            import_csv(conn, f)
    with pytest.raises(ImportFailed):
        import_csv(conn, io.BytesIO(path.read_bytes()[10:]))  # no path at all
    assert len(readers) == 1


def test_progress_and_the_kept_original_see_every_byte_once(tmp_path, readers, conn, db_path):
    path = make_scored_csv(tmp_path / "f.csv", 3_000, seed=5)
    seen = []
    original = files.Original(files.open_store(conn, db_path), files.CSV_TYPE)
    result = import_csv(conn, path, progress=seen.append, original=original)
    content = path.read_bytes()
    assert len(readers) == 1
    assert seen == sorted(seen) and seen[-1] == len(content)
    assert files.original_bytes(conn, files.open_store(conn, db_path), result.import_id) == content


def test_a_reading_process_that_stops_refuses_the_import_and_writes_nothing(tmp_path, readers, conn, db_path):
    import_csv(conn, rows_file(tmp_path / "first.csv", good_lines(50)))
    before = database_checksum(conn)
    # More than the pipe and the parent's buffer on it hold (PIPE_BYTES each): the child is still sending
    path = rows_file(tmp_path / "f.csv", good_lines(100_000))
    assert path.stat().st_size > 4 * reading.PIPE_BYTES
    real_write = batch.ImportWriter.write

    def write(batch, typed):
        real_write(batch, typed)
        os.kill(readers[-1].process.pid, signal.SIGKILL)  # after the first chunk

    original = files.Original(files.open_store(conn, db_path), files.CSV_TYPE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch.ImportWriter, "write", write)
        with pytest.raises(StorageError) as failure:
            import_csv(conn, path, original=original)
    assert failure.value.kind == "reading" and failure.value.status == 503
    assert "stopped before the file's end" in str(failure.value)
    assert readers[-1].process.returncode == -signal.SIGKILL
    assert database_checksum(conn) == before
    assert not conn.in_transaction
    assert connect(f"{db_path}-files.db").execute("SELECT COUNT(*) FROM kept_files").fetchone() == (0,)
    assert import_csv(conn, path).record_count == 100_000  # the next import goes through


def test_a_file_changed_while_it_is_read_is_refused(tmp_path, readers, conn, monkeypatch):
    before = database_checksum(conn)
    path = rows_file(tmp_path / "f.csv", good_lines(2_000))
    real_digest = reading.Reader.digest

    def digest(reader):
        with open(path, "ab") as f:  # after the reading process has finished with it
            f.write(b"A10,24,0,False,150,1,0.5,https://example.com/late\n")
        return real_digest(reader)

    monkeypatch.setattr(reading.Reader, "digest", digest)
    with pytest.raises(StorageError) as failure:
        import_csv(conn, path)
    assert failure.value.kind == "changed"
    assert database_checksum(conn) == before


def test_without_a_second_process_the_file_is_read_here(tmp_path, readers, conn, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    result = import_csv(conn, rows_file(tmp_path / "f.csv", good_lines(1_000)))
    assert (len(readers), result.record_count) == (0, 1_000)


def test_glyph_import_of_a_file_past_the_threshold(tmp_path, db_path):
    """The command line, in a process of its own, on a file of more than PARALLEL_MIN_BYTES: every row, and the
    original kept byte for byte."""
    db = db_path
    big = make_scored_csv(tmp_path / "big.csv", 190_000, seed=6)
    assert big.stat().st_size > reading.PARALLEL_MIN_BYTES
    run = subprocess.run(
        [datasette_command(), "glyph-import", str(db), str(big), "--source", "nightly"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    conn = connect(db)
    (import_id, count, sha256) = conn.execute("SELECT import_id, record_count, sha256 FROM import_batches").fetchone()
    assert count == 190_000
    assert conn.execute("SELECT COUNT(*), MAX(import_index) FROM scored_listings").fetchone() == (190_000, 190_000)
    assert files.original_bytes(conn, files.open_store(conn, db), import_id) == big.read_bytes()
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.asyncio
async def test_an_upload_is_read_by_the_second_process_and_answered_as_before(tmp_path, db_path, readers):
    folder = tmp_path / "uploads"
    folder.mkdir()
    ds = await open_ds(db_path, folder)
    good = rows_file(tmp_path / "good.csv", good_lines(1_200)).read_bytes()
    response = await ds.client.post("/api/import", files={"file": ("good.csv", good, "text/csv")})
    assert (response.status_code, response.json()["record_count"], len(readers)) == (200, 1_200, 1)
    bad = good.replace(b",150,", b",hot,", 1)
    response = await ds.client.post("/api/import", files={"file": ("bad.csv", bad, "text/csv")})
    assert (response.status_code, len(readers)) == (422, 2)
    assert response.json()["errors"] == [
        {
            "line": 2,
            "column": "tdp_watts",
            "value": "hot",
            "message": "Line 2, column tdp_watts: 'hot' is not an integer",
        }
    ]
    assert [p for p in folder.rglob("*") if p.is_file()] == []  # no temp file left


def test_a_reimport_reads_its_compressed_original_here(tmp_path, readers, conn, db_path):
    """A kept original is a gzip file on disk: the stream has the file's name and descriptor, but its bytes are
    not the CSV's, so the second process (which opens the path) must not read it."""
    path = make_scored_csv(tmp_path / "f.csv", 3_000, seed=7)
    original = files.Original(files.open_store(conn, db_path), files.CSV_TYPE)
    first = import_csv(conn, path, original=original)
    assert len(readers) == 1
    again = files.reimport(conn, files.open_store(conn, db_path), first.import_id)
    assert (len(readers), again.record_count, again.sha256) == (1, 3_000, first.sha256)


@pytest.mark.parametrize(
    "content, message, status",
    [
        # The child reads an empty file, or a header missing a column, to its end and sends its last message (0);
        # a file it cannot read as CSV at all stops it at its first line (1)
        (b"", "The file is empty (0 bytes); expected a CSV header and rows", 0),
        (b"\xff\xfe" + "canonical_model\n".encode("utf-16-le"), "this is not a CSV file; it starts like UTF-16", 1),
        (b"price,score\n1,0.5\n", "required column canonical_model is missing", 0),
    ],
)
def test_a_file_refused_by_its_first_line_is_refused_as_before_and_the_child_ends_quietly(
    tmp_path, readers, conn, capfd, monkeypatch, content, message, status
):
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    real_close = reading.Reader.close

    def close(reader):
        # The parent refuses such a file without waiting for the child, and close() would stop a child still
        # running: let the child finish first, so what is checked is how the child itself ends
        reader.process.wait(timeout=60)
        real_close(reader)

    monkeypatch.setattr(reading.Reader, "close", close)
    with pytest.raises(ImportFailed) as failure:
        import_csv(conn, path)
    assert message in failure.value.errors[0]["message"]
    assert [reader.process.returncode for reader in readers] == [status]
    assert "Traceback" not in capfd.readouterr().err
