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
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
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
    path: Path | None = Path(spec)
    if path.is_file():
        raw, where = path.read_bytes(), str(path)
    elif spec in shipped_rules():
        raw = resources.files("instructmining").joinpath("quality_rules", f"{spec}.json").read_bytes()
        where, path = f"shipped rule {spec}", None
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
    resolve_rule_models(rule, path)
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


SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")  # read and written
HUB_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name
FORMATS = ["auto", "alpaca", "sharegpt", "messages", "prompt_completion"]
FIELD_KEYS = ("instruction", "input", "output")
INVALID_HINT = "or pass --on-invalid skip to skip such records (counted, listed in <out>.skipped.jsonl)"
# With --with-scores these columns are added to each selected row. The prefix keeps them apart
# from the user's own columns (a user column named `reward` is data, not our score).
SCORE_PREFIX = "im_score_"
PREDICTION_COLUMN = "im_predicted_log_loss"


@dataclass
class UserData:
    """A user file as read: `originals` are the records exactly as parsed (types, nesting and
    missing keys untouched), written back as they are; `samples` is the normalized view
    (instruction, input, output as the pool normalizes them) that is scored. Both are aligned.
    `skipped` lists the records left out ({where, reason, message}), `stats` counts them."""

    path: str
    originals: list[dict[str, Any]]
    samples: list[dict[str, str]]
    where: list[str]
    schema: Any  # the parquet schema of a .parquet input (kept for the output), else None
    stats: Counter
    duplicate_example: str | None = None
    layout: str = "alpaca"
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, exc: DataError, reason: str | None = None) -> None:
        """Leave a record out, counted by reason (field + the problem's first words)."""
        if reason is None:
            reason = f"{exc.field or 'record'}: {re.split(r' [(]|: |; ', exc.problem)[0]}"
        self.stats["skipped"] += 1
        self.skipped.append({"where": exc.where or "", "reason": reason, "message": str(exc)})

    def reasons(self) -> Counter:
        return Counter(s["reason"] for s in self.skipped if s["reason"] != "exact duplicate")


def check_data_path(spec: str) -> Path | str:
    """The --data argument: a local file with a known extension, or a hub dataset id
    (`owner/name`, or `hub:ID` for anything datasets.load_dataset takes, e.g. a local dataset folder)."""
    if spec.startswith("hub:"):
        return spec
    p = Path(spec)
    if p.is_dir():
        raise DataError(p, None, None, f"is a directory, not a data file (pass a {', '.join(SUFFIXES)} file, "
                        f"or hub:{spec} to load the folder with datasets.load_dataset)")
    if not p.exists():
        if p.suffix.lower() not in SUFFIXES and HUB_RE.match(spec):
            return "hub:" + spec
        raise DataError(p, None, None, "file not found (check the --data path); a hub dataset is owner/name or hub:ID")
    if p.suffix.lower() not in SUFFIXES:
        raise DataError(p, None, None, f"unknown extension {p.suffix!r} (use {', '.join(SUFFIXES)})")
    return p


