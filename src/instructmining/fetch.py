"""`instructmining fetch`: download every hub model and dataset a config names into the Hugging Face
cache, so that jobs on compute nodes without internet can run with HF_HUB_OFFLINE=1.

Run it where there is internet (a cluster's login node): `snakemake --profile slurm fetch` (rule
`fetch` is a localrule, so it runs there) or `instructmining fetch --configfile config/paper.yaml`.
Every job afterwards loads the same ids from the cache; the SLURM profile exports HF_HUB_OFFLINE=1
to jobs, so a missing id fails at once instead of after ~27 s of hub retries.

What is downloaded is exactly what the stages load, with the same arguments:
- datasets: `datasets.load_dataset(hub, hub_config, split=split, revision=revision)` (as
  records.read_hub does). This fills the hub file cache and the Arrow cache that an offline
  `load_dataset` reads back.
- models: `huggingface_hub.snapshot_download(hub, revision=revision)` (what `from_pretrained` and
  SentenceTransformer read offline), without weights in formats nothing here loads (TF, Flax,
  ONNX, ...) and without `pytorch_model*.bin` when the repo also has safetensors.

With HF_HUB_OFFLINE=1 set, `fetch` downloads nothing and instead checks that every id is in the
cache, failing with one message that names each missing id and where the config names it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import InstructMiningError

# Weight formats nothing in this package loads: skipping them keeps a 7B snapshot at one copy.
IGNORE_ALWAYS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "onnx/*", "openvino/*", "*.tflite",
                 "coreml/*", "*.gguf", "tf_model*", "flax_model*", "rust_model*"]
# Slots of the config that name a model (dotted key under the root).
MODEL_SLOTS = ["indicators.reward_model", "indicators.embedding_model", "indicators.unieval_model",
               "indicators.perplexity_model", "base_model.model"]


class FetchError(InstructMiningError):
    """A hub id could not be downloaded, or (offline) is not in the cache."""


@dataclass(frozen=True)
class HubItem:
    """One thing to put in the cache: a model snapshot or one split of a hub dataset."""

    kind: str  # "model" | "dataset"
    repo_id: str
    revision: str | None = None
    hub_config: str | None = None  # datasets: the configuration name (load_dataset's `name`)
    split: str | None = None  # datasets: the split the stage loads
    where: str = ""  # the config key(s) naming it, for messages

    def key(self) -> tuple[Any, ...]:
        return (self.kind, self.repo_id, self.revision, self.hub_config, self.split)

    def label(self) -> str:
        extra = [f"config={self.hub_config}"] if self.hub_config else []
        extra += [f"split={self.split}"] if self.split else []
        extra += [f"revision={self.revision}"] if self.revision else []
        return f"{self.kind} {self.repo_id}" + (f" ({', '.join(extra)})" if extra else "")


def _is_hub_model(spec: dict[str, Any] | None) -> bool:
    """Same rule as indicators.models.model_identity: a local path or package wins over `hub`."""
    return bool(spec and spec.get("hub") and not spec.get("path") and not spec.get("package"))


def plan_fetch(config: dict[str, Any]) -> list[HubItem]:
    """Every hub dataset split and model the config names, deduplicated, in config order.
    Standard library only: the Snakefile calls it at parse time."""
    items: dict[tuple[Any, ...], HubItem] = {}

    def add(item: HubItem) -> None:
        old = items.get(item.key())
        items[item.key()] = item if old is None else HubItem(
            **{**asdict(old), "where": f"{old.where}, {item.where}"})

    for i, src in enumerate(config.get("pool", {}).get("sources", [])):
        if src.get("hub"):
            add(HubItem("dataset", src["hub"], src.get("revision"), src.get("hub_config"),
                        src.get("split", "train"), f"pool.sources[{i}]"))
    for group in ("sets", "references"):
        for i, ev in enumerate(config.get("eval", {}).get(group, [])):
            if ev.get("hub"):
                add(HubItem("dataset", ev["hub"], ev.get("revision"), ev.get("hub_config"),
                            ev.get("split", "eval"), f"eval.{group}[{i}]"))
    for slot in MODEL_SLOTS:
        node: Any = config
        for part in slot.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if _is_hub_model(node):
            add(HubItem("model", node["hub"], node.get("revision"), where=slot))
    return list(items.values())


def offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (1/ON/YES/TRUE)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _model_ignore_patterns(item: HubItem) -> list[str]:
    """IGNORE_ALWAYS, plus the .bin weights when the repo also ships safetensors (online only)."""
    from huggingface_hub import HfApi

    files = HfApi().list_repo_files(item.repo_id, revision=item.revision)
    if any(f.endswith(".safetensors") for f in files):
        return IGNORE_ALWAYS + ["pytorch_model*.bin"]
    return IGNORE_ALWAYS


def fetch_model(item: HubItem, is_offline: bool) -> dict[str, Any]:
    """Snapshot one model into the cache (offline: find it there); return its manifest entry."""
    from huggingface_hub import snapshot_download

    if is_offline:
        path = snapshot_download(item.repo_id, revision=item.revision, local_files_only=True)
    else:
        path = snapshot_download(item.repo_id, revision=item.revision,
                                 ignore_patterns=_model_ignore_patterns(item))
    files = sorted(str(p.relative_to(path)) for p in Path(path).rglob("*") if p.is_file())
    if not files:
        raise FetchError(f"model {item.repo_id!r} ({item.where}): cached snapshot {path} is empty")
    # The snapshot folder is named by the commit the revision resolved to: record it.
    return {"path": path, "commit": Path(path).name, "files": len(files)}


def fetch_dataset(item: HubItem, is_offline: bool) -> dict[str, Any]:
    """load_dataset one split (downloading, or offline from the cache); return its manifest entry."""
    from datasets import load_dataset

    ds = load_dataset(item.repo_id, item.hub_config, split=item.split, revision=item.revision)
    return {"rows": ds.num_rows, "columns": list(ds.column_names),
            "cache_files": [f["filename"] for f in ds.cache_files]}


def fetch_all(items: list[HubItem], log: Any = None) -> list[dict[str, Any]]:
    """Fetch every item; raise one FetchError naming every id that failed (with the reason)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    is_offline = offline()
    mode = "offline (HF_HUB_OFFLINE=1): checking the cache" if is_offline else "downloading"
    log(f"fetch: {len(items)} hub item(s), {mode}; cache: {hf_cache_dir()}")
    done, failed = [], []
    for item in items:
        t0 = time.perf_counter()
        try:
            entry = (fetch_model if item.kind == "model" else fetch_dataset)(item, is_offline)
        except Exception as exc:  # hub/datasets raise many types; each must name the id
            failed.append(f"  {item.label()} [{item.where}]: {type(exc).__name__}: {_first_line(exc)}")
            log(f"fetch: FAILED {item.label()} [{item.where}]")
            continue
        log(f"fetch: ok {item.label()} in {time.perf_counter() - t0:.1f}s")
        done.append({**asdict(item), **entry})
    if failed:
        hint = ("HF_HUB_OFFLINE=1 is set, so nothing was downloaded: run `instructmining fetch` (or "
                "`snakemake --profile slurm fetch`) where there is internet (the login node), "
                "with HF_HUB_OFFLINE unset, and use the same HF_HOME on the compute nodes"
                if is_offline else
                "check the id, revision, split and config name on huggingface.co, the network, "
                "and HF_TOKEN for gated repos")
        raise FetchError(f"{len(failed)} of {len(items)} hub item(s) not available:\n"
                         + "\n".join(failed) + f"\n{hint}")
    return done


