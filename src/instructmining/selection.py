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
import sys
from collections import Counter
from dataclasses import dataclass
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
        raw, where = path.read_bytes(), str(path)
    elif spec in shipped_rules():
        raw = resources.files("instructmining").joinpath("quality_rules", f"{spec}.json").read_bytes()
        where = f"shipped rule {spec}"
    else:
        raise InstructMiningError(f"rule {spec!r}: neither a file nor a shipped rule {shipped_rules()}")
    try:
        rule = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(where, None, None, f"not valid UTF-8 (byte {exc.start}); re-save it as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DataError(where, f"line {exc.lineno}", None, f"not JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(rule, dict):
        raise DataError(where, None, None, f"a rule is a JSON object with 'indicators' and 'coefficients', "
                        f"got a {type(rule).__name__} (use the rule.json that fit-rule writes)")
    names, coef = rule.get("indicators"), rule.get("coefficients")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(where, None, "indicators", "a rule needs an indicators list of names")
    if not isinstance(coef, dict):
        raise DataError(where, None, "coefficients", "a rule needs a coefficients object {name: number}")
    if not names:
        # An intercept-only rule predicts the same loss for every sample: any "selection" would
        # be an arbitrary tie-break, so refuse rather than pretend.
        raise DataError(where, None, "indicators", "the rule chose no indicator, so it cannot rank samples "
                        "(use a shipped rule such as paper-v1, or relax analysis.p_enter)")
    for term in ["intercept", *names]:
        value = coef.get(term)
        # bool is an int subclass: `true` must not pass as 1.0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataError(where, None, f"coefficients.{term}", f"must be a finite number, got {json.dumps(value)}")
    extra = sorted(set(coef) - {"intercept", *names})
    if extra:
        # A coefficient the prediction would silently ignore is almost always a typo or an edit
        # that forgot the indicators list.
        raise DataError(where, None, f"coefficients.{extra[0]}", f"not one of the rule's indicators {names}: "
                        "add it to 'indicators' or remove the coefficient")
    for key in ("models", "options"):
        if not isinstance(rule.get(key, {}), dict):
            raise DataError(where, None, key, f"must be a JSON object, got {type(rule[key]).__name__}")
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


USER_SUFFIXES = (".json", ".jsonl", ".parquet")
# With --with-scores these columns are added to each selected row. The prefix keeps them apart
# from the user's own columns (a user column named `reward` is data, not our score).
SCORE_PREFIX = "im_score_"
PREDICTION_COLUMN = "im_predicted_log_loss"


@dataclass
class UserData:
    """A user file as read: `originals` are the records exactly as parsed (types, nesting and
    missing keys untouched), written back as they are; `samples` is the normalized view
    (instruction, input, output as the pool normalizes them) that is scored. Both are aligned."""

    path: Path
    originals: list[dict[str, Any]]
    samples: list[dict[str, str]]
    where: list[str]
    schema: Any  # the parquet schema of a .parquet input (kept for the output), else None
    stats: Counter
    duplicate_example: str | None = None


def check_data_path(path: str) -> Path:
    """The --data file: it must exist and have a known extension (checked before anything is read)."""
    p = Path(path)
    if not p.exists():
        raise DataError(p, None, None, "file not found (check the --data path)")
    if not p.is_file():
        raise DataError(p, None, None, "is a directory, not a data file (pass a .json, .jsonl or .parquet file)")
    if p.suffix.lower() not in USER_SUFFIXES:
        raise DataError(p, None, None, f"unknown extension {p.suffix!r} (use {', '.join(USER_SUFFIXES)})")
    return p


def read_user_data(path: str, on_empty: str = "error") -> UserData:
    """Read a .json (array) / .jsonl / .parquet file of {instruction, input?, output} records.

    Each record is normalized by the pool's own rule (data.normalize_record: NFC, trimmed, a list
    value means its first element). As in the pool, exact duplicates (same normalized
    instruction + input + output) keep their first occurrence and are counted; a blank
    instruction or output is an error naming the record unless on_empty == "skip" (counted)."""
    from .data import normalize_record
    from .records import read_file

    p = check_data_path(path)
    src = {"label": "user", "format": "auto", "on_empty": on_empty}
    stats: Counter = Counter()
    data = UserData(p, [], [], [], None, stats)
    seen: dict[str, str] = {}
    for where, rec in read_file(p):
        stats["read"] += 1
        sample = normalize_record(rec, src, str(p), where, "last_turn", stats, skip_hint="pass --on-empty skip")
        if sample is None:
            continue
        if sample["id"] in seen:
            stats["duplicates"] += 1
            data.duplicate_example = data.duplicate_example or f"{where} repeats {seen[sample['id']]}"
            continue
        seen[sample["id"]] = where
        data.originals.append(rec)
        data.samples.append({k: sample[k] for k in ("instruction", "input", "output")})
        data.where.append(where)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        data.schema = pq.read_schema(p)
    return data


def _json_default(value: Any) -> Any:
    """JSON for the non-JSON values a parquet file can hold (dates, decimals); others refuse."""
    import datetime
    import decimal

    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"a {type(value).__name__} value has no JSON form")