def parse_fields(text: str | None) -> dict[str, str]:
    """--fields instruction=question,input=context,output=answer -> {role: column}."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        key, sep, col = (x.strip() for x in part.partition("="))
        if not sep or key not in FIELD_KEYS or not col:
            raise InstructMiningError(f"--fields {text!r}: expected comma-separated role=column pairs with role in "
                                      f"{', '.join(FIELD_KEYS)} (e.g. instruction=question,output=answer)")
        out[key] = col
    return out


def parse_n(text: str) -> int | float:
    """--n: a count (an integer >= 1) or a fraction of the usable records (a decimal in (0, 1])."""
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0 < value <= 1:  # also NaN
            raise InstructMiningError(f"--n {text}: a fraction must be a decimal in (0, 1] (e.g. 0.1 for 10 %), "
                                      "a count a whole number >= 1") from None
        return value
    if value < 1:
        raise InstructMiningError(f"--n must be a positive count (e.g. 1000) or a fraction in (0, 1] (e.g. 0.1), "
                                  f"got {text}")
    return value


def resolve_n(n: int | float, usable: int, counts: str, where: str) -> int:
    """The number of records --n asks for, checked against the usable ones."""
    if isinstance(n, float):
        count = math.floor(n * usable + 0.5)
        if count < 1:
            raise InstructMiningError(f"--n {n} of the {usable} usable records in {where} is 0 records; raise --n")
        return count
    if n > usable:
        raise InstructMiningError(f"--n {n} is more than the {usable} usable records in {where} ({counts}); lower --n")
    return n


def read_user_data(spec: str, on_invalid: str = "error", fmt: str = "auto", fields: dict[str, str] | None = None,
                   split: str = "train", on_empty: str = "error") -> UserData:
    """Read a .json (array) / .jsonl / .parquet / .csv file or a hub dataset of instruction
    records in any layout the pool reads (alpaca, sharegpt, messages, prompt_completion;
    `auto` detects it from the first record's keys; `fields` maps other column names).

    The reading and normalizing are the pool's own (records.read_file / read_hub,
    data.normalize_record: NFC, trimmed, multi-turn -> last turn with a transcript input). As in
    the pool, exact duplicates keep their first occurrence and are counted. A record that cannot
    be read or normalized is an error naming it unless on_invalid == "skip" (then counted by
    reason and listed); on_empty == "skip" skips only blank instructions/outputs."""
    from .data import detect_format, normalize_record
    from .records import read_file, read_hub

    where_from = check_data_path(spec)
    bad: list[DataError] | None = [] if on_invalid == "skip" else None
    if isinstance(where_from, str):
        display = where_from
        records = read_hub(where_from[4:], None, split, None)
    else:
        display = str(where_from)
        records = read_file(where_from, "auto", bad)
    stats: Counter = Counter()
    data = UserData(display, [], [], [], None, stats)
    seen: dict[str, str] = {}
    src: dict[str, Any] | None = None
    if fmt != "auto" or fields:
        src = {"label": "user", "format": "alpaca" if fmt == "auto" else fmt, "fields": fields or {}}
    for where, rec in records:
        stats["read"] += 1
        try:
            if src is None:  # auto: the first record decides the layout of the whole file
                layout, found = detect_format(rec, display, where)
                src = {"label": "user", "format": layout, "fields": found}
            sample = normalize_record(rec, src, display, where, "last_turn", stats, skip_hint="pass --on-invalid skip")
        except DataError as exc:
            if on_invalid == "skip" or (on_empty == "skip" and exc.problem.startswith("empty ")):
                data.skip(exc)
                continue
            if exc.where and "--on-invalid" not in exc.problem:
                raise DataError(exc.path, exc.where, exc.field, f"{exc.problem}; fix the record, {INVALID_HINT}") from None
            raise
        if sample is None:
            continue
        if sample["id"] in seen:
            stats["duplicates"] += 1
            data.duplicate_example = data.duplicate_example or f"{where} repeats {seen[sample['id']]}"
            data.skipped.append({"where": where, "reason": "exact duplicate", "message": f"repeats {seen[sample['id']]}"})
            continue
        seen[sample["id"]] = where
        data.originals.append(rec)
        data.samples.append({k: sample[k] for k in ("instruction", "input", "output")})
        data.where.append(where)
    for exc in bad or []:  # lines the reader could not parse
        stats["read"] += 1
        data.skip(exc)
    data.skipped.sort(key=lambda s: int(re.sub(r"\D", "", s["where"]) or 0))
    data.layout = src["format"] if src else fmt
    if isinstance(where_from, Path) and where_from.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        data.schema = pq.read_schema(where_from)
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


def _json_line(rec: Any, path: str, where: str) -> str:
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
    elif out.suffix == ".csv":  # scalars are written as text; nested values as JSON text
        for rec, where in zip(data.originals, data.where, strict=True):
            for value in rec.values():
                if isinstance(value, (list, dict)):
                    _json_line(value, data.path, where)
    else:
        for rec, where in zip(data.originals, data.where, strict=True):
            _json_line(rec, data.path, where)


def _csv_text(rows: list[dict[str, Any]], data: UserData, scores: dict[str, list[float]]) -> str:
    """Rows as CSV: columns in order of first appearance (score columns last); a missing key is an
    empty cell; a list or object value is written as its JSON text."""
    import csv
    import io

    columns = list(dict.fromkeys(k for rec in rows for k in rec)) + list(scores)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for i, rec in enumerate(rows):
        full = {**rec, **{k: v[i] for k, v in scores.items()}}
        writer.writerow(["" if full.get(c) is None else
                         _json_line(full[c], data.path, "") if isinstance(full[c], (list, dict)) else full[c]
                         for c in columns])
    return buf.getvalue()


def write_selected(rows: list[dict[str, Any]], data: UserData, out: Path, scores: dict[str, list[float]]) -> None:
    """Write rows atomically as .parquet, .csv, .jsonl (one object per line) or .json (an array), each
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
    if out.suffix == ".csv":
        with atomic_path(out) as tmp:
            tmp.write_text(_csv_text(rows, data, scores), encoding="utf-8")
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
    if p.suffix not in SUFFIXES:
        raise InstructMiningError(f"--out {out}: use a .jsonl, .json, .parquet or .csv file name")
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


