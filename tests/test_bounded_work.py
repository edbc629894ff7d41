"""Requests whose CPU work could be large do it off the event loop and bounded, against a real server:

- a typed model text far longer than any model (``/api/models?q=``, ``/api/listings?model=``) is answered at once,
  never scored by RapidFuzz;
- the diff page's own order (``?sort=change``) and model filter run on the plugin's read pool, so the event loop
  answers other requests while a large diff is arranged.

A plugin loaded with ``--plugins-dir`` observes the server from inside: it counts RapidFuzz's calls, and can hold
a diff's ``ImportDiff.to_dict`` until the test lets it go. The figures under load are benchmarks/bench_hostile.py's.
"""

from __future__ import annotations

import re
import threading
from html import unescape
from pathlib import Path
from urllib.parse import quote

from datasette_glyph.engine import lineage, migrator
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.listings import FUZZY_THRESHOLD
from datasette_glyph.engine.sqlite import connect

from .server import running_server
from .snapshots import insert_snapshot, market_snapshots

REPO = Path(__file__).resolve().parent.parent

# 7,000 x U+FDFA: 21 KB of text, 63 KB once escaped in a URL, 126,000 letters after NFKC.
HOSTILE = "\ufdfa" * 7000

OBSERVER = """
import os
import threading
import time

import rapidfuzz.process
from datasette import hookimpl
from datasette.utils.asgi import Response

from datasette_glyph.engine import lineage

calls = []
_extract = rapidfuzz.process.extract


def counting_extract(query, *args, **kwargs):
    calls.append(len(query))
    return _extract(query, *args, **kwargs)


rapidfuzz.process.extract = counting_extract

HOLD = os.environ.get("GLYPH_TEST_HOLD_DIR")
_to_dict = lineage.ImportDiff.to_dict


def held_to_dict(self):
    # Armed by the test: say a diff is being turned into its answer, then wait until the test says to go on.
    if HOLD and os.path.exists(os.path.join(HOLD, "armed")):
        os.unlink(os.path.join(HOLD, "armed"))
        open(os.path.join(HOLD, "entered"), "w").close()
        while not os.path.exists(os.path.join(HOLD, "release")):
            time.sleep(0.01)
    return _to_dict(self)


lineage.ImportDiff.to_dict = held_to_dict


async def fuzzy_calls():
    return Response.json({"calls": calls, "thread": threading.current_thread().name})


@hookimpl
def register_routes():
    return [(r"^/-/test/fuzzy-calls$", fuzzy_calls)]
"""


def observer_plugin(tmp_path) -> Path:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "observer.py").write_text(OBSERVER, encoding="utf-8")
    return plugins


def sample_database(path: Path) -> Path:
    conn = connect(path)
    migrator.migrate(conn)
    import_csv(conn, REPO / "sample" / "scored_sample.csv", filename="scored_sample.csv")
    conn.close()
    return path


def test_a_text_longer_than_any_model_is_answered_at_once_and_never_scored(tmp_path):
    db = sample_database(tmp_path / "glyph.db")
    with running_server(db, extra_args=["--plugins-dir", str(observer_plugin(tmp_path))]) as server:
        # The hook sees RapidFuzz: a misspelling is scored (two scorers, two passes each).
        assert server.get("/api/models?q=H1OO_PCIE_80GB").json()["match"] == "fuzzy"
        assert len(server.get("/-/test/fuzzy-calls").json()["calls"]) == 4
        names = server.get("/api/models").json()["models"]
        # A model's words: its letters and its numbers apart (H100_PCIE_80GB: "h 100 pcie 80 gb").
        longest = max(len(" ".join(re.findall(r"[^\W\d_]+|\d+", n.casefold()))) for n in names)
        limit = longest * 3 // 2

        answers, versions, errors = [], [], []
        done = threading.Event()

        def hostile(path):
            try:
                for _ in range(5):
                    answers.append((path, server.get(path, timeout=120)))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        def version_reader():
            while not done.is_set():
                versions.append(server.get("/-/versions.json", timeout=120).status)

        clients = [
            threading.Thread(target=hostile, args=("/api/models?q=" + quote(HOSTILE),)),
            threading.Thread(target=hostile, args=("/api/listings?model=" + quote(HOSTILE),)),
        ]
        reader = threading.Thread(target=version_reader)
        reader.start()
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        done.set()
        reader.join()
        assert errors == []
        assert set(versions) == {200} and len(versions) >= 1

        expected_models = {
            "ok": True,
            "q": HOSTILE,
            "normalized": None,
            "match": "none",
            "models": [],
            "reason": (
                f"the text has more letters and digits than any model can match ({limit} at most: "
                "1.5 times the longest model name), so no match was attempted"
            ),
            "threshold": FUZZY_THRESHOLD,
            "candidates": [],
        }
        for path, answer in answers:
            assert answer.status == 200
            assert answer.json() == (expected_models if path.startswith("/api/models") else [])
        assert len(answers) == 10
        # Ten hostile requests, and RapidFuzz was not called once more.
        assert len(server.get("/-/test/fuzzy-calls").json()["calls"]) == 4
        # A text just short enough is still matched the usual way: scored, and refused by its score.
        near = "x" * limit
        assert server.get("/api/models?q=" + near).json()["match"] == "none"
        assert len(server.get("/-/test/fuzzy-calls").json()["calls"]) == 8
        assert "Traceback" not in server.log()


