"""Where the fuzzy threshold comes from, and what resolving a typed model costs with and without the cache.

1. Threshold: on the sample's 23 models, every misspelling of a model that the containment step does not already
   catch (a letter dropped, doubled, replaced or swapped in a word of three letters or more, O for 0, words
   reordered, G for GB) must resolve to that model; texts naming another GPU (a digit changed, the family letter
   changed, GPUs the sample does not hold) should resolve to nothing. Prints the lowest score of a right answer
   and the highest score of a wrong candidate that passes the number rule, and what is accepted at the threshold.
2. Cost: ``resolve_model`` per call (microseconds) for an exact id, a contained text, a fuzzy and an unmatched
   text, on databases with the sample's models and with 1,000 and 10,000 models, with the per-process cache of
   prepared models and with it cleared before every call.

    python benchmarks/bench_model_match.py
"""

from __future__ import annotations

import csv
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datasette_glyph.engine import listings, migrator
from datasette_glyph.engine.importer import import_csv
from datasette_glyph.engine.sqlite import connect

SAMPLE = ROOT / "sample" / "scored_sample.csv"
# GPUs the sample does not hold, written as people write them
OTHER_GPUS = [
    "RTX 4080", "RTX 3070", "RTX 2080 Ti", "RTX 4060", "RTX 4070 Ti", "RTX 4000", "RTX 5000 Ada", "RTX A3000",
    "RTX 6000 Quadro", "A100 80GB SXM4", "A100 40GB SXM5", "H100 SXM5 94GB", "H100 PCIE 94GB", "V100 32GB PCIE",
    "A800", "H800", "B200", "GH200", "MI250X", "T4", "P100", "L20", "A16", "A4500", "A40S", "RTX 4090D",
]  # fmt: skip


def misspellings(model: str) -> set:
    words = re.findall(r"[A-Z]+|\d+", model)
    out = set()
    for i, word in enumerate(words):
        if not (word.isalpha() and len(word) >= 3):
            continue
        for j in range(len(word)):
            for changed in (word[:j] + word[j + 1 :], word[:j] + word[j] + word[j:], word[:j] + "Q" + word[j + 1 :]):
                out.add(" ".join(words[:i] + [changed] + words[i + 1 :]))
            if j < len(word) - 1:
                swapped = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
                out.add(" ".join(words[:i] + [swapped] + words[i + 1 :]))
    if "0" in model:
        out.add(model.replace("0", "O"))
    parts = model.split("_")
    if len(parts) >= 3:
        out.add(" ".join([parts[0]] + parts[2:] + [parts[1]]))
    if "GB" in model:
        out.add(model.replace("GB", "G"))
    out.discard(model)
    return out


def other_gpus(models: list) -> list:
    texts = list(OTHER_GPUS)
    for model in models:
        for i, c in enumerate(model):
            if c.isdigit():
                texts.append(model[:i] + str((int(c) + 1) % 10) + model[i + 1 :])
        if model[0] in "AHLV":
            texts.append({"A": "H", "H": "A", "L": "A", "V": "A"}[model[0]] + model[1:])
    # a changed letter can give another sample model's words in another order (H100_80GB_PCIE): that one is right
    same_words = {tuple(sorted(re.findall(r"[A-Z]+|\d+", m))) for m in models}
    return sorted({t for t in texts if tuple(sorted(re.findall(r"[A-Z]+|\d+", t.upper()))) not in same_words})


def threshold_report(conn, models: list) -> None:
    threshold = listings.FUZZY_THRESHOLD
    right, wrong_answers, lowest = 0, [], []
    fuzzy_cases = 0
    for model in models:
        for text in sorted(misspellings(model)):
            match = listings.resolve_model(conn, text)
            if match.match in ("exact", "contains"):
                continue  # caught before the fuzzy step
            fuzzy_cases += 1
            best = next((c for c in match.candidates if c.numbers_agree and c.model == model), None)
            if list(match.models) == [model]:
                right += 1
                lowest.append((best.score, text))
            else:
                wrong_answers.append((text, model, list(match.models)))
    lowest.sort()
    print(f"Misspellings of the {len(models)} sample models that only the fuzzy step can resolve: {fuzzy_cases}")
    print(f"  resolved to their model: {right}; otherwise: {wrong_answers or 'none'}")
    print(f"  lowest winning scores: {', '.join(f'{s:.1f} ({t})' for s, t in lowest[:4])}")
    accepted, refused = [], []
    for text in other_gpus(models):
        match = listings.resolve_model(conn, text)
        if match.match in ("exact", "contains"):
            continue
        passing = [c for c in match.candidates if c.numbers_agree]
        top = passing[0] if passing else None
        entry = (top.score if top else 0.0, text, top.model if top else "-")
        (accepted if match.models else refused).append(entry)
    accepted.sort(reverse=True)
    refused.sort(reverse=True)
    print(f"Texts naming other GPUs: {len(accepted) + len(refused)}; at threshold {threshold}:")
    print(f"  accepted: {', '.join(f'{t} -> {m} ({s:.1f})' for s, t, m in accepted) or 'none'}")
    print(f"  highest refused: {', '.join(f'{t} -> {m} ({s:.1f})' for s, t, m in refused[:4])}")


def timing(conn, label: str, texts: dict, calls: int) -> None:
    print(f"\n{label}: microseconds per resolve_model call ({calls} calls each)")
    print("| text | step | cached | cache cleared before each call |\n|---|---|---:|---:|")
    for kind, text in texts.items():
        listings.resolve_model(conn, text)
        start = time.perf_counter()
        for _ in range(calls):
            match = listings.resolve_model(conn, text)
        cached = (time.perf_counter() - start) / calls * 1e6
        start = time.perf_counter()
        for _ in range(calls):
            listings.prepare_models.cache_clear()
            listings.resolve_model(conn, text)
        cleared = (time.perf_counter() - start) / calls * 1e6
        print(f"| `{text}` ({kind}) | {match.match} | {cached:.0f} | {cleared:.0f} |")


def synthetic_models(n: int) -> list:
    families = ["A", "H", "L", "RTX_", "RTX_A", "V", "MI", "B", "T", "P"]
    return [
        f"{families[i % len(families)]}{100 + i}_{16 * (1 + i % 12)}GB_{('PCIE', 'SXM5', 'NVL')[i % 3]}"
        for i in range(n)
    ]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="glyph-bench-models-") as work:
        run(Path(work))
    return 0


def run(work: Path) -> None:
    conn = connect(work / "sample.db")
    migrator.migrate(conn)
    import_csv(conn, SAMPLE)
    with open(SAMPLE, newline="", encoding="utf-8") as f:
        models = sorted({row["canonical_model"] for row in csv.DictReader(f)})
    threshold_report(conn, models)
    texts = {"exact": "RTX_4090", "contained": "h100 pcie", "fuzzy": "H1OO_PCIE_80GB", "unmatched": "zzzz"}
    timing(conn, f"{len(models)} models (the sample)", texts, 2000)
    conn.close()
    for n in (1_000, 10_000):
        big = connect(work / f"models_{n}.db")
        migrator.migrate(big)
        big.execute("INSERT INTO import_batches (import_id) VALUES ('synthetic')")
        big.executemany(
            "INSERT INTO models (model, import_id, import_index) VALUES (?, 'synthetic', ?)",
            [(m, i) for i, m in enumerate(models + synthetic_models(n), start=1)],
        )
        timing(big, f"{n + len(models):,} models", texts, 200 if n <= 1000 else 20)
        big.close()


if __name__ == "__main__":
    sys.exit(main())