def _json_line(rec: dict[str, Any], path: Path, where: str) -> str:
    try:
        return json.dumps(rec, ensure_ascii=False, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:  # NaN/Infinity, bytes, ...: JSON cannot hold them
        raise DataError(path, where, None, f"cannot be written as JSON ({exc}); write a .parquet --out instead") from None


def _arrow_table(rows: list[dict[str, Any]], data: UserData, out: Path) -> Any:
    """The rows as an arrow table: a parquet input's own schema (types and nesting kept), else
    types inferred from the records (keys missing in a record become null in its row)."""
    import pyarrow as pa

    try:
        if data.schema is not None:
            return pa.Table.from_pylist(rows, schema=data.schema)
        return pa.Table.from_pylist(rows)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataError(data.path, None, None, f"its records cannot be stored as one parquet table for {out} "
                        f"({exc}); make each field's type the same in every record, or write a .jsonl --out") from None


def check_writable(data: UserData, out: Path, score_columns: list[str]) -> None:
    """Fail before scoring if the selected rows could not be written: a score column would
    overwrite a user field, or a record has no JSON/parquet form."""
    for rec, where in zip(data.originals, data.where, strict=True):
        taken = [c for c in score_columns if c in rec]
        if taken:
            raise DataError(data.path, where, taken[0], "--with-scores would overwrite this user field "
                            f"(scores go into {SCORE_PREFIX}<indicator> and {PREDICTION_COLUMN}); rename it")
    if out.suffix == ".parquet":
        _arrow_table(data.originals, data, out)
    else:
        for rec, where in zip(data.originals, data.where, strict=True):
            _json_line(rec, data.path, where)


def write_selected(rows: list[dict[str, Any]], data: UserData, out: Path, scores: dict[str, list[float]]) -> None:
    """Write rows atomically as .parquet, .jsonl (one object per line) or .json (an array), each
    row as the user had it, plus the score columns when `scores` is not empty."""
    from .io import atomic_path

    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = _arrow_table(rows, data, out)
        for name, values in scores.items():
            table = table.append_column(name, pa.array(values, type=pa.float64()))
        with atomic_path(out) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return
    lines = [_json_line({**rec, **{k: v[i] for k, v in scores.items()}}, data.path, "")
             for i, rec in enumerate(rows)]
    text = "".join(line + "\n" for line in lines) if out.suffix == ".jsonl" else \
        "[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n"
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")


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


def check_out_path(out: str) -> Path:
    """The --out file: a known extension, not a directory, in a folder that exists."""
    p = Path(out)
    if p.suffix not in USER_SUFFIXES:
        raise InstructMiningError(f"--out {out}: use a .jsonl, .json or .parquet file name")
    if p.is_dir():
        raise InstructMiningError(f"--out {out}: is a directory; name a file inside it (e.g. {p / ('selected' + p.suffix)})")
    if not p.parent.is_dir():
        # atomic_path would create it, but a missing folder is far more often a typo than a wish
        raise InstructMiningError(f"--out {out}: folder {p.parent} does not exist; create it first "
                                  f"(mkdir -p {p.parent})")
    return p


def _json_object(flag: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InstructMiningError(f"{flag}: not JSON ({exc.msg} at column {exc.colno}); pass a JSON object, "
                                  'e.g. \'{"batch_size": 4}\'') from None
    if not isinstance(value, dict):
        raise InstructMiningError(f"{flag}: expected a JSON object, got {type(value).__name__}")
    return value


def _cmd_select(args: argparse.Namespace) -> int:
    from .indicators import registry, score_frame, validate_names

    # Cheap checks first: flags, rule and file are validated before any model is loaded.
    if args.n < 1:
        raise InstructMiningError(f"--n must be a positive number of records, got {args.n}")
    out = check_out_path(args.out)
    rule = load_rule(args.rule)
    validate_names(rule["indicators"])
    # The rule's own scorers (paper-v1: the paper's hub models), overridden per key by --models.
    models = {**rule.get("models", {}), **_json_object("--models", args.models)}
    options = {**rule.get("options", {}), **_json_object("--options", args.options)}
    data = read_user_data(args.data, args.on_empty)
    st = data.stats
    usable = len(data.samples)
    counts = (f"{st['read']} records read, {st['duplicates']} exact duplicates dropped"
              + (f" (e.g. {data.duplicate_example}; the first is kept)" if data.duplicate_example else "")
              + f", {st['skipped_empty']} with a blank instruction or output skipped")
    if args.n > usable:
        raise InstructMiningError(f"--n {args.n} is more than the {usable} usable records in {data.path} "
                                  f"({counts}); lower --n")
    for name in rule["indicators"]:
        if registry.info(name).level != "set":
            continue
        need = registry.create(name).min_set_size
        if usable < need:
            raise InstructMiningError(f"the rule's {name} needs at least {need} records; "
                                      f"{data.path} has {usable} usable ({counts})")
    score_columns = [SCORE_PREFIX + nm for nm in rule["indicators"]] + [PREDICTION_COLUMN]
    check_writable(data, out, score_columns if args.with_scores else [])

    import pandas as pd

    # Records are labelled by where they are in the file, so a scorer error names "line 7".
    frame = pd.DataFrame(data.samples, columns=["instruction", "input", "output"]).assign(id=data.where)
    feats = score_frame(frame, rule["indicators"], models, options).reset_index(drop=True)
    pred = predict(rule, feats, key="id")
    chosen = top_n(pd.DataFrame({"row": range(usable)}), pred, args.n, tiebreak=None)["row"]
    rows = sorted(int(r) for r in chosen)  # the user's own row order
    scores = {}
    if args.with_scores:
        scores = {SCORE_PREFIX + nm: feats[nm].to_numpy()[rows].tolist() for nm in rule["indicators"]}
        scores[PREDICTION_COLUMN] = [float(pred[r]) for r in rows]
    write_selected([data.originals[r] for r in rows], data, out, scores)
    print(f"instructmining select: {data.path}: {counts}; {usable} scored; {len(rows)} selected -> {out}",
          file=sys.stderr)
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
    p = sub.add_parser(
        "select", help="apply a rule to a user dataset and keep the best n rows",
        description="Score every record of a user file with a rule and write the n records with the lowest "
        "predicted log loss. Records are written exactly as read (same keys, types, nesting; in file order). "
        "Records are normalized as the pool is (NFC, trimmed); exact duplicates (same normalized instruction, "
        "input and output) keep the first and are counted; a blank instruction or output is an error unless "
        "--on-empty skip. A summary line with the counts goes to stderr.")
    p.add_argument("--rule", required=True, help=f"rule.json path or shipped name ({', '.join(shipped_rules())})")
    p.add_argument("--data", required=True, help=".json (array)/.jsonl/.parquet records with instruction, output "
                   "and optional input (strings)")
    p.add_argument("--n", type=int, required=True, help="how many records to keep (at most the usable records)")
    p.add_argument("--out", required=True, help=".jsonl, .json or .parquet (by extension); the folder must exist")
    p.add_argument("--models", default="{}",
                   help='JSON {"base"|"reward"|"embedding"|"unieval": model spec}; overrides the rule\'s own models')
    p.add_argument("--options", default="{}", help="JSON: scorer options (batch_size, max_length, ...)")
    p.add_argument("--on-empty", choices=["error", "skip"], default="error",
                   help="a record whose instruction or output is blank: stop with an error naming it "
                   "(default), or skip it and count it")
    p.add_argument("--with-scores", action="store_true",
                   help=f"add {SCORE_PREFIX}<indicator> per rule indicator and {PREDICTION_COLUMN} to each row "
                   "(an error if a record already has such a field)")
    p.set_defaults(func=_cmd_select)
