"""Config validation: the JSON schema (types, unknown keys, defaults) plus the checks a schema
cannot express (cross-references between keys, sizes the sources cannot hold, indicator names).
Called by the Snakefile before any job runs and by `instructmining validate-config`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .model_spec import installed_package_dir

REPO = Path(__file__).resolve().parents[2]
# Package data (pyproject [tool.setuptools.package-data]): an installed, non-editable package finds
# it too. The Snakefile validates through check_config, so this is the only copy.
SCHEMA = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"
SHIPPED_RULES = Path(__file__).resolve().parent / "quality_rules"


def _key(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _fill_defaults(validator_cls: Any) -> Any:
    """A validator that also writes schema defaults into the instance (as Snakemake does)."""
    from jsonschema import validators

    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = json.loads(json.dumps(sub["default"]))
        yield from validate_props(validator, properties, instance, schema)

    return validators.extend(validator_cls, {"properties": set_defaults})


def validate_schema(config: dict[str, Any], schema_path: Path = SCHEMA) -> None:
    """Validate against the JSON schema, filling defaults; raise ConfigError naming the key."""
    import yaml
    from jsonschema import Draft202012Validator

    schema = yaml.safe_load(schema_path.read_text())
    validator = _fill_defaults(Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = _key(err.absolute_path)
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            key = f"{key}.{extra[0]}" if key != "<root>" else extra[0]
            raise ConfigError(key, f"unknown key (allowed here: {', '.join(sorted(err.schema['properties']))})")
        raise ConfigError(key, err.message)


def _count_records(path: Path, fmt: str) -> int | None:
    """Upper bound of a local file's records (cheap; None if unknown). Decodes the file too, so a
    non-UTF-8 (e.g. Latin-1) file stops here with a DataError naming the file and line."""
    from .records import decode_utf8

    if not path.is_file():
        return None
    suffix = path.suffix.lower()
    if fmt == "jsonl" or (fmt in ("auto", "prompt_completion", "oasst_transcript") and suffix == ".jsonl"):
        count = 0
        with path.open("rb") as fh:
            for n, line in enumerate(fh, start=1):
                count += bool(decode_utf8(line, path, n).strip())
        return count
    if suffix == ".json" and fmt != "sharegpt":
        text = decode_utf8(path.read_bytes(), path)
        try:
            data = json.loads(text)
        except ValueError:
            return None  # the data stage reports the exact record
        return len(data) if isinstance(data, list) else None
    return None


def resolve_data_root(data_root: str | None, base: Path) -> Path | None:
    """data_root as an absolute folder: a relative one is relative to `base`, the workflow's folder
    (the repository), never to the working directory, so `snakemake --directory elsewhere` reads
    the same data. The one place that resolves it (common.smk stores the result in the config)."""
    if not data_root:
        return None
    root = Path(data_root)
    return root if root.is_absolute() else base / root


def _local_file(rel: str, root: Path | None) -> Path:
    path = Path(rel)
    return path if path.is_absolute() or root is None else root / path


def source_capacity(src: dict[str, Any], base: Path, data_root: str | None) -> int | None:
    """The most samples a source can contribute: records of its local file within filters.rows,
    capped by max_samples. An upper bound (equals filters and empty records may drop more); None if
    unknown without loading it (hub sources; package and parquet files without max_samples)."""
    cap = src.get("max_samples")
    count = None
    if src.get("path") and not src.get("hub") and not src.get("package") and data_root:
        path = _local_file(src["path"], resolve_data_root(data_root, base))
        count = _count_records(path, src.get("format", "auto"))
        rows = (src.get("filters") or {}).get("rows")
        if count is not None and rows:
            count = max(0, min(count, rows[1]) - rows[0])
    if cap is not None and count is not None:
        return min(cap, count)
    return cap if cap is not None else count


def _capacity(caps: dict[str, int | None], labels: list[str]) -> tuple[int | None, dict[str, int | None]]:
    """Summed capacity of the sources `labels` (None if any is unknown) and the per-source values."""
    some = {label: caps[label] for label in labels}
    known = all(c is not None for c in some.values())
    return (sum(c for c in some.values() if c is not None) if known else None), some


def _local_files(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(config key, path) of every local data file the config names (relative to data_root)."""
    files = []
    for i, src in enumerate(config["pool"]["sources"]):
        if src.get("path") and not src.get("hub") and not src.get("package"):
            files.append((f"pool.sources[{i}].path", src["path"]))
    for group in ("sets", "references"):
        for i, item in enumerate(config["eval"].get(group, [])):
            for field in ("path", "answers"):
                if item.get(field) and not item.get("hub"):
                    files.append((f"eval.{group}[{i}].{field}", item[field]))
    training = config["indicators"].get("reward_training") or {}
    if training.get("enabled"):
        flat = [f for entry in training.get("outputs", []) for f in ([entry] if isinstance(entry, str) else entry)]
        files += [(f"indicators.reward_training.outputs[{j}]", f) for j, f in enumerate(flat)]
    ladder = (config.get("validity") or {}).get("outputs") or []
    flat = [f for entry in ladder for f in ([entry] if isinstance(entry, str) else entry)]
    files += [(f"validity.outputs[{j}]", f) for j, f in enumerate(flat)]
    for j, contrast in enumerate((config.get("validity") or {}).get("contrasts") or []):
        files += [(f"validity.contrasts[{j}].{side}", contrast[side]) for side in ("better", "worse")]
    return files


