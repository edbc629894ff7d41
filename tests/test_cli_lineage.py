"""datasette glyph-diff and glyph-rollback: whole outputs, JSON, errors, the actor, atomicity."""

import functools
import json
import sqlite3
from pathlib import Path

import pytest

from datasette_glyph.engine import lineage
from datasette_glyph.engine.sqlite import connect
from datasette_glyph.formats import utc_z

from .hand_market import A_ID, B_ID, C_ID, DIFF_AB, insert_market
from .snapshots import insert_snapshot
from .support import database_checksum, run_cli


@pytest.fixture
def market_path(db_path):
    conn = connect(db_path)
    insert_market(conn)
    conn.close()
    return str(db_path)


run = functools.partial(run_cli, catch_exceptions=False)


REPO = Path(__file__).resolve().parents[1]
SHORT = "give the whole id or at least 8 of its first characters\n"
A2_ID = "aaaaaaaa-0000-4000-8000-000000000009"  # shares its first 13 characters with A_ID


DIFF_AB_TEXT = f"""\
A: {A_ID}  a.csv  source market  imported 2025-05-01T10:00:00Z  6 rows  complete
B: {B_ID}  b.csv  source market  imported 2025-05-02T10:00:00Z  6 rows  complete

By model
model           rows A  rows B  rows +/-   median A   median B  median +/-  score A  score B  score +/-
--------------  ------  ------  --------  ---------  ---------  ----------  -------  -------  ---------
H100_PCIE_80GB       2       2         0  21,000.00  20,500.00     -500.00   0.3750   0.6250    +0.2500
L40S                         3        +3              7,500.00                        0.5000
RTX_4090             4       1        -3   1,900.00   2,200.00     +300.00   0.5625   0.5000    -0.0625

By listing (matched by source_url): 2 changed, 1 added, 1 removed, 1 unchanged
Rows without source_url (not matched): 1 in A, 2 in B
Rows repeating a source_url (the last one counts): 1 in A, 0 in B

change   source_url                         model           old price  new price  price +/-  percent
-------  ---------------------------------  --------------  ---------  ---------  ---------  -------
changed  https://market.example/listing/u1  H100_PCIE_80GB  20,000.00  19,000.00  -1,000.00   -5.00%
changed  https://market.example/listing/u5  RTX_4090         2,100.00   2,200.00    +100.00   +4.76%
added    https://market.example/listing/u6  L40S                        8,000.00
removed  https://market.example/listing/u3  RTX_4090         1,800.00

Showing 1-4 of 4 changes.
"""

DIFF_AC_CHANGED_TEXT = f"""\
A: {A_ID}  a.csv  source market  imported 2025-05-01T10:00:00Z  6 rows  complete
B: {C_ID}  c.csv  source broker  imported 2025-05-03T10:00:00Z  2 rows  complete
A and B come from different sources.

By model
model           rows A  rows B  rows +/-   median A  median B  median +/-  score A  score B  score +/-
--------------  ------  ------  --------  ---------  --------  ----------  -------  -------  ---------
H100_PCIE_80GB       2                -2  21,000.00                         0.3750
RTX_4090             4       2        -2   1,900.00  1,600.00     -300.00   0.5625   0.7500    +0.1875

By listing (matched by source_url): 2 changed, 0 added, 2 removed, 0 unchanged
Rows without source_url (not matched): 1 in A, 0 in B
Rows repeating a source_url (the last one counts): 1 in A, 0 in B

change   source_url                         model     old price  new price   price +/-  percent
-------  ---------------------------------  --------  ---------  ---------  ----------  -------
changed  https://market.example/listing/u1  RTX_4090  20,000.00   1,500.00  -18,500.00  -92.50%

Showing 1-1 of 2 changed listings; for more use --offset 1 or --limit 0.
"""

DIFF_CC_TEXT = f"""\
A: {C_ID}  c.csv  source broker  imported 2025-05-03T10:00:00Z  2 rows  complete
B: {C_ID}  c.csv  source broker  imported 2025-05-03T10:00:00Z  2 rows  complete
Note: A and B are the same import.

By model
model     rows A  rows B  rows +/-  median A  median B  median +/-  score A  score B  score +/-
--------  ------  ------  --------  --------  --------  ----------  -------  -------  ---------
RTX_4090       2       2         0  1,600.00  1,600.00        0.00   0.7500   0.7500     0.0000

By listing (matched by source_url): 0 changed, 0 added, 0 removed, 2 unchanged
Rows without source_url (not matched): 0 in A, 0 in B

No changes.
"""