def record_models(models: dict[str, Any], indicators: list[str], rule_path: str | Path) -> dict[str, Any]:
    """What fit-rule stores so the rule works from anywhere and only with the models it was fitted
    with: local model paths relative to the rule file (absolute ones kept), a content hash of
    every local model (path or package), and the versions of the scorers."""
    from . import __version__
    from .fingerprint import folder_fingerprint
    from .indicators import registry
    from .indicators.models import resolve_model

    rule_dir = Path(rule_path).resolve().parent
    portable, hashes = {}, {}
    for key, spec in models.items():
        spec = dict(spec)
        if spec.get("path"):
            folder = Path(spec["path"]).resolve()
            spec["path"] = spec["path"] if Path(spec["path"]).is_absolute() else os.path.relpath(folder, rule_dir)
            hashes[key] = "sha256:" + folder_fingerprint(folder)
        elif spec.get("package"):
            hashes[key] = "sha256:" + folder_fingerprint(resolve_model(spec))
        portable[key] = spec
    return {"models": portable, "model_paths": "relative to this rule file", "model_hashes": hashes,
            "versions": {"instructmining": __version__,
                         "indicators": {n: registry.info(n).version for n in indicators}}}


def resolve_rule_models(rule: dict[str, Any], rule_path: Path | None) -> None:
    """Make a fitted rule's relative model paths absolute against the rule file's folder (rules
    written before model_paths existed keep paths relative to the working directory)."""
    if rule_path is None or rule.get("model_paths") != "relative to this rule file":
        return
    for spec in rule.get("models", {}).values():
        if isinstance(spec, dict) and isinstance(spec.get("path"), str) and not Path(spec["path"]).is_absolute():
            spec["path"] = str((rule_path.resolve().parent / spec["path"]).resolve())


def check_rule_models(rule: dict[str, Any], models: dict[str, Any], overridden: set[str], where: str) -> None:
    """Refuse to score with a recorded model whose content or scorer version changed since the
    rule was fitted (its coefficients would apply to other scales). --models overrides are the
    user's deliberate choice and are not checked."""
    from .fingerprint import folder_fingerprint
    from .indicators import registry
    from .indicators.models import resolve_model

    for name, version in (rule.get("versions") or {}).get("indicators", {}).items():
        if registry.info(name).version != version:
            raise InstructMiningError(f"{where}: indicator {name} is version {registry.info(name).version} here but "
                                      f"the rule was fitted with version {version}; refit the rule")
    roles = {registry.info(n).model for n in rule["indicators"]} - {None}
    # A role the rule has no model for is scored with its fallback (perplexity -> base): check that one.
    needed = {r if r in models else registry.FALLBACK_ROLES.get(r, r) for r in roles} - overridden
    for key, recorded in sorted((rule.get("model_hashes") or {}).items()):
        if key not in needed or key not in models:
            continue
        folder = resolve_model(models[key])
        actual = "sha256:" + folder_fingerprint(folder)
        if actual != recorded:
            raise InstructMiningError(f"{where}: the {key} model at {folder} changed since the rule was fitted "
                                      f"(content hash {actual[:19]}..., rule has {recorded[:19]}...); refit the rule, "
                                      f"or pass --models to score with another model deliberately")


def _score_range(values: Any) -> str:
    return f"{min(values):.4g}..{max(values):.4g}" if len(values) else "-"


def write_skipped(data: UserData, out: Path) -> Path:
    """<out stem>.skipped.jsonl: one line per record left out (where, reason, message); written
    atomically, removed when nothing was left out (a stale list would mislead)."""
    from .io import atomic_path

    side = out.with_name(out.name.removesuffix(out.suffix) + ".skipped.jsonl")
    if not data.skipped:
        side.unlink(missing_ok=True)
        return side
    with atomic_path(side) as tmp:
        tmp.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in data.skipped), encoding="utf-8")
    return side


