"""Benchmark: our MTLD vs lexicalrichness on real pool responses (same values, no slower).

Run: python benchmarks/bench_mtld.py [--n 3000]. Prints the speed ratio LAST
(lexicalrichness seconds / ours; >= 1.0 means ours is no slower). Texts without word tokens are
left out of the library timing (it raises on them) and checked to score 0.0 by definition."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lexicalrichness import LexicalRichness

from instructmining.indicators.mtld import NO_WORDS_MTLD, mtld, mtld_tokens, tokenize

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pool"


def texts(n: int) -> list[str]:
    out = [r["output"] for r in json.loads((DATA / "alpaca" / "cherry_alpaca_5_percent.json").read_text())]
    for line in (DATA / "dolly" / "dev.jsonl").read_text().splitlines():
        out.append(json.loads(line)["output"])
    return out[:n]


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    # CPU time, min over repeats: the least disturbed run on a shared machine.
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    all_texts = texts(args.n)
    worded = [t for t in all_texts if tokenize(t)]
    wordless = [t for t in all_texts if not tokenize(t)]
    assert all(mtld(t) == NO_WORDS_MTLD for t in wordless)
    ours = [mtld(t) for t in worded]
    ref = [LexicalRichness(t).mtld(threshold=0.72) for t in worded]
    diff = max(abs(a - b) for a, b in zip(ours, ref, strict=True))
    from lexicalrichness.lexicalrichness import tokenize as lr_tok

    # Ours = the library's tokenizer + our factor loop (what the mtld indicator runs).
    t_ours = best_of(lambda: [mtld_tokens(lr_tok(t)) for t in worded], args.repeats)
    t_ref = best_of(lambda: [LexicalRichness(t).mtld(threshold=0.72) for t in worded], args.repeats)
    words = sum(len(tokenize(t)) for t in worded)
    print(f"texts: {len(worded)} with words ({words} words), {len(wordless)} without words (MTLD 0.0)")
    print(f"max |ours - lexicalrichness| = {diff:.3g}")
    print(f"ours: {len(worded) / t_ours:.0f} texts/s; lexicalrichness: {len(worded) / t_ref:.0f} texts/s")
    print(f"speed ratio (lexicalrichness time / ours): {t_ref / t_ours:.2f}x")


if __name__ == "__main__":
    main()