def _check_files(config: dict[str, Any], base: Path) -> None:
    """data_root is set and exists when a local file is named; every named file exists."""
    local = _local_files(config)
    root = resolve_data_root(config.get("data_root"), base)
    if local:
        hint = (
            "set data_root to the folder holding the shipped data (e.g. `data_root: ../shared/data`, "
            "or `--config data_root=/path/to/data`), or run the hub configuration "
            "`--configfile config/paper.yaml`, which loads every dataset from the Hugging Face hub"
        )
        if root is None:
            raise ConfigError("data_root", f"is not set but {local[0][0]} names a local file; {hint}")
        if not root.is_dir():
            raise ConfigError("data_root", f"folder {root} does not exist; {hint}")
    for key, rel in local:
        if not _local_file(rel, root).is_file():
            raise ConfigError(key, f"file {_local_file(rel, root)} does not exist (data_root: {root}); "
                                   "fix the path or data_root")
    for i, src in enumerate(config["pool"]["sources"]):
        if src.get("package") and src.get("path"):
            found = installed_package_dir(src["package"])
            if found is None:
                raise ConfigError(f"pool.sources[{i}].package", f"pip package {src['package']!r} is not installed; "
                                                                "pip install it or drop the source")
            if not (found / src["path"]).is_file():
                raise ConfigError(f"pool.sources[{i}].path", f"{found / src['path']} is not a file of package "
                                                             f"{src['package']!r}; fix the path")


def _check_ranges(config: dict[str, Any]) -> None:
    """Values the schema allows but the pipeline cannot use."""
    from .regression import MIN_DATASETS

    n = config["mixtures"]["n"]
    if n < MIN_DATASETS:
        raise ConfigError("mixtures.n", f"{n} mixture(s) are too few: fit_rule's stepwise regression needs at "
                                        f"least {MIN_DATASETS} datasets (one indicator + intercept needs "
                                        f"n > 2); set mixtures.n >= {MIN_DATASETS} (the paper: 78)")
    for i, src in enumerate(config["pool"]["sources"]):
        rows = (src.get("filters") or {}).get("rows")
        if rows and rows[0] >= rows[1]:
            raise ConfigError(f"pool.sources[{i}].filters.rows", f"{rows} keeps no record: it is [start, stop) "
                                                                 f"with start < stop, e.g. [{rows[1]}, {rows[0]}]")
    search = config["selection"].get("search") or {}
    if search.get("enabled") and search.get("n_max") and search["n_max"] < search["n_min"]:
        raise ConfigError("selection.search.n_max", f"{search['n_max']} is below n_min {search['n_min']}")