def _cmd_select(args: argparse.Namespace) -> int:
    import time

    from .indicators import registry, score_frame, validate_names

    t0 = time.perf_counter()
    # Cheap checks first: flags, rule and file are validated before any model is loaded.
    n = parse_n(args.n)
    fields = parse_fields(args.fields)
    out = check_out_path(args.out)
    rule = load_rule(args.rule)
    validate_names(rule["indicators"])
    # The rule's own scorers (paper-v1: the paper's hub models), overridden per key by --models.
    user_models = _json_object("--models", args.models)
    models = {**rule.get("models", {}), **user_models}
    options = {**rule.get("options", {}), **_json_object("--options", args.options)}
    data = read_user_data(args.data, args.on_invalid, args.format, fields, args.split, args.on_empty)
    st = data.stats
    usable = len(data.samples)
    reasons = data.reasons()
    counts = (f"{st['read']} records read, {st['duplicates']} exact duplicates dropped"
              + (f" (e.g. {data.duplicate_example}; the first is kept)" if data.duplicate_example else "")
              + f", {st['skipped']} invalid skipped"
              + (f" ({'; '.join(f'{r}: {c}' for r, c in reasons.most_common())})" if reasons else ""))
    count = resolve_n(n, usable, counts, data.path)
    for name in rule["indicators"]:
        if registry.info(name).level != "set":
            continue
        need = registry.create(name).min_set_size
        if usable < need:
            raise InstructMiningError(f"the rule's {name} needs at least {need} records; "
                                      f"{data.path} has {usable} usable ({counts})")
    score_columns = [SCORE_PREFIX + nm for nm in rule["indicators"]] + [PREDICTION_COLUMN]
    check_writable(data, out, score_columns if args.with_scores else [])
    check_rule_models(rule, models, set(user_models), args.rule)
    if "device" not in options and any(registry.info(nm).model for nm in rule["indicators"]):
        from .indicators.models import resolve_device

        options["device"] = resolve_device(args.device)

    import numpy as np
    import pandas as pd

    # Records are labelled by where they are in the file, so a scorer error names "line 7".
    frame = pd.DataFrame(data.samples, columns=["instruction", "input", "output"]).assign(id=data.where)
    t_score = time.perf_counter()
    feats = score_frame(frame, rule["indicators"], models, options, progress=True).reset_index(drop=True)
    t_score = time.perf_counter() - t_score
    pred = predict(rule, feats, key="id")
    chosen = top_n(pd.DataFrame({"row": range(usable)}), pred, count, tiebreak=None)["row"]
    rows = sorted(int(r) for r in chosen)  # the user's own row order
    scores = {}
    if args.with_scores:
        scores = {SCORE_PREFIX + nm: feats[nm].to_numpy()[rows].tolist() for nm in rule["indicators"]}
        scores[PREDICTION_COLUMN] = [float(pred[r]) for r in rows]
    write_selected([data.originals[r] for r in rows], data, out, scores)
    side = write_skipped(data, out)
    rate = usable / t_score if t_score > 0 else float("inf")
    print(f"instructmining select: {data.path} ({data.layout}): {counts}; {usable} scored in {t_score:.1f} s "
          f"({rate:,.0f} rows/s); predicted log loss {_score_range(pred)}, selected "
          f"{_score_range(np.asarray(pred)[rows])}; {len(rows)} of {usable} selected -> {out}"
          + (f"; left-out records listed in {side}" if data.skipped else "")
          + f" ({time.perf_counter() - t0:.1f} s in all)", file=sys.stderr)
    return 0


SELECT_EXAMPLES = """examples:
  # the paper's v1 rule on an Alpaca file, keep the best 1,000 records
  instructmining select --rule paper-v1 --data alpaca_data.json --n 1000 --out best.jsonl
  # a rule fitted by the workflow; keep the best 10 %, with the scores, as parquet
  instructmining select --rule results/analysis/rule.json --data chats.jsonl --n 0.1 --out best.parquet --with-scores
  # ShareGPT / OpenAI messages / prompt-completion files are detected; other columns are mapped
  instructmining select --rule rule.json --data qa.csv --fields instruction=question,output=answer --n 500 --out best.csv
  # a hub dataset (cached or online), skipping and listing records that cannot be used
  instructmining select --rule rule.json --data databricks/databricks-dolly-15k --split train --n 2000 \\
      --out best.jsonl --on-invalid skip
"""


