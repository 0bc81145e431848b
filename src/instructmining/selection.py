"""Rule-guided selection: score every sample with a rule (fitted rule.json or a shipped one such
as paper-v1), keep the n samples with the lowest predicted log loss; random subsets of the same
size are the baseline.

`select-dataset` makes the workflow's sel-{rule|random}-{n}-{seed} datasets from the unseen pool
(per-sample scores from results/scores/, KNN-i within the unseen pool from its embeddings);
`select` applies a rule to any user file (json/jsonl/parquet with instruction/input/output)."""

from __future__ import annotations

import argparse
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import DataError, InstructMiningError

POOL_COLUMNS = ["id", "source", "role", "instruction", "input", "output"]


def shipped_rules() -> list[str]:
    """Names of the rules shipped as package data (src/instructmining/quality_rules/*.json)."""
    return sorted(p.name[:-5] for p in resources.files("instructmining").joinpath("quality_rules").iterdir()
                  if p.name.endswith(".json"))


def load_rule(spec: str) -> dict[str, Any]:
    """A rule from a rule.json path or a shipped name; checked to be usable for ranking."""
    path = Path(spec)
    if path.is_file():
        text, where = path.read_text(encoding="utf-8"), str(path)
    elif spec in shipped_rules():
        text = resources.files("instructmining").joinpath("quality_rules", f"{spec}.json").read_text(encoding="utf-8")
        where = f"shipped rule {spec}"
    else:
        raise InstructMiningError(f"rule {spec!r}: neither a file nor a shipped rule {shipped_rules()}")
    try:
        rule = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(where, None, None, f"not JSON: {exc}") from exc
    names, coef = rule.get("indicators"), rule.get("coefficients")
    if not isinstance(names, list) or not isinstance(coef, dict):
        raise DataError(where, None, "indicators", "a rule needs an indicators list and a coefficients object")
    if not names:
        # An intercept-only rule predicts the same loss for every sample: any "selection" would
        # be an arbitrary tie-break, so refuse rather than pretend.
        raise DataError(where, None, "indicators", "the rule chose no indicator, so it cannot rank samples "
                        "(use a shipped rule such as paper-v1, or relax analysis.p_enter)")
    for term in ["intercept", *names]:
        value = coef.get(term)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataError(where, None, f"coefficients.{term}", f"must be a finite number, got {value!r}")
    return rule


def predict(rule: dict[str, Any], features: Any, key: str = "id") -> Any:
    """Predicted log loss per row: intercept + sum(coef * indicator), raw scale."""
    import numpy as np

    pred = np.full(len(features), float(rule["coefficients"]["intercept"]))
    for name in rule["indicators"]:
        if name not in features.columns:
            raise DataError("features", None, name, "indicator needed by the rule was not computed")
        x = features[name].to_numpy(dtype=float)
        bad = ~np.isfinite(x)
        if bad.any():
            who = features[key].iloc[int(np.argmax(bad))] if key in features.columns else int(np.argmax(bad))
            raise DataError("features", f"sample {who}", name, f"not a finite number ({x[bad][0]!r})")
        pred += float(rule["coefficients"][name]) * x
    return pred


def top_n(frame: Any, predicted: Any, n: int, tiebreak: str | None = "id") -> Any:
    """The n rows with the lowest predicted log loss, best first (ties broken by `tiebreak`,
    else by row order, so the choice never depends on sort stability)."""
    import numpy as np

    if n > len(frame):
        raise InstructMiningError(f"cannot select n = {n} samples from {len(frame)}")
    keys = frame[tiebreak].astype(str).to_numpy() if tiebreak else np.arange(len(frame))
    order = np.lexsort((keys, np.asarray(predicted, dtype=float)))
    return frame.iloc[order[:n]].reset_index(drop=True)


def random_n(frame: Any, n: int, seed: int, master_seed: int = 0) -> Any:
    """n rows drawn without replacement; the pool is sorted by id first, so the draw depends on
    (master_seed, seed) and the pool's content only. Subsets for increasing n are nested."""
    import numpy as np

    if n > len(frame):
        raise InstructMiningError(f"cannot select n = {n} samples from {len(frame)}")
    ordered = frame.sort_values("id", kind="mergesort").reset_index(drop=True)
    perm = np.random.default_rng([master_seed, seed]).permutation(len(ordered))
    return ordered.iloc[perm[:n]].reset_index(drop=True)


def unseen_pool(pool: Any, sources: list[str] | None = None) -> Any:
    """Pool rows with role == unseen (optionally only some sources), sorted by id."""
    rows = pool[pool["role"] == "unseen"]
    if sources:
        missing = sorted(set(sources) - set(rows["source"]))
        if missing:
            raise DataError("pool", None, "source", f"no unseen rows from {missing}")
        rows = rows[rows["source"].isin(sources)]
    if rows.empty:
        raise DataError("pool", None, "role", "no rows with role == 'unseen' to select from")
    return rows.sort_values("id", kind="mergesort").reset_index(drop=True)