def _check_sizes(config: dict[str, Any], base: Path, mix_sources: list[str], train: list[str],
                 unseen: list[str]) -> None:
    """Sizes the sources cannot hold (local files only: hub sources are not counted offline, so
    their sizes are checked by the stage that loads them)."""
    every = {s["label"]: source_capacity(s, base, config.get("data_root")) for s in config["pool"]["sources"]}
    mix = config["mixtures"]
    total, caps = _capacity(every, mix_sources)
    if total is not None and total < mix["size"]:
        raise ConfigError("mixtures.size", f"{mix['size']} is larger than the {total} samples the mixture sources "
                                           f"can hold ({caps}); lower mixtures.size or add data")
    for label, cap in caps.items():
        if cap == 0:
            raise ConfigError("pool.sources", f"source {label!r} holds no record (check its filters.rows)")
    bins = config["bins"]
    total, caps = _capacity(every, train)
    if bins.get("indicators") and total is not None:
        per_bin = total // bins["k"]
        batch = config["finetune"]["batch_size"] * config["finetune"]["grad_accum"]
        need, what = (bins["size"], "bins.size") if bins.get("size") else (batch, "one finetune batch "
                                                                           "(finetune.batch_size x grad_accum)")
        if per_bin < need:
            raise ConfigError("bins.k", f"K = {bins['k']} bins of the {total} train samples ({caps}) hold "
                                        f"{per_bin} each, fewer than {what} = {need}; lower bins.k to at most "
                                        f"{max(total // need, 1)} or add data")
    sel = config["selection"]
    if sel.get("n"):
        pool = sel.get("pool") or unseen
        total, caps = _capacity(every, pool)
        for j, n in enumerate(sel["n"]):
            if total is not None and n > total:
                raise ConfigError(f"selection.n[{j}]", f"{n} is larger than the unseen pool ({total} samples after "
                                                       f"filters and max_samples: {caps}); lower it or add "
                                                       "unseen data")


def check_config(config: dict[str, Any], base: Path = REPO) -> dict[str, Any]:
    """Validate `config` in place (schema + semantics); return it. Raises ConfigError (DataError for
    a data file that is not UTF-8). Cheap checks first, then those that read files."""
    validate_schema(config)
    sources = config["pool"]["sources"]
    labels = [s["label"] for s in sources]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            raise ConfigError(f"pool.sources[{i}].label", f"duplicate source label {label!r}")
    for i, src in enumerate(sources):
        if bool(src.get("path")) == bool(src.get("hub")):
            raise ConfigError(f"pool.sources[{i}]", "give exactly one of `path` (local file) or `hub` (hub id)")
    _check_ranges(config)

    train = [s["label"] for s in sources if s["role"] == "train"]
    unseen = [s["label"] for s in sources if s["role"] == "unseen"]
    mix = config["mixtures"]
    mix_sources = mix.get("sources") or train
    for j, label in enumerate(mix_sources):
        if label not in train:
            raise ConfigError(f"mixtures.sources[{j}]", f"{label!r} is not a train source (train: {train})")
    if not mix_sources:
        raise ConfigError("mixtures.sources", "no train source to mix")

    names = config["indicators"]["names"]
    from .errors import InstructMiningError
    from .indicators import validate_names

    for j in range(len(names)):
        try:
            validate_names(names[: j + 1])
        except InstructMiningError as exc:
            raise ConfigError(f"indicators.names[{j}]", str(exc)) from None
    for key, listed in (("bins.indicators", config.get("bins", {}).get("indicators", [])),
                        ("analysis.candidates", (config.get("analysis") or {}).get("candidates") or [])):
        for j, name in enumerate(listed):
            if name not in names:
                raise ConfigError(f"{key}[{j}]", f"{name!r} is not in indicators.names {names}")

    from .plan import validity_outputs

    ladder = validity_outputs(config)
    if (config.get("analysis") or {}).get("require_valid_indicators", True) and not ladder:
        raise ConfigError("analysis.require_valid_indicators", "is on but no validity ladder is configured: set "
                          "validity.outputs (answer sets best first, e.g. the AlpacaEval outputs in the shipped data) "
                          "or set analysis.require_valid_indicators: false")
    if ladder and len(ladder) < 2:
        raise ConfigError("validity.outputs", "needs at least two rank groups (best first)")
    if mix["design"] == "spanning":
        from .design import design_indicators

        if not design_indicators(config):
            raise ConfigError("mixtures.design", "spanning needs a sample-level indicator among the rule's "
                                                 f"candidates {names} (knn<i> has no per-sample score)")
        if mix["candidates"] < mix["n"]:
            raise ConfigError("mixtures.candidates", f"{mix['candidates']} candidates cannot yield "
                                                     f"mixtures.n = {mix['n']} mixtures")

    sel = config.get("selection", {})
    if sel.get("n"):
        pool = sel.get("pool") or unseen
        if not pool:
            raise ConfigError("selection.pool", "selection.n is set but no source has role: unseen")
        for j, label in enumerate(pool):
            if label not in unseen:
                raise ConfigError(f"selection.pool[{j}]", f"{label!r} is not an unseen source ({unseen})")
        rule = sel.get("rule", "fitted")
        if rule != "fitted" and not (SHIPPED_RULES / f"{rule}.json").is_file():
            shipped = sorted(p.stem for p in SHIPPED_RULES.glob("*.json"))
            raise ConfigError("selection.rule", f"{rule!r} is neither 'fitted' nor a shipped rule {shipped}")
    for i, item in enumerate(config["eval"]["sets"]):
        if item["format"] == "vicuna" and not item.get("answers") and not config["eval"].get("references"):
            raise ConfigError(f"eval.sets[{i}].answers", "vicuna questions need reference answers")

    _check_files(config, base)
    _check_sizes(config, base, mix_sources, train, unseen)
    from .architectures import check_target_modules

    check_target_modules(config, base)
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file (clear error on a YAML syntax error)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("<root>", f"{path}: expected a mapping of keys")
    return data