@pytest.mark.parametrize(
    "args, expected",
    [
        ([A_ID, B_ID], DIFF_AB_TEXT),
        ([A_ID, B_ID, "--limit", "0"], DIFF_AB_TEXT),
        ([A_ID, C_ID, "--kind", "changed", "--limit", "1"], DIFF_AC_CHANGED_TEXT),
        ([C_ID, C_ID], DIFF_CC_TEXT),
        ([A_ID[:8], B_ID[:13]], DIFF_AB_TEXT),  # unique prefixes of 8 characters or more
        ([A_ID.upper(), B_ID], DIFF_AB_TEXT),  # any case
    ],
)
def test_glyph_diff_prints_tables(market_path, args, expected):
    result = run("glyph-diff", market_path, *args)
    assert (result.exit_code, result.stdout, result.stderr) == (0, expected, "")


def test_glyph_diff_pages_changes(market_path):
    result = run("glyph-diff", market_path, A_ID, B_ID, "--limit", "2", "--offset", "1")
    lines = result.stdout.splitlines()
    assert lines[-6:] == [
        "change   source_url                         model     old price  new price  price +/-  percent",
        "-------  ---------------------------------  --------  ---------  ---------  ---------  -------",
        "changed  https://market.example/listing/u5  RTX_4090   2,100.00   2,200.00    +100.00   +4.76%",
        "added    https://market.example/listing/u6  L40S                  8,000.00",
        "",
        "Showing 2-3 of 4 changes; for more use --offset 3 or --limit 0.",
    ]
    past_the_end = run("glyph-diff", market_path, A_ID, B_ID, "--offset", "4").stdout.splitlines()
    assert past_the_end[-1] == "No changes past offset 4 (there are 4)."


def test_glyph_diff_json_is_what_the_api_answers(market_path):
    result = run("glyph-diff", market_path, A_ID, B_ID, "--json", "--limit", "100")
    assert (result.exit_code, json.loads(result.stdout)) == (0, DIFF_AB)


def test_glyph_diff_json_names_the_next_page_as_an_api_path(market_path):
    result = run("glyph-diff", market_path, A_ID, B_ID, "--json", "--kind", "changed", "--limit", "1")
    body = json.loads(result.stdout)
    assert (result.exit_code, body["ok"], len(body["changes"]), body["next"]) == (
        0,
        True,
        1,
        f"/api/imports/{A_ID}/diff/{B_ID}?kind=changed&limit=1&offset=1",
    )


@pytest.mark.parametrize(
    "args, error",
    [
        ([A_ID, "nope"], "Error: No import with import_id 'nope' in {path}; " + SHORT),
        (["nope", B_ID], "Error: No import with import_id 'nope' in {path}; " + SHORT),
        ([A_ID, "aaaaaaa"], "Error: No import with import_id 'aaaaaaa' in {path}; " + SHORT),
        ([A_ID, "dddddddd"], "Error: No import with import_id 'dddddddd' in {path}\n"),
        (
            [A_ID, "aaaaaaaa-0000"],
            "Error: Import id prefix 'aaaaaaaa-0000' is ambiguous: it matches 2 imports: "
            + f"{A2_ID}, {A_ID}; give more characters (in {{path}})\n",
        ),
    ],
)
def test_glyph_diff_of_an_unknown_import(market_path, args, error):
    conn = connect(market_path)
    insert_snapshot(conn, [{"canonical_model": "A10", "price": 1.0, "score": 0.5}], import_id=A2_ID)
    conn.close()
    result = run("glyph-diff", market_path, *args)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", error.format(path=market_path))


def test_glyph_diff_of_a_missing_file(tmp_path):
    missing = str(tmp_path / "missing.db")
    result = run("glyph-diff", missing, A_ID, B_ID)
    assert (result.exit_code, result.stderr) == (1, f"Error: {missing} does not exist\n")
    assert not (tmp_path / "missing.db").exists()


def batch_record(path, import_id):
    conn = sqlite3.connect(path)
    try:
        return lineage.get_import(conn, import_id)
    finally:
        conn.close()