def pool_features(ids: list[str], names: list[str], score_files: list[str], embeddings: str | None,
                  embedding_ids: str | None) -> Any:
    """Per-sample indicators for `ids`: cached per-sample scores, and KNN-i within `ids` from the
    pool embeddings (a set-level indicator: the neighbours are the other candidates). As in the
    paper, the rule fitted on mixture-level KNN-i is applied to distances within the candidate
    pool, whose size differs from a mixture's: only the ranking, not the predicted loss, carries over."""
    import numpy as np
    import pandas as pd

    from .indicators import registry, sample_level_scores

    set_level = [nm for nm in names if registry.info(nm).level == "set"]
    frame = sample_level_scores(ids, [nm for nm in names if nm not in set_level], score_files)
    frame = frame.set_index("id").reindex(ids).reset_index() if len(frame) else pd.DataFrame({"id": ids})
    if set_level:
        if not embeddings or not embedding_ids:
            raise InstructMiningError(f"the rule needs {set_level}: pass --embeddings and --embedding-ids")
        emb = np.load(embeddings)
        emb_ids = pd.read_parquet(embedding_ids)["id"].astype(str)
        pos = pd.Series(np.arange(len(emb_ids)), index=emb_ids.to_numpy())
        missing = [i for i in ids if i not in pos.index]
        if missing:
            raise DataError(embeddings, f"sample {missing[0]}", "id", f"{len(missing)} ids have no embedding")
        sub = emb[pos.loc[ids].to_numpy()]
        for nm in set_level:
            frame[nm] = registry.create(nm).dataset_distances(sub)
    return frame


def read_records(path: str) -> Any:
    """A user dataset (.json list, .jsonl, .parquet) with instruction and output (input optional)."""
    import pandas as pd

    p = Path(path)
    if p.suffix == ".parquet":
        df = pd.read_parquet(p)
    elif p.suffix in (".json", ".jsonl"):
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".json":
            try:
                records = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(p, f"line {exc.lineno}", None, f"not JSON: {exc.msg}") from exc
        else:
            records = []
            for lineno, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(p, f"line {lineno}", None, f"not JSON: {exc.msg}") from exc
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise DataError(p, None, None, "expected a list of objects")
        df = pd.DataFrame(records)
    else:
        raise DataError(p, None, None, "unknown extension (use .json, .jsonl or .parquet)")
    for field in ("instruction", "output"):
        if field not in df.columns:
            raise DataError(p, None, field, "missing column")
        bad = df[field].map(lambda v: not isinstance(v, str))
        if bad.any():
            raise DataError(p, f"record {int(bad.idxmax())}", field, "must be a string")
    if "input" not in df.columns:
        df["input"] = ""
    df["input"] = df["input"].fillna("")
    return df


def write_records(df: Any, path: str) -> None:
    """Write rows atomically: parquet for .parquet, else JSON lines (one object per row)."""
    from .io import atomic_path, write_parquet

    if str(path).endswith(".parquet"):
        write_parquet(df, path)
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for rec in df.to_dict(orient="records"):
            fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")


def _cmd_select_dataset(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import write_parquet

    pool = unseen_pool(pd.read_parquet(args.pool), args.sources)
    if args.method == "random":
        chosen = random_n(pool, args.n, args.seed, args.master_seed)
    else:
        if not args.rule:
            raise InstructMiningError("select-dataset --method rule needs --rule (rule.json or a shipped name)")
        rule = load_rule(args.rule)
        feats = pool_features(pool["id"].tolist(), rule["indicators"], args.scores, args.embeddings,
                              args.embedding_ids)
        chosen = top_n(pool, predict(rule, feats), args.n)
    write_parquet(chosen[POOL_COLUMNS], args.out,
                  metadata={"kind": "selection", "seed": str(args.seed), "method": args.method})
    return 0


def _cmd_select(args: argparse.Namespace) -> int:
    from .indicators import score_frame

    if not args.out.endswith((".jsonl", ".parquet")):
        raise InstructMiningError(f"--out {args.out}: use a .jsonl or .parquet file name")
    rule = load_rule(args.rule)
    df = read_records(args.data)
    # The rule's own scorers (paper-v1: the paper's hub models), overridden per key by --models.
    models = {**rule.get("models", {}), **json.loads(args.models)}
    options = {**rule.get("options", {}), **json.loads(args.options)}
    feats = score_frame(df, rule["indicators"], models, options)
    pred = predict(rule, feats.reset_index(drop=True), key="__none__")
    out = df.reset_index(drop=True)
    if args.with_scores:
        out = out.assign(**{nm: feats[nm].to_numpy() for nm in rule["indicators"]}, predicted_log_loss=pred)
    write_records(top_n(out, pred, args.n, tiebreak=None), args.out)
    return 0


def register(sub: Any) -> None:
    """Add `select-dataset` (workflow) and `select` (any user file)."""
    p = sub.add_parser("select-dataset", help="sel-{rule|random}-{n}-{seed} from the unseen pool")
    p.add_argument("--pool", required=True, help="results/pool/pool.parquet")
    p.add_argument("--method", required=True, choices=["rule", "random"])
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, required=True, help="the dataset's seed (random draws only)")
    p.add_argument("--master-seed", type=int, default=0, help="config seed (random draws only)")
    p.add_argument("--rule", nargs="?", help="rule.json path or shipped name (method rule)")
    p.add_argument("--sources", nargs="*", default=None, help="unseen source labels (default: all)")
    p.add_argument("--scores", nargs="*", default=[], help="score files <indicator>.parquet the rule needs")
    p.add_argument("--embeddings", nargs="?", help="pool embeddings .npy (for set-level indicators)")
    p.add_argument("--embedding-ids", nargs="?", help="their ids .parquet (row order of --embeddings)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_select_dataset)
    p = sub.add_parser("select", help="apply a rule to a user dataset and keep the best n rows")
    p.add_argument("--rule", required=True, help=f"rule.json path or shipped name ({', '.join(shipped_rules())})")
    p.add_argument("--data", required=True, help=".json/.jsonl/.parquet with instruction, input, output")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True, help=".jsonl or .parquet (by extension)")
    p.add_argument("--models", default="{}",
                   help='JSON {"base"|"reward"|"embedding"|"unieval": model spec}; overrides the rule\'s own models')
    p.add_argument("--options", default="{}", help="JSON: scorer options (batch_size, max_length, ...)")
    p.add_argument("--with-scores", action="store_true", help="add indicator columns and predicted_log_loss")
    p.set_defaults(func=_cmd_select)
