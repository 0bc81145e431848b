""".snakemake-workflow-catalog.yml has the keys the catalog reads (usage: mandatory-flags,
software-stack-deployment, report) and claims only what the repository does."""

import re

import yaml


def test_catalog_settings_match_the_repository(repo):
    usage = yaml.safe_load((repo / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}
    stack = usage["software-stack-deployment"]
    assert set(stack) == {"conda", "apptainer", "apptainer+conda"}
    rules = "".join(p.read_text() for p in (repo / "workflow" / "rules").glob("*.smk"))
    n_rules = len(re.findall(r"(?m)^\s*rule \w+:", rules))
    if stack["conda"]:  # every rule names an env file that exists
        envs = re.findall(r'conda:\n\s+"\.\./\.\./(envs/[\w.-]+\.yaml)"', rules)
        assert len(envs) == n_rules and all((repo / e).is_file() for e in envs)
    if stack["apptainer"] or stack["apptainer+conda"]:
        assert "container:" in (repo / "Snakefile").read_text() + rules
    if usage["report"]:
        assert re.search(r'(?m)^report: "workflow/report/workflow.rst"', (repo / "Snakefile").read_text())
        assert (repo / "workflow" / "report" / "workflow.rst").is_file()
    assert (repo / "config" / "README.md").is_file() and (repo / "config" / "config.yaml").is_file()