@pytest.mark.parametrize(
    "options, user, actor",
    [
        (["--actor", "alice"], "bob", "alice"),
        ([], "bob", "bob"),  # the OS user by default
        ([], None, None),  # no user name to be found: no actor recorded
    ],
)
def test_glyph_rollback(market_path, monkeypatch, options, user, actor):
    def getuser():
        if user is None:
            raise OSError("no user name")
        return user

    monkeypatch.setattr("getpass.getuser", getuser)
    result = run("glyph-rollback", market_path, B_ID, *options, "--yes")
    record = batch_record(market_path, B_ID)
    by = f" by {actor}" if actor else ""
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        (
            f"Import {B_ID}  b.csv  source market  imported 2025-05-02T10:00:00Z  6 rows  complete\n"
            "Rolling it back removes 6 scored_listings, 0 listings, 0 quantized_listings and 1 models row\n"
            f"Rolled back {B_ID}: removed 6 scored_listings, 0 listings, 0 quantized_listings and 1 models row\n"
            f"Its import_batches record stays, marked rolled_back at {utc_z(record['rolled_back_at'])}{by}\n"
        ),
        "",
    )
    assert (record["status"], record["rolled_back_by"], record["models"]) == ("rolled_back", actor, [])


def test_glyph_rollback_refuses_a_second_time_and_unknown_ids(market_path):
    run("glyph-rollback", market_path, B_ID, "--actor", "alice", "--yes")
    before = database_checksum(market_path)
    at = batch_record(market_path, B_ID)["rolled_back_at"]
    again = run("glyph-rollback", market_path, B_ID, "--actor", "carol", "--yes")
    unknown = run("glyph-rollback", market_path, "nope")
    assert (again.exit_code, again.stdout, again.stderr) == (
        1,
        "",
        f"Error: Import {B_ID} was already rolled back at {utc_z(at)} by alice in {market_path}; nothing was changed\n",
    )
    assert (unknown.exit_code, unknown.stderr) == (
        1,
        f"Error: No import with import_id 'nope' in {market_path}; " + SHORT,
    )
    assert database_checksum(market_path) == before


def test_glyph_rollback_that_fails_part_way_changes_nothing(market_path):
    conn = sqlite3.connect(market_path)
    conn.executescript("""
        CREATE TABLE deletes (n INTEGER);
        INSERT INTO deletes VALUES (0);
        CREATE TRIGGER fail_part_way BEFORE DELETE ON scored_listings BEGIN
            UPDATE deletes SET n = n + 1;
            SELECT RAISE(ABORT, 'disk on fire') WHERE (SELECT n FROM deletes) >= 3;
        END;
        """)
    conn.close()
    before = database_checksum(market_path)
    result = run("glyph-rollback", market_path, A_ID, "--actor", "alice", "--yes")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        f"Import {A_ID}  a.csv  source market  imported 2025-05-01T10:00:00Z  6 rows  complete\n"
        "Rolling it back removes 6 scored_listings, 0 listings, 0 quantized_listings and 0 models rows\n",
        f"Error: Rollback of {A_ID} in {market_path} failed: disk on fire; nothing was changed\n",
    )
    assert database_checksum(market_path) == before


def test_glyph_rollback_of_a_missing_file(tmp_path):
    missing = str(tmp_path / "missing.db")
    result = run("glyph-rollback", missing, A_ID)
    assert (result.exit_code, result.stderr) == (1, f"Error: {missing} does not exist\n")
    assert not (tmp_path / "missing.db").exists()


# glyph-imports ------------------------------------------------------------------------------------------------------

IMPORTS_TEXT = f"""\
import_id                             imported_at           source  file   rows  status
------------------------------------  --------------------  ------  -----  ----  --------
{C_ID}  2025-05-03T10:00:00Z  broker  c.csv     2  complete
{B_ID}  2025-05-02T10:00:00Z  market  b.csv     6  complete
{A_ID}  2025-05-01T10:00:00Z  market  a.csv     6  complete
"""


@pytest.mark.parametrize(
    "options, expected",
    [
        ([], IMPORTS_TEXT),
        (["--limit", "0"], IMPORTS_TEXT),
        (["--source", "market", "--quiet"], f"{B_ID}\n{A_ID}\n"),
        (["-q", "--limit", "1"], f"{C_ID}\n"),
        (
            ["--limit", "1"],
            "\n".join(IMPORTS_TEXT.splitlines()[:3])
            + "\n\nShowing the newest 1 of 3 imports; for all use --limit 0.\n",
        ),
        (["--source", "nobody"], "No imports from nobody in {path}.\n"),
    ],
)
def test_glyph_imports(market_path, options, expected):
    result = run("glyph-imports", market_path, *options)
    assert (result.exit_code, result.stdout, result.stderr) == (0, expected.format(path=market_path), "")


