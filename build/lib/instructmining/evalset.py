"""D_eval: the 252 Self-Instruct user-oriented instructions (human references) and the 80 Vicuna
questions (gpt-3.5-turbo answers), plus further reference files matched by instruction text
(AlpacaEval's GPT-4 outputs cover all 332). One row per (instruction, reference).

Writes eval_all.parquet (every instruction: what the pool's leakage guard removes) and
eval.parquet (the evaluated subset: all, or a seeded `max_instructions` sample)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from .data import match_key, normalize_text
from .errors import DataError
from .io import derive_seed, write_parquet
from .records import data_file, read_hub, read_json_array, read_jsonl

LOG = logging.getLogger("instructmining.evalset")
COLUMNS = ["eval_id", "set", "instruction", "input", "reference", "ref_label"]


def _records(item: dict[str, Any], key: str, data_root: str | None):
    if item.get("hub"):
        return f"hub:{item['hub']}", read_hub(item["hub"], item.get("hub_config"), item.get("split", "eval"), None)
    path = data_file(item[key], data_root)
    return str(path), (read_jsonl(path) if path.suffix == ".jsonl" else read_json_array(path))


def _req(rec: dict[str, Any], field: str, path: str, where: str) -> str:
    value = rec.get(field)
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, where, field, "missing or empty")
    return normalize_text(value)


def load_set(item: dict[str, Any], data_root: str | None) -> list[dict[str, str]]:
    """Rows (with first references) of one configured eval set."""
    label, fmt, rows = item["label"], item["format"], []
    path, records = _records(item, "path", data_root)
    if fmt == "self_instruct":
        for where, rec in records:
            inst = (rec.get("instances") or [{}])[0]
            rows.append({"eval_id": f"{label}-{_req(rec, 'id', path, where)}", "set": label,
                         "instruction": _req(rec, "instruction", path, where),
                         "input": normalize_text(inst.get("input") or ""),
                         "reference": _req(inst, "output", path, where + " instances[0]"), "ref_label": "human"})
    elif fmt == "vicuna":
        answers: dict[Any, tuple[str, str]] = {}
        if item.get("answers"):
            apath, arecs = _records(item, "answers", data_root)
            for where, rec in arecs:
                answers[rec.get("question_id")] = (_req(rec, "text", apath, where), str(rec.get("model_id", "answer")))
        for where, rec in records:
            qid = rec.get("question_id")
            ref, ref_label = answers.get(qid, (None, None))
            rows.append({"eval_id": f"{label}-{qid}", "set": label, "instruction": _req(rec, "text", path, where),
                         "input": "", "reference": ref, "ref_label": ref_label})
    elif fmt == "alpaca_eval":
        for where, rec in records:
            if item.get("subset") and rec.get("dataset") != item["subset"]:
                continue
            rows.append({"eval_id": f"{label}-{where.split()[-1]}", "set": label,
                         "instruction": _req(rec, "instruction", path, where), "input": "",
                         "reference": _req(rec, "output", path, where), "ref_label": str(rec.get("generator", "ref"))})
    LOG.info("eval set %s: %d instructions", label, len(rows))
    return rows


def add_references(rows: list[dict[str, str]], ref: dict[str, Any], data_root: str | None) -> int:
    """Append references from an AlpacaEval-format file matched by instruction (+ input) text."""
    by_key = {}
    for r in rows:
        by_key.setdefault(match_key(r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")), r)
    path, records = _records(ref, "path", data_root)
    extra = []
    for where, rec in records:
        base = by_key.get(match_key(_req(rec, "instruction", path, where)))
        if base is not None:
            extra.append({**base, "reference": _req(rec, "output", path, where), "ref_label": ref["label"]})
    rows.extend(extra)
    LOG.info("references %s: matched %d of %d eval instructions", ref["label"], len(extra), len(by_key))
    return len(extra)


def build_eval(sets: list[dict], references: list[dict], data_root: str | None) -> Any:
    """Every eval instruction with all its references (rows without any reference are an error)."""
    import pandas as pd

    rows: list[dict[str, str]] = []
    for item in sets:
        rows.extend(load_set(item, data_root))
    first = list(rows)
    for ref in references:
        add_references(rows, ref, data_root)
    df = pd.DataFrame([r for r in rows if r["reference"] is not None], columns=COLUMNS)
    missing = sorted({r["eval_id"] for r in first} - set(df["eval_id"]))
    if missing:
        raise DataError("eval", missing[0], "reference", f"{len(missing)} eval instructions have no reference")
    if df["eval_id"].nunique() != len({r["eval_id"] for r in first}):
        raise DataError("eval", None, "eval_id", "duplicate eval ids across sets")
    return df.reset_index(drop=True)


def subset(df: Any, max_instructions: int | None, max_references: int | None, seed: int) -> Any:
    """The evaluated subset: a seeded sample of instructions, at most k references each."""
    import numpy as np

    if max_references:
        df = df.groupby("eval_id", sort=False).head(max_references)
    if max_instructions:
        ids = sorted(df["eval_id"].unique())
        if max_instructions < len(ids):
            rng = np.random.default_rng(derive_seed(seed, "eval"))
            keep = set(rng.choice(ids, size=max_instructions, replace=False).tolist())
            df = df[df["eval_id"].isin(keep)]
    return df.reset_index(drop=True)


def _cmd_build_eval(args: argparse.Namespace) -> int:
    cfg = json.loads(args.eval_config)
    data_root = None if args.data_root == "none" else args.data_root
    full = build_eval(cfg["sets"], cfg.get("references", []), data_root)
    used = subset(full, cfg.get("max_instructions"), cfg.get("max_references"), args.seed)
    write_parquet(full, args.out_all)
    write_parquet(used, args.out)
    LOG.info("D_eval: %d instructions, %d references (evaluated: %d / %d)", full["eval_id"].nunique(),
             len(full), used["eval_id"].nunique(), len(used))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-eval", help="build D_eval (results/eval/eval.parquet and eval_all.parquet)")
    p.add_argument("--eval-config", required=True, help="JSON of the config's eval block")
    p.add_argument("--data-root", required=True, help="folder of local data files, or 'none'")
    p.add_argument("--seed", type=int, required=True, help="config seed (which reference is drawn where several exist)")
    p.add_argument("--out", required=True, help="evaluated subset")
    p.add_argument("--out-all", required=True, help="every instruction (for the leakage guard)")
    p.set_defaults(func=_cmd_build_eval)