def register(sub: Any) -> None:
    """Add `select-dataset` (workflow) and `select` (any user file)."""
    p = sub.add_parser("select-dataset", help="sel-{rule|random}-{n}-{seed} from the unseen pool")
    p.add_argument("--pool", required=True, help="results/pool/pool.parquet")
    p.add_argument("--method", required=True, choices=["rule", "random"], help="rule: lowest predicted loss; random: the baseline")
    p.add_argument("--n", type=int, required=True, help="samples to select")
    p.add_argument("--seed", type=int, required=True, help="the dataset's seed (random draws only)")
    p.add_argument("--master-seed", type=int, default=0, help="config seed (random draws only)")
    p.add_argument("--rule", nargs="?", help="rule.json path or shipped name (method rule)")
    p.add_argument("--sources", nargs="*", default=None, help="unseen source labels (default: all)")
    p.add_argument("--scores", nargs="*", default=[], help="score files <indicator>.parquet the rule needs")
    p.add_argument("--embeddings", nargs="?", help="pool embeddings .npy (for set-level indicators)")
    p.add_argument("--embedding-ids", nargs="?", help="their ids .parquet (row order of --embeddings)")
    p.add_argument("--out", required=True, help="results/datasets/sel-<method>-<n>-<seed>.parquet")
    p.set_defaults(func=_cmd_select_dataset)
    p = sub.add_parser(
        "select", help="apply a rule to your instruction data and keep the best n records",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SELECT_EXAMPLES,
        description="Score every record of a data file (or hub dataset) with a rule and write the n records with "
        "the lowest predicted log loss, exactly as read (same keys, types, nesting; in file order).\n"
        "Records are read and normalized as the pool is (NFC, trimmed; multi-turn: the last turn, earlier turns "
        "as input); exact duplicates keep the first and are counted. A summary line goes to stderr.")
    p.add_argument("--rule", required=True, help=f"rule.json path or shipped name ({', '.join(shipped_rules())})")
    p.add_argument("--data", required=True, help="a .json (array), .jsonl, .parquet or .csv file, or a hub dataset "
                   "id (owner/name, or hub:ID for anything datasets.load_dataset takes)")
    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="record layout: alpaca (instruction/input/output; Dolly's context/response too), sharegpt "
                   "(conversations), messages (OpenAI chat), prompt_completion; auto: from the first record's keys")
    p.add_argument("--fields", default=None, metavar="ROLE=COLUMN,...",
                   help="map your column names, e.g. instruction=question,input=context,output=answer (alpaca layout)")
    p.add_argument("--split", default="train", help="split of a hub dataset (default: train)")
    p.add_argument("--n", required=True, help="records to keep: a count (1000) or a fraction of the usable "
                   "records (0.1 = 10 %%)")
    p.add_argument("--out", required=True, help="output file, .jsonl, .json, .parquet or .csv (by extension); "
                   "its folder must exist")
    p.add_argument("--models", default="{}",
                   help='JSON {"base"|"reward"|"embedding"|"unieval"|"perplexity": model spec}; overrides the rule\'s own models')
    p.add_argument("--options", default="{}",
                   help='JSON scorer options: batch_size, max_length, knn_model_max_length, device, finetune_view (e.g. \'{"batch_size": 32}\')')
    p.add_argument("--device", default="auto", help="where model scorers run: auto (cuda when a GPU is visible, "
                   "else cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--on-invalid", choices=["error", "skip"], default="error",
                   help="a record that cannot be read or used (malformed line, missing or blank field, wrong type): "
                   "stop with an error naming it (default), or skip it, count it by reason and list it in "
                   "<out>.skipped.jsonl")
    p.add_argument("--on-empty", choices=["error", "skip"], default="error",
                   help="skip only records whose instruction or output is blank (older flag; --on-invalid skip "
                   "covers this)")
    p.add_argument("--with-scores", action="store_true",
                   help=f"add {SCORE_PREFIX}<indicator> per rule indicator and {PREDICTION_COLUMN} to each row "
                   "(an error if a record already has such a field)")
    p.set_defaults(func=_cmd_select)
