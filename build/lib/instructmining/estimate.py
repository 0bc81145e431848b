"""GPU cost of a config before any job runs: `instructmining estimate --configfile config/paper.yaml`.

Tokens come from the pool and the plan, not guesses: the pool's rows (a built pool named with
`--pool`, else read from the config's sources, else from `--pool-config`'s local copies of the
same datasets) encoded exactly as finetune encodes them (prompts.encode_example, truncated at
max_length), times the rows each planned dataset holds (plan.py), times epochs; each finetune
job then scores D_eval once with its model still in memory (no eval job of its own), and loads the
base model once. The tokenizer is the base model's when it is on this machine (its
tokenizer.json, read with `tokenizers`: no torch import); otherwise the count falls back to
characters / CHARS_PER_TOKEN and the output says so. GPU-hours = tokens / (tokens/s) / 3600 at
rates the user gives or the H200 rates measured for issue #15 (RATES)."""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from .errors import InstructMiningError
from .io import LOG

# Fallback when the base tokenizer is not on this machine: an assumption (LLaMA's SentencePiece
# runs at roughly 3.5-4.5 characters per token on English prose), stated in the output.
CHARS_PER_TOKEN = 4.0
# Real tokens/s on one H200, random-init LLaMA-7B shape, batch 8, max_length 1024, LoRA r 8 q/v
# (issue #15, /work/shared/NOTES.md). "project-before" = this project's loop before length-grouped
# batches and without the float32 upcast; "reachable" = plain transformers + peft, dense 8 x 300.
RATES = {
    "train": {("qlora", 8): (1039, 6142), ("qlora", 4): (3556, 12222), ("lora", None): (2969, 13550)},
    "eval": {("qlora", 8): (4612, None), ("qlora", 4): (None, None), ("lora", None): (17962, None)},
}
# Seconds one LLaMA-7B base-model load takes on an H200 (issue #15: 8-bit quantizes on load; bf16
# measured 16-21 s). One load per finetune job: the job scores D_eval itself, so no second load.
LOAD_SECONDS = {("qlora", 8): 43.0, ("qlora", 4): 19.0, ("lora", None): 21.0}


class FileTokenizer:
    """A tokenizer.json read with `tokenizers`, with the call shape encode_example uses."""

    def __init__(self, folder_files: dict[str, Path]) -> None:
        from tokenizers import Tokenizer

        self.tk = Tokenizer.from_file(str(folder_files["tokenizer.json"]))
        cfg: dict[str, Any] = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if folder_files.get(name) and folder_files[name].is_file():
                cfg.update(json.loads(folder_files[name].read_text()))
        self.bos_token_id = self._id(cfg.get("bos_token"))
        self.eos_token_id = self._id(cfg.get("eos_token"))

    def _id(self, token: Any) -> int | None:
        token = token.get("content") if isinstance(token, dict) else token
        return self.tk.token_to_id(token) if token else None

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": self.tk.encode(text, add_special_tokens=add_special_tokens).ids}


def local_tokenizer(spec: dict[str, Any]) -> FileTokenizer | None:
    """The base model's tokenizer if its files are on this machine (folder or hub cache), else None."""
    names = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
    if spec.get("path"):
        files = {n: Path(spec["path"]) / n for n in names}
    elif spec.get("hub"):
        from huggingface_hub import try_to_load_from_cache

        found = {n: try_to_load_from_cache(spec["hub"], n, revision=spec.get("revision")) for n in names}
        files = {n: Path(p) for n, p in found.items() if isinstance(p, str)}
    else:
        return None
    return FileTokenizer(files) if files.get("tokenizer.json") and files["tokenizer.json"].is_file() else None


def pool_rows(config: dict[str, Any], base: Path, pool: Path | None) -> tuple[list[dict[str, str]], str]:
    """The pool's rows (instruction, input, output, source, role) and where they came from."""
    from .data import load_source

    if pool is not None and pool.is_file():
        import pandas as pd

        return pd.read_parquet(pool).to_dict("records"), str(pool)
    root = config.get("data_root")
    root = str((base / root).resolve()) if root else None
    rows: list[dict[str, str]] = []
    for src in config["pool"]["sources"]:
        got = load_source(src, root, config["pool"].get("multiturn", "last_turn"), Counter())
        rows += got[: src.get("max_samples") or len(got)]
    return rows, "the sources of the config (before dedup/eval-leak filtering)"


