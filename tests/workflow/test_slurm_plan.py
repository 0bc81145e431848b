"""How many SLURM submissions config/paper.yaml makes under `--profile slurm`, computed from the
dry run Snakemake plans with the profile (its group-components) and the workflow's localrules:

    submissions = jobs - localrule jobs - grouped jobs + group jobs

Before issue #12 every job but `all` was an sbatch call (411 of 412). Now the bookkeeping rules
are localrules and dataset_indicators runs as group jobs of up to 40 datasets; this test checks
that each short bookkeeping rule is one or the other, and that the config schema's per-rule
resource keys are exactly the workflow's rules."""

import math
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
import yaml

# Rules that take seconds at any scale (benchmark medians of the demo run 0.9-5.4 s, mostly
# start-up; docs/slurm.md): never one sbatch call per job.
BOOKKEEPING = {"make_mixtures", "make_bins", "write_manifest", "merge_scores", "dataset_indicators",
               "collect_table", "fit_rule", "plot_fit", "univariate", "select_dataset", "plot_selection",
               "make_heldout", "selection_study"}


def localrules(repo) -> set[str]:
    names = set()
    for smk in (repo / "workflow" / "rules").glob("*.smk"):
        for block in re.findall(r"(?m)^localrules:\n((?:    \w+,\n)+)", smk.read_text()):
            names |= set(re.findall(r"\w+", block))
    return names


def parse_dry_run(text: str) -> tuple[Counter, list[Counter]]:
    """(jobs per rule outside groups, [jobs per rule of each group job])."""
    single, groups, current = Counter(), [], None
    for line in text.splitlines():
        if "Group job " in line:
            current = Counter()
            groups.append(current)
        elif m := re.match(r"^(?:local)?rule (\w+):", line):
            single[m.group(1)] += 1
        elif (m := re.match(r"^    (?:local)?rule (\w+):", line)) and current is not None:
            current[m.group(1)] += 1
    return single, groups


def slurm_submissions(single: Counter, groups: list[Counter], local: set[str]) -> int:
    """sbatch calls: every job outside a group that is not local (nor the target rule `all`),
    plus one per group job."""
    return sum(n for rule, n in single.items() if rule not in local | {"all"}) + len(groups)


@pytest.fixture(scope="module")
def paper_plan(repo):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--profile", "slurm", "--configfile",
                           "config/paper.yaml"], cwd=repo, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return parse_dry_run(proc.stdout)


def test_bookkeeping_is_local_or_grouped(repo, paper_plan):
    single, groups = paper_plan
    local = localrules(repo)
    grouped = {rule for g in groups for rule in g}
    assert grouped == {"dataset_indicators"}
    assert BOOKKEEPING == (local - {"fetch"}) | grouped
    assert not local & grouped
    # No rule that loads a model runs on the login node.
    assert not local & {"finetune", "score_pool_model", "embed_pool", "search_size", "build_pool"}


def test_paper_submissions(repo, paper_plan):
    single, groups = paper_plan
    local = localrules(repo)
    jobs = sum(single.values()) + sum(sum(g.values()) for g in groups)
    before = jobs - 1  # every job but `all` (no localrules, no groups)
    after = slurm_submissions(single, groups, local)
    # dataset_indicators: one group job per 40 datasets of a kind (79 mixtures + 20 held-out, 72 bins, 18 subsets).
    prof = yaml.safe_load((repo / "slurm" / "config.yaml").read_text())
    per_job = dict(item.split("=") for item in prof["group-components"])
    members = sum(g["dataset_indicators"] for g in groups)
    assert members == 189 and single["dataset_indicators"] == 0
    assert len(groups) == sum(math.ceil(n / int(per_job[name])) for name, n in
                              (("indicators_mix", 99), ("indicators_bin", 72), ("indicators_sel", 18)))
    print(f"\npaper: {jobs} jobs; SLURM submissions before {before}, after {after} "
          f"({len(groups)} group jobs, {sum(single[r] for r in local)} localrule jobs)")
    assert after <= before // 2, (before, after)


def test_schema_resource_keys_are_the_workflow_rules(repo):
    schema = yaml.safe_load((repo / "src" / "instructmining" / "schemas" / "config.schema.yaml").read_text())
    allowed = set(schema["properties"]["resources"]["properties"]["rules"]["propertyNames"]["enum"])
    names = set()
    for cfg in ("config.yaml", "paper.yaml", "ci.yaml"):
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules", "--configfile", f"config/{cfg}"],
                              cwd=repo, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        names |= set(re.findall(r"(?m)^(\w+)$", proc.stdout))
    assert allowed == names - {"all"}
