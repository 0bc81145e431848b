"""Render docs/indicators.md from the registry metadata and the indicator modules' docstrings.

Regenerate with `python -m instructmining.indicators.docs > docs/indicators.md`; a test checks
the file is in sync."""

from __future__ import annotations

import importlib
import inspect

from . import registry

HEADER = """# Indicators

Generated from the indicator modules' docstrings by `python -m instructmining.indicators.docs`
(a test keeps this file in sync). `instructmining ls indicators` prints the same table.

Sample-level indicators are scored once over the whole pool (`results/scores/<name>.parquet`,
cached in `results/cache/scores/<scorer_key>.parquet` by sample id and scorer identity: name,
version, model id, revision or folder fingerprint, prompt version, max length, cache version);
a dataset's value is the mean over its samples. Set-level indicators (knn<i>) are computed
within each dataset from the pool embeddings (`results/embeddings/pool.npy`).

No indicator returns a placeholder: a sample that cannot be scored raises `ScorerError` naming
the sample id. Values defined for degenerate inputs: an empty response has output_length 0 and
MTLD 0.0; a response without word tokens ("15", "23.") has MTLD 0.0; perplexity, reward and
UniEval raise on an empty response.

Sign: the expected sign of the correlation with eval loss (- = higher is better data, + = higher
is worse, ? = no prior).
"""


def render() -> str:
    """The Markdown text of docs/indicators.md."""
    infos = registry.all_infos()
    lines = [HEADER, "| name | version | level | sign | model | summary |", "|---|---|---|---|---|---|"]
    for i in infos:
        sign = {-1: "-", 0: "?", 1: "+"}[i.sign]
        lines.append(f"| `{i.name}` | {i.version} | {i.level} | {sign} | {i.model or '-'} | {i.summary} |")
    seen: set[str] = set()
    for i in infos:
        module = i.target.split(":")[0]
        if module in seen:
            continue
        seen.add(module)
        names = ", ".join(f"`{j.name}`" for j in infos if j.target.split(":")[0] == module)
        doc = inspect.cleandoc(importlib.import_module(module).__doc__ or "")
        lines += ["", f"## {names}", "", f"Module `{module}`.", "", doc]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