def hf_cache_dir() -> str:
    """Where the hub cache lives (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    return text.splitlines()[0][:300]


def _items_from_args(args: argparse.Namespace) -> list[HubItem]:
    if args.items is not None:
        try:
            raw = json.loads(args.items)
            return [HubItem(**d) for d in raw]
        except (ValueError, TypeError) as exc:
            raise FetchError(f"--items: not a JSON list of hub items: {exc}") from exc
    from .config import load_config, validate_schema

    config = load_config(args.configfile)
    validate_schema(config)  # fills defaults (split names) exactly as the Snakefile does
    return plan_fetch(config)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .io import provenance, write_json

    items = _items_from_args(args)
    if args.dry_run:
        for item in items:
            print(f"{item.label()}\t[{item.where}]")
        return 0
    entries = fetch_all(items)
    if args.manifest:
        write_json({"items": entries, "offline": offline(), "cache": hf_cache_dir(),
                    "provenance": provenance()}, args.manifest)
    return 0


def register(sub: Any) -> None:
    """Add the `fetch` sub-command."""
    p = sub.add_parser("fetch", help="download every hub model/dataset the config names (login node)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--configfile", help="a config YAML (e.g. config/paper.yaml)")
    src.add_argument("--items", help="the plan as JSON (what rule `fetch` passes)")
    p.add_argument("--manifest", help="write what was fetched (ids, commits, paths) to this JSON")
    p.add_argument("--dry-run", action="store_true", help="print what would be fetched; download nothing")
    p.set_defaults(func=_cmd_fetch)