def wait_for(path: Path, thread: threading.Thread) -> None:
    """Until ``path`` exists; fails if ``thread`` (the request that should make it) ended first."""
    while not path.exists():
        assert thread.is_alive(), f"{path.name} never appeared"
        thread.join(0.01)


def by_size_of_change(change: dict) -> tuple:
    """The diff page's documented order: largest price change in percent first, then in dollars; additions and
    removals after; ties in the engine's order (sorted() is stable)."""
    if change["percent"] is not None:
        return (0, -abs(change["percent"]), -abs(change["delta"]))
    if change["delta"] is not None:
        return (0, float("-inf"), -abs(change["delta"]))
    return (1, 0, 0)


def test_a_large_diff_is_arranged_off_the_event_loop_and_the_page_is_unchanged(tmp_path):
    db = tmp_path / "glyph.db"
    conn = connect(db)
    migrator.migrate(conn)
    (first, second), _ = market_snapshots(2, 30_000, seed=5, changed=0.5, removed=0.1, added=0.1)
    a = insert_snapshot(conn, first, imported_at="2025-05-01 08:00:00")
    b = insert_snapshot(conn, second, imported_at="2025-05-02 08:00:00")
    every = lineage.diff_imports(conn, a, b, limit=None).to_dict()["changes"]
    conn.close()
    model = max({c["canonical_model"] for c in every}, key=lambda m: sum(c["canonical_model"] == m for c in every))
    cases = {
        "?sort=change&offset=200": sorted(every, key=by_size_of_change)[200:300],
        f"?model={model}&limit=50&offset=50": [c for c in every if c["canonical_model"] == model][50:100],
        f"?model={model}&sort=change&kind=changed": sorted(
            [c for c in every if c["canonical_model"] == model and c["kind"] == "changed"], key=by_size_of_change
        )[:100],
    }
    assert len(every) > 20_000 and all(len(expected) >= 50 for expected in cases.values())

    hold = tmp_path / "hold"
    hold.mkdir()
    plugins = observer_plugin(tmp_path)
    env = {"GLYPH_TEST_HOLD_DIR": str(hold)}
    with running_server(db, extra_args=["--plugins-dir", str(plugins)], env=env) as server:
        for query, expected in cases.items():
            for name in ("entered", "release"):
                (hold / name).unlink(missing_ok=True)
            (hold / "armed").touch()
            answers = []
            path = f"/-/glyph/imports/{a}/diff/{b}{query}"
            page = threading.Thread(
                target=lambda path=path, answers=answers: answers.append(server.get(path, timeout=300))
            )
            page.start()
            try:
                wait_for(hold / "entered", page)
                # The diff is being made into its page: the event loop still answers.
                assert server.get("/-/versions.json", timeout=30).status == 200
            finally:
                (hold / "release").touch()
                page.join()
            assert answers[0].status == 200
            shown = re.findall(
                r'<td data-label="source_url"><a href="[^"]*" title="[^"]*">([^<]*)</a>', answers[0].text
            )
            assert [unescape(url) for url in shown] == [c["source_url"] for c in expected], query
        assert "Traceback" not in server.log()