def schema_rows(schema: dict[str, Any] | None = None, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every key of the schema, depth first."""
    import yaml

    if schema is None:
        schema = yaml.safe_load(SCHEMA.read_text())
    defs = schema.get("definitions", {}) if not prefix else {}
    rows = []

    def walk(node: dict[str, Any], key: str) -> None:
        if "$ref" in node:
            node = defs[node["$ref"].split("/")[-1]]
        typ = node.get("type", "")
        typ = "/".join(typ) if isinstance(typ, list) else typ
        default = json.dumps(node["default"]) if "default" in node else "required"
        if key:
            rows.append((key, typ, default, " ".join(str(node.get("description", "")).split())))
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{key}.{name}" if key else name)
        items = node.get("items")
        if isinstance(items, dict) and ("properties" in items or "$ref" in items):
            walk(items, f"{key}[]")

    walk(schema, prefix)
    return rows


def config_docs() -> str:
    """config/README.md: one row per key, generated from the schema (a test keeps them equal)."""
    lines = [
        "# Configuration keys",
        "",
        "Generated from `src/instructmining/schemas/config.schema.yaml` by `instructmining config-docs`; do not edit.",
        "`[]` marks a list item. Files: `config.yaml` (offline demo, default), `paper.yaml` (paper scale,",
        "hub data), `ci.yaml` (smallest end-to-end run). Job sizes (threads, memory, runtime, GPUs) live in the",
        "rules; `resources:` scales them to a larger experiment and caps retries. How to ask the cluster",
        "(partition, account, GPU flags) is not config: it lives in the SLURM profile (`slurm/`, docs/slurm.md).",
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
    ]
    for key, typ, default, desc in schema_rows():
        lines.append(f"| `{key}` | {typ} | `{default}` | {desc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _cmd_docs(args: argparse.Namespace) -> int:
    print(config_docs(), end="")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    check_config(config, base=Path(args.base))
    print(f"{args.config}: ok")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate-config", help="validate a config file (schema + cross-key checks)")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--base", default=".", help="folder that relative paths (data_root) are relative to")
    p.set_defaults(func=_cmd_validate)
    p = sub.add_parser("config-docs", help="print config/README.md (one row per schema key)")
    p.set_defaults(func=_cmd_docs)
