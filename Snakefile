# instructmining: InstructMining (arXiv 2307.06290) as a Snakemake experiment DAG.
# Default: the offline demo (`snakemake -c2`); paper scale: `--configfile config/paper.yaml`.
import os

from snakemake.utils import min_version

min_version("9.14.8")

# envs/*.post-deploy.sh install the package from this folder into each conda env (--sdm conda).
# Set here, read by them (the lint's envvars check is about variables a workflow reads).
os.environ.update(INSTRUCTMINING_WORKFLOW_DIR=workflow.basedir)


# The demo config is the default only: a --configfile replaces it instead of being deep-merged
# into it (a merge would leak demo-only keys such as eval.max_instructions into the paper run).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# Dataset names are planned by instructmining.plan; these keep the patterns of different rules apart.
wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    indicator=r"[a-z0-9_]+",
    k=r"\d+",
    n=r"\d+",
    seed=r"\d+",
    method=r"rule|random",


include: "workflow/rules/data.smk"
include: "workflow/rules/indicators.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/fetch.smk"


rule all:
    default_target: True
    input:
        plan.targets(config),
