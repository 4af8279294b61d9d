"""How often a CLUTRR story's own words contradict its gold edges: a ceiling for any text reader.

Reads the release's stories with two strict, hand-checkable patterns that say who is whose what:

* ``[A]'s <word> [B]`` ("[Ann]'s son [Bob]"), and
* ``[A] ... his|her <word> [B]`` within one sentence, no other name between ("[Ann] took her son [Bob]"),

both meaning "B is A's <word>", for the one-word kinship terms. Where the gold graph has an edge
between A and B (in either direction), the statement agrees when the gold relation is the one stated
(or its inverse, for an edge stored the other way round). A reader that reads the text faithfully gets
the disagreeing edges wrong against gold. Prints per file the statements matched, the share that
contradict gold, and the most frequent contradicting sentences (names masked); writes JSON.

    python benchmarks/clutrr_statement_audit.py --json benchmarks/results/clutrr_statement_audit.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from laart_lab.data.clutrr import ClutrrExample, read_release
from laart_lab.data.clutrr_text import GENDER_NAMES
from laart_lab.data.kinship_algebra import KIND_OF, inverse_relation
from laart_lab.paths import data_path

_WORDS = "|".join(sorted((t for t in KIND_OF if "-" not in t), key=len, reverse=True))
_POSSESSIVE = re.compile(rf"\[([^\]]+)\]'s ({_WORDS}),? \[([^\]]+)\]", re.IGNORECASE)
_PRONOUN = re.compile(rf"\[([^\]]+)\][^\[\].!?]*? (?:his|her) (?:\w+ )?({_WORDS}),? \[([^\]]+)\]", re.IGNORECASE)


def audit(rows: list[ClutrrExample]) -> dict:
    """Statements matched, how many contradict the gold edges, and the contradicting sentences."""
    matched = contradicting = 0
    sentences: Counter[str] = Counter()
    for e in rows:
        node = {name.lower(): i for i, name in enumerate(e.names)}
        gold = {(a, b): r for a, b, r in e.edges}
        for pattern in (_POSSESSIVE, _PRONOUN):
            for m in pattern.finditer(e.story):
                a, b = node.get(m.group(1).strip().lower()), node.get(m.group(3).strip().lower())
                word = m.group(2).lower()
                if a is None or b is None:
                    continue
                if (a, b) in gold:  # "a's word is b" against "a's gold is b"
                    agrees = gold[(a, b)] == word
                elif (b, a) in gold:  # against "b's gold is a": the inverse of the statement
                    agrees = gold[(b, a)] == inverse_relation(word, GENDER_NAMES.get(e.genders[a]))
                else:
                    continue
                matched += 1
                if not agrees:
                    contradicting += 1
                    sentence = e.story[max(0, e.story.rfind(".", 0, m.start()) + 1) : m.end()].strip()
                    sentences[re.sub(r"\[[^\]]+\]", "[_]", sentence)] += 1
    return {
        "statements": matched,
        "contradicting": contradicting,
        "share": contradicting / matched if matched else 0.0,
        "top_contradicting": sentences.most_common(8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", default=str(data_path("clutrr", "data_089907f8.zip")))
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    release = read_release(args.path)
    splits = {"train": release.train, **{f"test {name}": rows for name, rows in release.tests.items()}}
    results = {name: audit(rows) for name, rows in splits.items()}
    tests = [r for name, r in results.items() if name.startswith("test")]
    results["test (all files)"] = {
        "statements": sum(r["statements"] for r in tests),
        "contradicting": sum(r["contradicting"] for r in tests),
    }
    total = results["test (all files)"]
    total["share"] = total["contradicting"] / max(total["statements"], 1)
    print(f"{'split':<16} {'statements':>10} {'contradict gold':>16} {'share':>7}")
    for name, r in results.items():
        print(f"{name:<16} {r['statements']:>10} {r['contradicting']:>16} {r['share']:>7.3f}")
    test_sentences: Counter[str] = Counter()
    for r in tests:
        test_sentences.update(dict(r["top_contradicting"]))
    for name, top in (("train", results["train"]["top_contradicting"]), ("test", test_sentences.most_common(8))):
        print(f"\nmost frequent contradicting statements, {name}:")
        for sentence, count in top:
            print(f"  {count:>4}  {sentence}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"path": args.path, "splits": results}, indent=1))


if __name__ == "__main__":
    main()
