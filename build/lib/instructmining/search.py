"""Subset-size search (the paper's later versions): how many rule-selected samples give the
lowest eval loss? FLAML searches n in [n_min, n_max] on a log scale; each trial takes the top-n
samples of the unseen pool by the rule, finetunes the base model on them and measures the eval
loss through the same code path as every other dataset (finetune.finetune, which scores D_eval with
the trained model still in memory; called in-process, so torch and peft are imported once and the
base model loaded once per trial).

Algorithm: CFO (FLAML's cost-frugal local search, the local half of BlendSearch; needs only
flaml) starting from the cheap end n_min plus three seeded points spread over the range, or
BlendSearch (CFO + a global optuna search; needs `pip install optuna`). Trials are cached under
--workdir keyed by everything that determines their result, so a rerun resumes."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dataset_names
from .errors import InstructMiningError

if TYPE_CHECKING:
    from .evaluate import EvalLossConfig
    from .finetune import FinetuneConfig

LOG = logging.getLogger("instructmining.search")


def start_points(n_min: int, n_max: int) -> list[int]:
    """n_min, the geometric middle and n_max: the search sees both ends before it refines."""
    mid = int(round(math.sqrt(n_min * n_max)))
    return sorted({n_min, min(max(mid, n_min), n_max), n_max})


def run_search(objective: Any, n_min: int, n_max: int, budget: int, seed: int = 1,
               algorithm: str = "cfo") -> dict[str, Any]:
    """Minimize objective(n) -> loss over integers n in [n_min, n_max] with `budget` trials.
    Returns {"trials": [{"n", "loss"}...] in evaluation order, "best": {"n", "loss"}, ...}."""
    import warnings

    if not 1 <= n_min <= n_max:
        raise InstructMiningError(f"selection.search: need 1 <= n_min ({n_min}) <= n_max ({n_max})")
    meta = {"algorithm": algorithm, "n_min": n_min, "n_max": n_max, "budget": budget, "seed": seed}
    if n_min == n_max:  # nothing to search: one trial
        loss = float(objective(n_min))
        return {"trials": [{"n": n_min, "loss": loss}], "best": {"n": n_min, "loss": loss}, **meta}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "flaml.automl is not available": not used here
        from flaml import CFO, BlendSearch, tune
    # lograndint's upper bound is exclusive; sizes spread over orders of magnitude, hence log scale.
    space = {"n": tune.lograndint(n_min, n_max + 1)}
    points = [{"n": n} for n in start_points(n_min, n_max)][:budget]
    kw = {"space": space, "metric": "loss", "mode": "min", "low_cost_partial_config": {"n": n_min},
          "points_to_evaluate": points, "seed": seed}
    if algorithm == "blendsearch":
        try:
            import optuna  # noqa: F401  (BlendSearch's global search)
        except ImportError as exc:
            raise InstructMiningError("--algorithm blendsearch needs optuna (pip install optuna); "
                                      "cfo needs only flaml") from exc
        searcher = BlendSearch(**kw)
    elif algorithm == "cfo":
        searcher = CFO(**kw)
    else:
        raise InstructMiningError(f"unknown search algorithm {algorithm!r} (cfo, blendsearch)")
    trials: list[dict[str, Any]] = []
    seen: dict[int, float] = {}

    def evaluate(cfg: dict[str, Any]) -> dict[str, float]:
        n = int(cfg["n"])
        if n not in seen:  # the searcher may propose a size twice; a finetune is too dear to repeat
            seen[n] = float(objective(n))
            trials.append({"n": n, "loss": seen[n]})
            LOG.info("trial %d: n = %d -> loss %.5f", len(trials), n, seen[n])
        return {"loss": seen[n]}

    tune.run(evaluate, search_alg=searcher, num_samples=budget, verbose=0, use_ray=False)
    best = min(trials, key=lambda t: (t["loss"], t["n"]))
    return {"trials": trials, "best": dict(best), **meta}


def finetune_objective(ranked: Any, workdir: Path, model: dict[str, Any], finetune_cfg: FinetuneConfig,
                       eval_cfg: EvalLossConfig, eval_path: Path, seed: int, threads: int,
                       key: dict[str, Any]) -> Any:
    """objective(n): finetune on the top-n rows of `ranked` and return the eval loss, scored in the
    finetune job (one base-model load per trial). Each trial lives in workdir/<hash of key + n>/
    (dataset, adapter, checkpoints, loss)."""
    from .evaluate import EvalJob
    from .finetune import finetune
    from .io import stable_hash, write_parquet
    from .selection import POOL_COLUMNS
    from .table import read_loss

    def objective(n: int) -> float:
        name = dataset_names.selection("rule", n, seed)  # same name, hence the same finetune seed, as the workflow's
        trial = workdir / stable_hash({**key, "n": n})[:16]
        loss = trial / "loss.json"
        if not loss.exists():
            data = trial / f"{name}.parquet"
            write_parquet(ranked.head(n)[POOL_COLUMNS], data, metadata={"kind": "selection", "seed": str(seed)})
            finetune(data, trial / "adapter", trial / "checkpoints", model, finetune_cfg, name=name,
                     threads=threads, eval=EvalJob(eval_path, loss, eval_cfg))
        return read_loss(loss)

    return objective


def _cmd_search(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import provenance, write_json
    from .selection import load_rule, pool_features, predict, top_n, unseen_pool

    pool = unseen_pool(pd.read_parquet(args.pool), args.sources)
    rule = load_rule(args.rule)
    feats = pool_features(pool["id"].tolist(), rule["indicators"], args.scores, args.embeddings, args.embedding_ids)
    ranked = top_n(pool, predict(rule, feats), len(pool))
    n_max = min(args.n_max or len(pool), len(pool))
    from .evaluate import EvalLossConfig
    from .finetune import FinetuneConfig
    from .fingerprint import fingerprint_id

    # The base model's content, not its spec: a retrained base must not reuse cached trial losses.
    key = {"rule": rule["coefficients"], "pool": sorted(pool["id"]), "model": args.model,
           "model_fingerprint": fingerprint_id(json.loads(args.model)),
           "finetune": args.finetune_config, "eval": args.eval_config, "seed": args.seed}
    objective = finetune_objective(ranked, Path(args.workdir), json.loads(args.model),
                                   FinetuneConfig.from_dict(json.loads(args.finetune_config)),
                                   EvalLossConfig.from_dict(json.loads(args.eval_config)), Path(args.eval),
                                   args.seed, args.threads, key)
    result = run_search(objective, args.n_min, n_max, args.budget, args.seed, args.algorithm)
    result["objective"] = "eval loss (mean token NLL on D_eval) after finetuning on the rule's top-n"
    result["provenance"] = provenance(seed=args.seed, config={
        "rule": args.rule, "n_min": args.n_min, "n_max": args.n_max, "budget": args.budget,
        "algorithm": args.algorithm, "finetune": json.loads(args.finetune_config)})
    write_json(result, args.out)
    if args.html:
        write_search_html(result, args.html)
    return 0


def write_search_html(result: dict[str, Any], out: str) -> None:
    """size_search.json as an HTML page: the trials as a table, then the JSON itself."""
    import pandas as pd

    from .htmlreport import frame_html, json_html, write_page

    best = result.get("best") or {}
    write_page("Subset size search", [
        ("Trials", f"in evaluation order; best n = {best.get('n')} (eval loss {best.get('loss')})",
         frame_html(pd.DataFrame(result.get("trials") or [], columns=["n", "loss"]))),
        ("size_search.json", "", json_html(result))], out)


def register(sub: Any) -> None:
    """Add `search-size`."""
    p = sub.add_parser("search-size", help="FLAML search over the subset size n (finetune + eval loss)")
    p.add_argument("--pool", required=True, help="results/pool/pool.parquet")
    p.add_argument("--rule", required=True, help="rule.json path or shipped name")
    p.add_argument("--sources", nargs="*", default=None, help="unseen source labels (default: all)")
    p.add_argument("--scores", nargs="*", default=[], help="score files <indicator>.parquet the rule needs")
    p.add_argument("--embeddings", nargs="?", help="pool embeddings .npy (for set-level indicators)")
    p.add_argument("--embedding-ids", nargs="?", help="their ids .parquet (row order of --embeddings)")
    p.add_argument("--eval", required=True, help="results/eval/eval.parquet")
    p.add_argument("--model", required=True, help="base model spec as JSON")
    p.add_argument("--finetune-config", required=True, help="the finetune: block as JSON")
    p.add_argument("--eval-config", default="{}", help="the eval_loss: block as JSON")
    p.add_argument("--n-min", type=int, required=True, help="smallest subset size to try")
    p.add_argument("--n-max", type=lambda v: None if v == "none" else int(v), default=None,
                   help="none (default): the unseen pool size")
    p.add_argument("--budget", type=int, required=True, help="finetune + eval trials")
    p.add_argument("--seed", type=int, default=1, help="searcher seed and the trials' finetune seed")
    p.add_argument("--algorithm", choices=["cfo", "blendsearch"], default="blendsearch", help="FLAML search algorithm")
    p.add_argument("--workdir", required=True, help="trial cache (kept across reruns)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    p.add_argument("--out", required=True, help="results/analysis/size_search.json")
    p.add_argument("--html", default=None, help="also write the trials and the JSON as an HTML page "
                   "(for the Snakemake report)")
    p.set_defaults(func=_cmd_search)