def test_glyph_imports_json(market_path):
    result = run("glyph-imports", market_path, "--json", "--source", "broker")
    conn = sqlite3.connect(market_path)
    [expected] = lineage.list_imports(conn, source="broker")
    conn.close()
    expected["imported_at"] = "2025-05-03T10:00:00Z"  # ISO 8601 UTC with Z, as every JSON answer gives it
    expected.update(file_kept=False, file_bytes=None, file_stored_bytes=None, reimport_of=None)  # as the API has it
    assert (result.exit_code, json.loads(result.stdout)) == (0, {"ok": True, "imports": [expected], "total": 1})


def test_glyph_imports_of_a_missing_file(tmp_path):
    missing = str(tmp_path / "missing.db")
    result = run("glyph-imports", missing)
    assert (result.exit_code, result.stderr, list(tmp_path.iterdir())) == (1, f"Error: {missing} does not exist\n", [])


# glyph-rollback: --dry-run, --yes and the question on a terminal -----------------------------------------------------

B_PLAN = (
    f"Import {B_ID}  b.csv  source market  imported 2025-05-02T10:00:00Z  6 rows  complete\n"
    "Rolling it back {verb} 6 scored_listings, 0 listings, 0 quantized_listings and 1 models row\n"
)


def test_glyph_rollback_dry_run_changes_nothing(market_path):
    before = database_checksum(market_path)
    result = run("glyph-rollback", market_path, B_ID[:8], "--dry-run")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        B_PLAN.format(verb="would remove") + "Dry run: nothing was changed\n",
        "",
    )
    assert database_checksum(market_path) == before