def encoded_lengths(rows: list[dict[str, Any]], text_key: str, tok: Any, max_length: int,
                    template: str) -> list[int]:
    """Tokens per row as finetune/eval feed them (prompt + response + EOS, truncated)."""
    from .prompts import encode_example, format_prompt

    out = []
    for r in rows:
        prompt = format_prompt(r["instruction"], r.get("input"), template)
        if tok is None:
            out.append(min(max_length, round((len(prompt) + len(str(r[text_key]))) / CHARS_PER_TOKEN) + 2))
        else:
            out.append(len(encode_example(tok, prompt, str(r[text_key]), max_length).input_ids))
    return out


def estimate(config: dict[str, Any], base: Path, pool: Path | None, proxy: dict[str, Any] | None,
             train_tps: float | None, eval_tps: float | None, eval_set: Path | None = None,
             load_seconds: float | None = None) -> str:
    """The report: per rule and in total, tokens and GPU-hours."""
    from . import dataset_names, plan

    ft, ev = config.get("finetune", {}), config.get("eval_loss", {})
    method, bits, epochs = ft.get("method", "qlora"), ft.get("bits", 8), ft.get("epochs", 3)
    template = ft.get("prompt_template", "alpaca")
    tok = local_tokenizer(config["base_model"].get("model") or {})
    lines = [f"tokenizer: {'the base model tokenizer' if tok else f'none on this machine: characters / {CHARS_PER_TOKEN} (an assumption, not a count)'}"]
    try:
        rows, origin = pool_rows(config, base, pool)
    except Exception as exc:  # noqa: BLE001 - offline hub sources: say so, then use the proxy
        if proxy is None:
            raise
        LOG.warning("pool of the config unreadable here (%s); using --pool-config's sources", exc)
        rows, origin = pool_rows(proxy, base, None)
        origin = f"--pool-config's local sources (the config's own are unreadable here: {type(exc).__name__})"
    lines.append(f"pool: {len(rows)} rows from {origin}")
    lens = encoded_lengths(rows, "output", tok, ft.get("max_length", 512), template)
    by_src: dict[tuple[str, str], list[int]] = {}
    for r, n in zip(rows, lens, strict=True):
        by_src.setdefault((r.get("role", "train"), r["source"]), []).append(n)
    # Mixtures draw symmetric random source weights: expected row length = mean of source means.
    train_mean = statistics.mean(statistics.mean(v) for (role, _), v in by_src.items() if role == "train")
    unseen = [n for (role, _), v in by_src.items() if role == "unseen" for n in v]
    unseen_mean = statistics.mean(unseen) if unseen else train_mean
    mx, bins = config.get("mixtures", {}), config.get("bins", {})
    n_train = sum(len(v) for (role, _), v in by_src.items() if role == "train")
    bin_size = bins.get("size") or n_train / bins.get("k", 8)
    rows_of = {"mixture": (mx.get("size", 2000), train_mean), "rep": (mx.get("size", 2000), train_mean),
               "bin": (bin_size, train_mean)}
    datasets = plan.all_datasets(config)
    train_tokens = 0.0
    for name in datasets:
        kind = dataset_names.kind(name)
        if kind == "selection":
            train_tokens += dataset_names.parse_selection(name)[1] * unseen_mean * epochs  # n rows
        else:
            size, mean = rows_of[kind]
            train_tokens += size * mean * epochs
    eval_rows = eval_tokens_per_job(config, base, proxy, tok, ev.get("max_length", 512), template, eval_set)
    eval_tokens = eval_rows * len(datasets)
    key = (method, bits if method == "qlora" else None)
    before, reach = RATES["train"].get(key, (None, None))
    ev_before = RATES["eval"].get(key, (None, None))[0]
    lines.append(f"plan: {len(datasets)} datasets; finetune {method}{f' {bits}-bit' if method == 'qlora' else ''}, "
                 f"{epochs} epochs, max_length {ft.get('max_length', 512)}; mean tokens/row train "
                 f"{train_mean:.0f}, unseen {unseen_mean:.0f}; D_eval {eval_rows:,.0f} tokens scored per dataset")

    def hours(tokens: float, tps: float | None) -> str:
        return f"{tokens / tps / 3600:8.1f} GPU-h at {tps:,.0f} tokens/s" if tps else "  (no rate: give one)"

    lines.append(f"{'rule':<10} {'jobs':>5} {'tokens':>15}  GPU-hours")
    t_rate = train_tps or before
    e_rate = eval_tps or ev_before
    lines.append(f"{'finetune':<10} {len(datasets):>5} {train_tokens:>15,.0f}  {hours(train_tokens, t_rate)}"
                 + ("" if train_tps else " (H200, this project before issue #15)"))
    if not train_tps and reach:
        lines.append(f"{'':<10} {'':>5} {'':>15}  {hours(train_tokens, reach)} (H200, reachable: plain loop)")
    # Scored inside the finetune jobs: 0 jobs of its own.
    lines.append(f"{'eval_loss':<10} {0:>5} {eval_tokens:>15,.0f}  {hours(eval_tokens, e_rate)} (in the finetune jobs)")
    load_s = load_seconds if load_seconds is not None else LOAD_SECONDS.get(key)
    load_h = len(datasets) * load_s / 3600 if load_s else 0.0
    if load_s:
        where = "given" if load_seconds is not None else "H200, 7B, issue #15"
        lines.append(f"{'base_load':<10} {len(datasets):>5} {'-':>15}  {load_h:8.1f} GPU-h at {load_s:.0f} s per "
                     f"load ({where}), one per finetune job")
    if t_rate and e_rate:
        total = train_tokens / t_rate / 3600 + eval_tokens / e_rate / 3600 + load_h
        lines.append(f"{'total':<10} {len(datasets):>5} {train_tokens + eval_tokens:>15,.0f}  {total:8.1f} GPU-h")
    return "\n".join(lines)


