"""Config validation: the JSON schema (types, unknown keys, defaults) plus the checks a schema
cannot express (cross-references between keys, sizes the sources cannot hold, indicator names).
Called by the Snakefile before any job runs and by `instructmining validate-config`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
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
    """Upper bound of a local file's records (cheap; None if unknown)."""
    if not path.is_file():
        return None
    suffix = path.suffix.lower()
    if fmt == "jsonl" or (fmt in ("auto", "prompt_completion", "oasst_transcript") and suffix == ".jsonl"):
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    if suffix == ".json" and fmt != "sharegpt":
        try:
            data = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError):
            return None  # the data stage reports the exact record
        return len(data) if isinstance(data, list) else None
    return None


def source_capacity(src: dict[str, Any], base: Path, data_root: str | None) -> int | None:
    """The most samples a source can contribute (None if unknown without loading it)."""
    cap = src.get("max_samples")
    count = None
    if src.get("path") and not src.get("hub") and not src.get("package") and data_root:
        root = Path(data_root)
        root = root if root.is_absolute() else base / root
        path = Path(src["path"])
        count = _count_records(path if path.is_absolute() else root / path, src.get("format", "auto"))
        rows = (src.get("filters") or {}).get("rows")
        if count is not None and rows:
            count = max(0, min(count, rows[1]) - rows[0])
    if cap is not None and count is not None:
        return min(cap, count)
    return cap if cap is not None else count


def _needs_data_root(config: dict[str, Any]) -> list[str]:
    keys = []
    for i, src in enumerate(config["pool"]["sources"]):
        if src.get("path") and not src.get("hub") and not src.get("package"):
            keys.append(f"pool.sources[{i}].path")
    for group in ("sets", "references"):
        for i, item in enumerate(config["eval"].get(group, [])):
            if item.get("path") and not item.get("hub"):
                keys.append(f"eval.{group}[{i}].path")
    if (config["indicators"].get("reward_training") or {}).get("enabled"):
        keys.append("indicators.reward_training.outputs")
    return keys


def check_config(config: dict[str, Any], base: Path = REPO) -> dict[str, Any]:
    """Validate `config` in place (schema + semantics); return it. Raises ConfigError."""
    validate_schema(config)
    sources = config["pool"]["sources"]
    labels = [s["label"] for s in sources]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            raise ConfigError(f"pool.sources[{i}].label", f"duplicate source label {label!r}")
    for i, src in enumerate(sources):
        if bool(src.get("path")) == bool(src.get("hub")):
            raise ConfigError(f"pool.sources[{i}]", "give exactly one of `path` (local file) or `hub` (hub id)")

    local_keys = _needs_data_root(config)
    if local_keys:
        root = config.get("data_root")
        hint = (
            "set data_root to the folder holding the shipped data (e.g. `data_root: ../shared/data`, "
            "or `--config data_root=/path/to/data`), or run the hub configuration "
            "`--configfile config/paper.yaml`, which loads every dataset from the Hugging Face hub"
        )
        if not root:
            raise ConfigError("data_root", f"is not set but {local_keys[0]} names a local file; {hint}")
        resolved = Path(root) if Path(root).is_absolute() else base / root
        if not resolved.is_dir():
            raise ConfigError("data_root", f"folder {resolved} does not exist; {hint}")

    train = [s["label"] for s in sources if s["role"] == "train"]
    unseen = [s["label"] for s in sources if s["role"] == "unseen"]
    mix = config.setdefault("mixtures", {})
    mix_sources = mix.get("sources") or train
    for j, label in enumerate(mix_sources):
        if label not in train:
            raise ConfigError(f"mixtures.sources[{j}]", f"{label!r} is not a train source (train: {train})")
    if mix.get("n", 0) > 0 and not mix_sources:
        raise ConfigError("mixtures.sources", "no train source to mix")
    caps = [source_capacity(s, base, config.get("data_root")) for s in sources if s["label"] in mix_sources]
    if mix.get("n", 0) > 0 and all(c is not None for c in caps) and sum(caps) < mix["size"]:
        raise ConfigError(
            "mixtures.size",
            f"{mix['size']} is larger than the {sum(caps)} samples the mixture sources can hold "
            f"({dict(zip(mix_sources, caps, strict=False))}); lower mixtures.size or add data",
        )

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
        "Generated from `workflow/schemas/config.schema.yaml` by `instructmining config-docs`; do not edit.",
        "`[]` marks a list item. Files: `config.yaml` (offline demo, default), `paper.yaml` (paper scale,",
        "hub data), `ci.yaml` (smallest end-to-end run). Runtime settings (threads, memory, GPUs, partition)",
        "are not config: they live in rule `resources:` and in the SLURM profile (`slurm/`).",
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
