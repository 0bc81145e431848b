"""Content fingerprints of models: the one place that says "which model is this, really".

Every cached or resumable artifact that depends on a model (finetune checkpoints, adapters, eval
losses, score-cache entries) is keyed by `model_fingerprint(spec)`, never by the spec alone: the
spec `{"path": "results/models/base"}` survives a retrain of that folder, its content does not.

- local folder (`path`): sha256 over every file's relative name, size and sha256 of its bytes;
- pip package (`package` + `subdir`): the installed distribution's version + the folder's sha256;
- hub id: the commit the offline snapshot resolves to (`snapshots/<commit>` in the HF cache), else
  the configured revision (or "main") when the model is not downloaded. A moving "main" is then only
  as precise as the revision in the config: pin revisions for reproducible keys.

Hashing a 13 GB 7B folder takes about a minute, so each file's digest is memoised in a small JSON
sidecar keyed by (size, mtime_ns) under $INSTRUCTMINING_FINGERPRINT_CACHE (default
~/.cache/instructmining/fingerprints). The sidecar is never written inside the model folder: that
folder is a Snakemake output, and touching it would make every downstream job look outdated. An
edit that keeps a file's size and its nanosecond mtime is not seen (make and Snakemake share that
assumption). Module level imports the standard library only (Snakefile parsing stays fast)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .io import LOG, atomic_path, sha256_file, stable_hash

# Bump when what a fingerprint covers changes: every fingerprint (and every key built on one) changes.
FINGERPRINT_VERSION = 2
# Files that record how a model was made (wall times, held-out accuracy), not what it computes: two
# builds with identical weights differ in them, and a fingerprint that covered them would make every
# fresh run's keys (and the loss JSONs that record them) differ for nothing.
PROVENANCE_FILES = frozenset({"pretrain_metrics.json", "metrics.json", "train_metrics.json"})


def _memo_path(folder: Path) -> Path:
    root = os.environ.get("INSTRUCTMINING_FINGERPRINT_CACHE") or Path.home() / ".cache/instructmining/fingerprints"
    return Path(root) / f"{hashlib.sha256(str(folder).encode()).hexdigest()[:24]}.json"


def _load_memo(path: Path) -> dict[str, list[Any]]:
    try:
        return dict(json.loads(path.read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):  # absent or damaged memo: rehash, never fail
        return {}


def folder_fingerprint(folder: str | os.PathLike[str]) -> str:
    """sha256 over the relative names, sizes and content digests of a folder's files (hidden files
    and folders, e.g. atomic-write temporaries, and PROVENANCE_FILES are skipped). Digests are
    reused from the memo when a file's (size, mtime_ns) is unchanged."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"model folder {root} does not exist")
    memo_file = _memo_path(root)
    memo = _load_memo(memo_file)
    files: dict[str, list[Any]] = {}
    hashed = 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or rel.name in PROVENANCE_FILES or not path.is_file():
            continue
        st = path.stat()
        old = memo.get(str(rel))
        if old and old[0] == st.st_size and old[1] == st.st_mtime_ns:
            files[str(rel)] = old
        else:
            files[str(rel)] = [st.st_size, st.st_mtime_ns, sha256_file(path)]
            hashed += 1
    if hashed or files.keys() != memo.keys():
        LOG.info("fingerprinted %s (%d of %d files hashed)", root, hashed, len(files))
        try:
            with atomic_path(memo_file) as tmp:
                tmp.write_text(json.dumps({"folder": str(root), "files": files}, sort_keys=True))
        except OSError as exc:  # a read-only home only costs a rehash next time
            LOG.debug("fingerprint memo %s not written: %s", memo_file, exc)
    return stable_hash({"version": FINGERPRINT_VERSION,
                        "files": [[name, size, digest] for name, (size, _, digest) in sorted(files.items())]})


@functools.cache
def _package_version(package: str) -> str | None:
    from importlib import metadata

    for dist in metadata.packages_distributions().get(package, []) or [package.replace("_", "-")]:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def spec_stamp(spec: dict[str, Any] | None) -> str:
    """What Snakemake can see of a model at DAG time without hashing anything (a rule param, so a
    change reruns the job): the installed version of a pip-package model. A workflow-built folder
    is a rule input instead (its mtime triggers), and a hub model's revision is in the spec."""
    if not spec or spec.get("path") or not spec.get("package"):
        return ""
    return f"{spec['package']}=={_package_version(spec['package'])}"


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit of the locally cached snapshot of a hub model, without network; None if absent."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True)).name
    except Exception:  # not downloaded (or no huggingface_hub): fall back to the configured revision
        return None


def model_fingerprint(spec: dict[str, Any]) -> dict[str, Any]:
    """{"model", "revision"} (+ "package_version") identifying a model spec by content.

    `model` is the human-readable name (path, package/subdir or hub id); `revision` the folder's
    content sha256 or the hub commit. Raises FileNotFoundError for a local folder that is absent."""
    if spec.get("path") or spec.get("package"):
        from .basemodel import resolve_model

        folder, _ = resolve_model({k: v for k, v in spec.items() if k != "hub"})
        ident: dict[str, Any] = {"model": spec.get("path") or f"{spec['package']}/{spec.get('subdir') or ''}",
                                 "revision": folder_fingerprint(folder)}
        if spec.get("package") and not spec.get("path"):
            ident["package_version"] = _package_version(spec["package"])
        return ident
    revision = spec.get("revision") or "main"
    commit = _hub_commit(spec["hub"], spec.get("revision"))
    return {"model": spec["hub"], "revision": commit or revision}


def fingerprint_id(spec: dict[str, Any]) -> str:
    """A short printable id of a model's content (log lines, checkpoint keys, metadata). A local
    folder's id ignores where it lies (a copied base model keeps its finetunes); a hub model's id
    includes the repo id, since an uncached model falls back to a revision name like "main"."""
    ident = model_fingerprint(spec)
    if spec.get("path") or spec.get("package"):
        ident.pop("model")
    return stable_hash(ident)[:16]
