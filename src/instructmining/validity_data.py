"""Which answers the indicator validity check scores (instructmining.validity): the validity
prompts (never eval, pool or reward-training prompts), their answers on the quality ladder, the
preference pairs between them, and two-level contrasts. docs/indicator_validity.md says why these
pairs are fair. Module level imports the standard library only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InstructMiningError


def set_label(path: str) -> str:
    """An answer set's short name: the file name without `.model_outputs.json` (gpt4, alpaca-7b)."""
    name = Path(path).name
    for suffix in (".model_outputs.json", ".json", ".jsonl"):
        name = name.removesuffix(suffix)
    return name


def ladder_sets(outputs: list[Any]) -> list[tuple[int, str]]:
    """(rank, file) per answer set, best first (0 = best); an inner list is a tie group."""
    return [(rank, f) for rank, entry in enumerate(outputs) for f in ([entry] if isinstance(entry, str) else entry)]


def validity_prompts(data_root: str | Path, outputs: list[Any], pool_instructions: list[str], eval_keys: set[str],
                     split: dict[str, Any] | None, max_prompts: int | None, seed: int = 0) -> list[str]:
    """The instructions of the validity prompts, in a seeded order.

    The groups are those reward training reads (load_groups: no AlpacaEval eval rows, no pool
    instructions); with `split` ({heldout, seed}: the workflow trains the reward model) only the
    groups split_groups holds out, so the reward model never trained on a validity prompt. Eval
    instructions (the pool's leakage match key) are removed after the split, which leaves the
    split itself identical to training's. Without a split the groups are shuffled with `seed`."""
    import random

    from .data import match_key
    from .indicators.reward_train import _norm, load_groups, split_groups

    groups = load_groups(data_root, outputs, {_norm(t) for t in pool_instructions})
    if split is not None:
        groups, _, _ = split_groups(groups, split["heldout"], split["seed"])  # held-out: first, whatever the validation share
    else:
        groups = list(groups)
        random.Random(seed).shuffle(groups)
    kept = [g["instruction"] for g in groups if match_key(g["instruction"]) not in eval_keys]
    if not kept:
        raise InstructMiningError("validity: no prompt left after removing eval, pool and reward-training prompts")
    return kept[:max_prompts] if max_prompts else kept


def answer_frame(data_root: str | Path, outputs: list[Any], instructions: list[str]) -> Any:
    """One row per (prompt, answer set): prompt, set, rank, id, instruction, input (''), output.
    Empty answers are left out (as reward training does)."""
    import pandas as pd

    from .data import normalize_text, sample_id
    from .indicators.reward_train import _norm
    from .records import local_path

    wanted = {_norm(t): k for k, t in enumerate(instructions)}
    rows = []
    for rank, rel in ladder_sets(outputs):
        path = local_path(rel, str(data_root))
        for rec in json.loads(path.read_text(encoding="utf-8")):
            k = wanted.get(_norm(rec["instruction"]))
            out = normalize_text(rec["output"])
            if k is None or not out:
                continue
            ins = normalize_text(rec["instruction"])
            rows.append({"prompt": k, "set": set_label(rel), "rank": rank, "id": sample_id(ins, "", out),
                         "instruction": ins, "input": "", "output": out})
    return pd.DataFrame(rows).sort_values(["prompt", "rank", "set"], kind="stable").reset_index(drop=True)


def contrast_frame(data_root: str | Path, contrast: dict[str, str], pool_instructions: list[str],
                   eval_keys: set[str], max_prompts: int | None) -> Any:
    """A two-level contrast as an answer frame (rank 0 = `better`, 1 = `worse`): the instructions
    (with input) both files answer, minus eval and pool instructions and identical answers. Files
    are instruction/input/output records (the Alpaca format)."""
    import pandas as pd

    from .data import match_key, normalize_text, sample_id
    from .records import local_path

    def read(rel: str) -> dict[tuple[str, str], dict[str, str]]:
        recs = json.loads(local_path(rel, str(data_root)).read_text(encoding="utf-8"))
        return {(match_key(r["instruction"]), match_key(r.get("input") or "")): r for r in recs}

    better, worse = read(contrast["better"]), read(contrast["worse"])
    pool = {match_key(t) for t in pool_instructions}
    keys = [k for k in better if k in worse and k[0] not in pool and k[0] not in eval_keys
            and match_key(k[0] + "\n\n" + k[1]) not in eval_keys
            and normalize_text(better[k]["output"]) != normalize_text(worse[k]["output"])][:max_prompts]
    rows = []
    for p, key in enumerate(keys):
        for rank, (side, recs) in enumerate((("better", better), ("worse", worse))):
            r = recs[key]
            ins, inp, out = (normalize_text(r.get(f) or "") for f in ("instruction", "input", "output"))
            rows.append({"prompt": p, "set": f"{contrast['label']}_{side}", "rank": rank,
                         "id": sample_id(ins, inp, out), "instruction": ins, "input": inp, "output": out})
    if not rows:
        raise InstructMiningError(f"validity contrast {contrast['label']!r}: the two files share no usable instruction")
    return pd.DataFrame(rows)


def ladder_pairs(answers: Any) -> Any:
    """(prompt, better, worse) row indices of `answers`: different ranks, different texts (the
    pairs reward training uses, reward_train.pairs_of)."""
    import pandas as pd

    from .indicators.reward_train import _norm

    out = []
    for prompt, grp in answers.groupby("prompt", sort=True):
        idx = list(grp.index)
        for i in idx:
            for j in idx:
                if answers.at[i, "rank"] < answers.at[j, "rank"] and \
                        _norm(answers.at[i, "output"]) != _norm(answers.at[j, "output"]):
                    out.append((prompt, i, j))
    return pd.DataFrame(out, columns=["prompt", "better", "worse"])