def on_a_terminal(argv, answer):
    """Run ``argv`` with a pseudo-terminal as its standard input, answer its question, return (status, output)."""
    import os
    import pty
    import subprocess
    import sys
    from pathlib import Path

    leader, follower = pty.openpty()
    datasette = str(Path(sys.executable).parent / "datasette")
    process = subprocess.Popen(
        [datasette, *argv], stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    os.close(follower)
    os.write(leader, answer.encode())
    output, _ = process.communicate(timeout=60)
    os.close(leader)
    return process.returncode, output


ROLLED_BACK_B = f"Rolled back {B_ID}: removed 6 scored_listings, 0 listings, 0 quantized_listings and 1 models row"


@pytest.mark.parametrize(
    "answer, status, after_question",
    [("n\n", 1, "Nothing was changed"), ("\n", 1, "Nothing was changed"), ("y\n", 0, ROLLED_BACK_B)],
)
def test_glyph_rollback_asks_on_a_terminal(market_path, answer, status, after_question):
    before = database_checksum(market_path)
    code, output = on_a_terminal(["glyph-rollback", market_path, B_ID, "--actor", "alice"], answer)
    record = batch_record(market_path, B_ID)
    expected = B_PLAN.format(verb="removes").splitlines() + ["Roll it back? [y/N]: " + after_question]
    assert (code, output.splitlines()[:3]) == (status, expected)
    if status:
        assert (database_checksum(market_path), record["status"]) == (before, "complete")
    else:
        assert (record["status"], record["rolled_back_by"]) == ("rolled_back", "alice")


def test_glyph_rollback_yes_does_not_ask_on_a_terminal(market_path):
    code, output = on_a_terminal(["glyph-rollback", market_path, B_ID, "--yes"], "")
    assert (code, output.splitlines()[2]) == (
        0,
        f"Rolled back {B_ID}: removed 6 scored_listings, 0 listings, 0 quantized_listings and 1 models row",
    )


# The command line and the API give the same answers -------------------------------------------------------------


@pytest.fixture
def quick_start(tmp_path):
    """The quick start's database: the two sample snapshots imported from the command line (kept files and all),
    the newest re-imported; and a pair of sample days with more listing changes than one page of a diff holds."""
    path = tmp_path / "glyph.db"
    assert run("glyph-migrate", str(path)).exit_code == 0
    days = tmp_path / "day.csv"
    assert run("glyph-sample", str(days), "--rows", "1000", "--snapshots", "2").exit_code == 0
    for files in (["sample/scored_sample.csv", "sample/scored_sample_next.csv"], ["day-1.csv", "day-2.csv"]):
        folder = REPO if files[0].startswith("sample/") else tmp_path
        imported = run("glyph-import", str(path), *[str(folder / f) for f in files], "--source", "market")
        assert imported.exit_code == 0, imported.output
    newest = run("glyph-imports", str(path), "-q", "--limit", "1").stdout.strip()
    assert run("glyph-rollback", str(path), newest, "--yes").exit_code == 0
    reimported = run("glyph-reimport", str(path), newest)
    assert reimported.exit_code == 0, reimported.output
    return path


def test_glyph_imports_json_has_every_field_of_get_api_imports(quick_start, tmp_path):
    from .server import running_server

    listed = json.loads(run("glyph-imports", str(quick_start), "--json").stdout)
    with running_server(quick_start, log_dir=tmp_path) as server:
        answered = server.get("/api/imports").json()
    answered.pop("next")
    assert listed == answered
    assert [(b["file_kept"], b["reimport_of"] is not None) for b in listed["imports"]][:2] == [
        (True, True),
        (True, False),
    ]


def test_glyph_reimport_records_no_actor(quick_start):
    conn = sqlite3.connect(quick_start)
    actors = conn.execute("SELECT status, actor FROM import_batches ORDER BY id").fetchall()
    conn.close()
    assert actors == [("complete", None)] * 3 + [("rolled_back", None), ("complete", None)]


def test_glyph_diff_json_is_the_apis_first_page_with_no_options(quick_start, tmp_path):
    from .server import running_server

    a, b = run("glyph-imports", str(quick_start), "-q", "--limit", "3").stdout.split()[1:][::-1]
    printed = json.loads(run("glyph-diff", str(quick_start), a, b, "--json").stdout)
    with running_server(quick_start, log_dir=tmp_path) as server:
        answered = server.get(f"/api/imports/{a}/diff/{b}").json()
    assert answered["next"] == f"{server.url}{printed['next']}"
    assert (printed["limit"], len(printed["changes"]), printed["total"] > printed["limit"]) == (
        lineage.DIFF_PAGE_SIZE,
        100,
        True,
    )
    assert dict(printed, next=None) == dict(answered, next=None)


def test_glyph_rollback_from_a_script_needs_yes(market_path):
    """Standard input not a terminal (a script, a pipe): without --yes nothing is rolled back, and the exit status
    says so."""
    import subprocess
    import sys

    before = database_checksum(market_path)
    result = subprocess.run(
        [sys.executable, "-m", "datasette", "glyph-rollback", market_path, B_ID],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        B_PLAN.format(verb="removes"),
        "Error: glyph-rollback asks before removing rows, and standard input is not a terminal: add --yes to roll "
        "back without asking; nothing was changed\n",
    )
    assert (database_checksum(market_path), batch_record(market_path, B_ID)["status"]) == (before, "complete")


ISO_Z = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z"


def test_every_time_the_commands_print_is_iso_8601_utc_with_z_and_counts_agree_with_their_nouns(tmp_path):
    """One form of time in every command's output (the form litestream restore -timestamp and the JSON take),
    and "1 row" / "2 rows"."""
    import re

    path, one = str(tmp_path / "glyph.db"), tmp_path / "one.csv"
    one.write_text(
        "canonical_model,vram_gb,mig_support,nvlink,tdp_watts,price,score,source_url\n"
        "RTX_4090,24,0,False,450,1650,0.7,https://market.example/1\n",
        encoding="utf-8",
    )
    outputs = [run("glyph-migrate", path).output, run("glyph-import", path, str(one), str(one)).output]
    second, first = run("glyph-imports", path, "-q").stdout.split()
    outputs += [
        run("glyph-imports", path).output,
        run("glyph-diff", path, first, second).output,
        run("glyph-rollback", path, second, "--yes").output,
        run("glyph-rollback", path, second, "--yes").output,
        run("glyph-migrate", path, "--status").output,
    ]
    text = "\n".join(outputs)
    times = re.findall(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d[^\s,;]*", text)
    assert (len(times), [t for t in times if not re.fullmatch(ISO_Z, t)]) == (17, [])
    assert re.findall(r"\b1 (?:rows|errors|imports|steps|files|migrations)\b|\(s\)", text) == []
    rolled_back = outputs[4].splitlines()
    assert (
        re.sub(ISO_Z, "TIME", rolled_back[0]) == f"Import {second}  one.csv  source -  imported TIME  1 row  complete"
    )
    assert rolled_back[1] == (
        "Rolling it back removes 1 scored_listings, 0 listings, 0 quantized_listings and 0 models rows"
    )