def eval_tokens_per_job(config: dict[str, Any], base: Path, proxy: dict[str, Any] | None, tok: Any,
                        max_length: int, template: str, built: Path | None = None) -> float:
    """Tokens scored on D_eval per dataset: a built eval.parquet when one is named (`--eval-set`),
    else D_eval from the config's (or --pool-config's) eval sets, subset as configured."""
    import pandas as pd

    from .evalset import build_eval, subset

    if built is not None:
        df = pd.read_parquet(built)
    else:
        ev = config["eval"]
        for cfg in (config, proxy):
            if cfg is None:
                continue
            root = cfg.get("data_root")
            try:
                df = build_eval(cfg["eval"]["sets"], cfg["eval"].get("references", []),
                                str((base / root).resolve()) if root else None)
                break
            except Exception as exc:  # noqa: BLE001 - offline hub sets: try the proxy
                LOG.warning("eval sets of a config unreadable here: %s", exc)
        else:
            raise RuntimeError("no readable eval sets (give --eval-set results/eval/eval.parquet or --pool-config)")
        df = subset(df, ev.get("max_instructions"), ev.get("max_references"), config.get("seed", 1))
    rows = [{"instruction": r.instruction, "input": r.input, "reference": r.reference} for r in df.itertuples()]
    return float(sum(encoded_lengths(rows, "reference", tok, max_length, template)))


def _cmd(args: argparse.Namespace) -> int:
    from .config import load_config

    config = load_config(args.configfile)
    proxy = load_config(args.pool_config) if args.pool_config else None
    # Built files are used only when named: results/ may hold another config's run, whose pool and
    # D_eval would silently stand in for this config's.
    pool = Path(args.pool) if args.pool else None
    if pool is not None and not pool.is_file():
        raise InstructMiningError(f"--pool {pool}: no such file")
    eval_set = Path(args.eval_set) if args.eval_set else None
    if eval_set is not None and not eval_set.is_file():
        raise InstructMiningError(f"--eval-set {eval_set}: no such file")
    print(estimate(config, Path.cwd(), pool, proxy, args.train_tokens_per_second, args.eval_tokens_per_second,
                   eval_set, args.load_seconds))
    return 0


def register(sub: Any) -> None:
    """Add the `estimate` sub-command."""
    p = sub.add_parser("estimate", help="tokens and GPU-hours per rule of a config, before any job runs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", required=True, help="config YAML (e.g. config/paper.yaml)")
    p.add_argument("--pool", default=None,
                   help="a built pool parquet of this config (default: read the config's sources)")
    p.add_argument("--eval-set", default=None,
                   help="a built eval.parquet of this config (default: build D_eval from the config's eval sets)")
    p.add_argument("--pool-config", default=None,
                   help="config whose local sources stand in when the config's own (hub) data is unreadable")
    p.add_argument("--train-tokens-per-second", type=float, default=None,
                   help="finetune rate (default: the H200 rate measured for the configured method)")
    p.add_argument("--eval-tokens-per-second", type=float, default=None, help="eval-loss rate")
    p.add_argument("--load-seconds", type=float, default=None,
                   help="seconds per base-model load (default: the H200 time measured for the configured method)")
    p.set_defaults(func=_cmd)
