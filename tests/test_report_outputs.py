"""Report outputs (issue #13): the analysis tables open in the Snakemake report (HTML pages, not
TSV/JSON downloads), figures come as SVG beside PNG with units on their axes, the standardized
coefficients carry 95 % intervals, and the selection plot shows every seed."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from instructmining.cli import main

INLINE = (".html", ".svg", ".png")


def synthetic(n: int, seed: int) -> pd.DataFrame:
    """Mixtures whose log loss falls with reward and rises with output length (plus noise)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"dataset": [f"mix-{i:03d}" for i in range(n)], "kind": "mixture",
                       "reward": rng.normal(0, 1, n), "output_length": rng.uniform(50, 500, n),
                       "mtld": rng.normal(60, 10, n)})
    df["log_loss"] = 0.3 - 0.05 * df["reward"] + 2e-4 * df["output_length"] + rng.normal(0, 0.01, n)
    df["loss"] = np.exp(df["log_loss"])
    return df


def test_analysis_report_entries_open_inline(repo):
    """Every report() of the workflow (tables, manifest, size search included) names a file the report
    shows inline."""
    found = 0
    for smk in sorted((repo / "workflow" / "rules").glob("*.smk")):
        for path in re.findall(r'report\(\s*"([^"]+)"', smk.read_text()):
            found += 1
            assert path.endswith(INLINE), f"{smk.name}: {path} would not open in the report"
    assert found >= 6


def test_table_manifest_and_search_html_pages(tmp_path, monkeypatch):
    """collect-table --html, write-manifest --html and search-size's page hold every row of their TSV/JSON."""
    from instructmining import table as table_mod
    from instructmining.io import write_parquet
    from instructmining.search import write_search_html

    collected = pd.DataFrame({"dataset": ["mix-000", "mix-001"], "kind": "mixture", "loss": [1.25, 1.5],
                              "log_loss": np.log([1.25, 1.5]), "reward": [0.5, float("nan")]})
    monkeypatch.setattr(table_mod, "collect", lambda losses, indicators: collected)
    out, page = tmp_path / "table.tsv", tmp_path / "table.html"
    assert main(["collect-table", "--losses", "l.json", "--indicators", "i.parquet", "--out", str(out),
                 "--html", str(page)]) == 0
    html = page.read_text()
    assert html.startswith("<!doctype html>") and html.count("<tr>") == 3  # header + 2 rows
    assert "<td>mix-000</td>" in html and "<td>mix-001</td>" in html and '<td class="num">1.25</td>' in html
    assert "<td></td>" in html  # the NaN indicator stays empty
    assert len(pd.read_csv(out, sep="\t")) == 2  # the TSV is still written

    files = []
    for name, sources in (("mix-000", ["a", "a", "b"]), ("uni-reward-1", ["b"])):
        files.append(str(tmp_path / f"{name}.parquet"))
        write_parquet(pd.DataFrame({"id": [f"{name}-{i}" for i in range(len(sources))], "source": sources}),
                      files[-1], metadata={"seed": "7"})
    page = tmp_path / "manifest.html"
    assert main(["write-manifest", "--out", str(tmp_path / "manifest.tsv"), "--html", str(page), *files]) == 0
    html = page.read_text()
    assert html.count("<tr>") == 3 and "<th>n_a</th>" in html and "<th>n_b</th>" in html
    assert "<td>mix-000</td>" in html and "<td>uni-reward-1</td>" in html
    assert len(pd.read_csv(tmp_path / "manifest.tsv", sep="\t")) == 2

    result = {"trials": [{"n": 10, "loss": 1.5}, {"n": 40, "loss": 1.25}], "best": {"n": 40, "loss": 1.25},
              "algorithm": "cfo"}
    page = tmp_path / "size_search.html"
    write_search_html(result, str(page))
    html = page.read_text()
    assert html.count("<table>") == 1 and html.count("<tr>") == 3
    assert '<td class="num">10</td>' in html and '<td class="num">40</td>' in html
    assert "&quot;best&quot;" in html  # the JSON itself, escaped inside <pre>


def test_fit_rule_html_page_and_standardized_coefficients(tmp_path):
    table = tmp_path / "table.tsv"
    data = synthetic(n=30, seed=4)
    data.to_csv(table, sep="\t", index=False)
    assert main(["fit-rule", "--table", str(table), "--out", str(tmp_path / "rule.json"), "--coefficients",
                 str(tmp_path / "c.tsv"), "--steps", str(tmp_path / "s.tsv"), "--html", str(tmp_path / "rule.html")]) == 0
    rule = json.loads((tmp_path / "rule.json").read_text())
    mixtures = data
    assert rule["indicators"]
    for name in rule["indicators"]:
        k = mixtures[name].std(ddof=1) / mixtures["log_loss"].std(ddof=1)
        std = rule["standardized"][name]
        assert std["coefficient"] == pytest.approx(rule["coefficients"][name] * k)
        assert std["conf_int_95"] == pytest.approx([v * k for v in rule["conf_int_95"][name]])
    page = (tmp_path / "rule.html").read_text()
    assert page.startswith("<!doctype html>") and page.count("<table>") == 4  # fit, coef, standardized, steps
    assert f"log L = {rule['coefficients']['intercept']:.4g}" in page
    for term in ["intercept", *rule["indicators"]]:
        assert f"<td>{term}</td>" in page
    assert "&quot;coefficients&quot;" in page  # rule.json itself, escaped inside <pre>

    png, coef = tmp_path / "fit.png", tmp_path / "coef.png"
    args = ["plot-fit", "--rule", str(tmp_path / "rule.json"), "--table", str(table), "--out", str(png),
            "--coefficients", str(coef)]
    assert main(args) == 0
    svgs = [(tmp_path / f).read_bytes() for f in ("fit.svg", "coef.svg")]
    assert png.read_bytes()[:4] == b"\x89PNG" and coef.read_bytes()[:4] == b"\x89PNG"
    assert all(b"<svg" in s for s in svgs)
    assert png.with_suffix(".svg").read_bytes() == svgs[0]
    assert main(args) == 0  # no dates or random ids: the same data gives the same SVG bytes
    assert [(tmp_path / f).read_bytes() for f in ("fit.svg", "coef.svg")] == svgs


def test_selection_plot_shows_every_seed_and_a_readable_table(tmp_path, monkeypatch):
    runs = pd.DataFrame({"dataset": ["sel-rule-20-1", "sel-rule-20-2", "sel-random-20-2", "sel-random-20-1",
                                     "sel-rule-40-1", "sel-random-40-1"], "loss": [1.0, 1.2, 1.5, 1.3, 0.9, 1.4]})
    runs["log_loss"] = np.log(runs["loss"])
    runs.to_csv(tmp_path / "runs.tsv", sep="\t", index=False)
    drawn = {}
    import matplotlib.axes

    real = matplotlib.axes.Axes.scatter

    def spy(self, x, y, *a, **kw):
        drawn[kw.get("label")] = sorted(float(v) for v in y)
        return real(self, x, y, *a, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", spy)
    assert main(["plot-selection", "--table", str(tmp_path / "runs.tsv"), "--out", str(tmp_path / "s.tsv"),
                 "--plot", str(tmp_path / "s.png"), "--html", str(tmp_path / "s.html")]) == 0
    assert drawn == {"rule (each seed)": [0.9, 1.0, 1.2], "random (each seed)": [1.3, 1.4, 1.5]}
    assert (tmp_path / "s.svg").read_bytes().lstrip().startswith(b"<?xml")
    page = (tmp_path / "s.html").read_text()
    assert "<table>" in page and "1.3;1.5" in page
