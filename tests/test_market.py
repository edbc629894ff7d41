"""The market generator (``datasette_glyph.engine.sample``, ``datasette glyph-sample``) and the files in ``sample/``."""

import csv
import functools
import hashlib
import io
from pathlib import Path

import pytest

from datasette_glyph.engine import lineage, sample
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.sqlite import connect

from .support import run_cli

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample" / "scored_sample.csv"
SAMPLE_NEXT = REPO / "sample" / "scored_sample_next.csv"
BROKEN = REPO / "sample" / "broken_sample.csv"
# The command that made sample/scored_sample_next.csv from sample/scored_sample.csv.
SAMPLE_NEXT_OPTIONS = ["--after", "sample/scored_sample.csv", "--changed", "0.25", "--removed", "0.1", "--added", "0.1"]


run = functools.partial(run_cli, "glyph-sample", catch_exceptions=False)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def records(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_same_arguments_same_bytes_and_a_smaller_market_is_a_prefix(tmp_path):
    one, two, other, bigger = (tmp_path / n for n in ("one.csv", "two.csv", "other.csv", "bigger.csv"))
    sample.write_market(one, 200, seed=3)
    sample.write_market(two, 200, seed=3)
    sample.write_market(other, 200, seed=4)
    sample.write_market(bigger, 500, seed=3)
    assert sha256(one) == sha256(two) != sha256(other)
    assert bigger.read_bytes().startswith(one.read_bytes())
    assert one.read_bytes().count(b"\r\n") == 201


def test_a_market_file_is_realistic_and_imports_whole(tmp_path, conn):
    path = sample.write_market(tmp_path / "market.csv", 2000, seed=1)
    rows = records(path)
    assert rows[0] == sample.COLUMNS and len(sample.COLUMNS) == 23
    assert {len(row) for row in rows[1:]} == {23}
    listings = [dict(zip(rows[0], row)) for row in rows[1:]]
    assert len({row["source_url"] for row in listings}) == 2000
    specs = {}
    for row in listings:
        spec = tuple(row[c] for c in ("vram_gb", "mig_support", "nvlink", "tdp_watts", "generation", "form_factor"))
        assert specs.setdefault(row["canonical_model"], spec) == spec  # a model's specs never vary
    assert len(specs) > 20
    assert {row["condition"] for row in listings} == {"new", "used", "refurbished"}
    assert any("," in row["seller"] for row in listings) and any('"' in row["title"] for row in listings)
    assert 0 < sum(1 for row in listings if row["notes"]) < 400
    assert all(0 <= float(row["score"]) <= 1 and float(row["price"]) > 0 for row in listings)
    result = import_csv(conn, path)
    assert (result.record_count, result.ignored_columns, result.first_model) == (
        2000,
        [],
        listings[0]["canonical_model"],
    )


def test_snapshots_are_deterministic_and_say_what_changed():
    one = sample.market_snapshots(3, 50, seed=4)
    assert sample.market_snapshots(3, 50, seed=4) == one
    assert sample.market_snapshots(3, 50, seed=5) != one
    assert list(sample.iter_market(50, seed=4)) == one[0][0]
    (first, second, third), (to_second, to_third) = one
    assert [len(first), len(second), len(third)] == [
        50,
        50 - len(to_second.removed) + len(to_second.added),
        len(second) - len(to_third.removed) + len(to_third.added),
    ]
    url = sample.URL_PREFIX
    assert (to_second.added, to_third.added) == ([url + "51", url + "52"], [url + "53", url + "54"])
    before = {row["source_url"]: row for row in first}
    after = {row["source_url"]: row for row in second}
    assert sorted(set(before) - set(after)) == sorted(to_second.removed)
    assert {
        u: (before[u]["price"], after[u]["price"])
        for u in after
        if u in before and before[u]["price"] != after[u]["price"]
    } == to_second.changed  # noqa: E501
    assert {row["seen_at"][:10] for row in second} == {"2025-05-02"}


def test_next_snapshot_of_a_file_keeps_its_rows_as_written(tmp_path):
    rows = sample.read_csv(SAMPLE)
    after, changes = sample.next_snapshot(rows, seed=1, changed=0, removed=0, added=0.05)
    assert (changes.changed, changes.removed, changes.added) == (
        {},
        [],
        ["https://example.com/listing/41", "https://example.com/listing/42"],
    )
    text = sample.csv_text(after[:40])
    original = [r[:14] + r[15:] for r in records(SAMPLE)]  # all but seen_at, which moves to the next day
    assert [r[:14] + r[15:] for r in csv.reader(io.StringIO(text))] == original
    assert sample.day_after(rows).isoformat() == "2025-05-29"


def test_the_shipped_second_snapshot_is_the_generators(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "next.csv"
    result = run(out, *SAMPLE_NEXT_OPTIONS)
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "",
        f"Wrote 37 listings to {out}; since sample/scored_sample.csv: 9 changed price, 7 removed, 4 added\n",
    )
    assert out.read_bytes() == SAMPLE_NEXT.read_bytes()


def test_the_sample_snapshots_diff_as_the_generator_says(conn):
    first = import_csv(conn, SAMPLE).import_id
    second = import_csv(conn, SAMPLE_NEXT).import_id
    diff = lineage.diff_imports(conn, first, second)
    assert (diff.changed, diff.removed, diff.added, diff.unchanged, diff.notes) == (9, 7, 4, 24, [])


def test_glyph_sample_snapshots(tmp_path):
    result = run(tmp_path / "day.csv", "--rows", "100", "--snapshots", "3", "--seed", "2")
    names = [tmp_path / f"day-{n}.csv" for n in (1, 2, 3)]
    assert (result.exit_code, result.stderr) == (
        0,
        f"Wrote 100 listings to {names[0]}\n"
        f"Wrote 101 listings to {names[1]}; since {names[0]}: 14 changed price, 4 removed, 5 added\n"
        f"Wrote 101 listings to {names[2]}; since {names[1]}: 9 changed price, 5 removed, 5 added\n",
    )
    snapshots, _ = sample.market_snapshots(3, 100, seed=2)
    assert [n.read_bytes().decode("utf-8") for n in names] == [sample.csv_text(s) for s in snapshots]


def test_glyph_sample_to_standard_output():
    result = run("-", "--rows", "5")
    assert (result.exit_code, result.stdout_bytes.decode("utf-8"), result.stderr) == (
        0,
        sample.csv_text(sample.first_snapshot(5)),
        "Wrote 5 listings to standard output\n",
    )


@pytest.mark.parametrize(
    "args, error",
    [
        (["-", "--snapshots", "2"], "Error: Several snapshots need a file name to number; - writes only one."),
        (
            ["out.csv", "--rows", "5", "--after", str(SAMPLE)],
            "Error: --rows makes a new market; --after continues the one in a file. Use one of them.",
        ),
        (["out.csv", "--rows", "-1"], "Error: Invalid value for '--rows': -1 is not in the range x>=0."),
        (
            ["here.csv", "--after", "here.csv"],
            "Error: here.csv is the file --after reads; write the next snapshot to another file.",
        ),
    ],
)
def test_glyph_sample_usage_errors(tmp_path, monkeypatch, args, error):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.csv").write_bytes(SAMPLE.read_bytes())
    result = run(*args)
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (2, error)
    assert (sorted(p.name for p in tmp_path.iterdir()), (tmp_path / "here.csv").read_bytes()) == (
        ["here.csv"],
        SAMPLE.read_bytes(),
    )


def test_glyph_sample_streams_a_market_of_any_size(tmp_path):
    """The command writes listing by listing the same bytes as the functions that build whole lists."""
    big, small = tmp_path / "big.csv", tmp_path / "small.csv"
    assert run(big, "--rows", "30000", "--snapshots", "2").exit_code == 0
    assert run(small, "--rows", "1000").exit_code == 0
    assert (tmp_path / "big-1.csv").read_bytes().startswith(small.read_bytes())
    snapshots, _ = sample.market_snapshots(2, 30000, seed=1)
    assert (tmp_path / "big-2.csv").read_bytes().decode("utf-8") == sample.csv_text(snapshots[1])


def test_the_broken_sample_is_refused_whole(db_path):
    result = run_cli("glyph-import", db_path, BROKEN)
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"Error: {BROKEN} was not imported (3 errors); nothing was written:\n"
        f"  {BROKEN}: Line 3, column price: '-5' is negative; price must be >= 0\n"
        f"  {BROKEN}: Line 5, column nvlink: 'maybe' is not a boolean (use True/False, true/false, 1/0 or yes/no)\n"
        f"  {BROKEN}: Line 6: expected 11 fields as in the header, found 10\n",
    )
    conn = connect(db_path)
    assert conn.execute("SELECT COUNT(*) FROM import_batches").fetchone()[0] == 0
    conn.close()
