# instructmining: InstructMining (arXiv 2307.06290) as a Snakemake experiment DAG.
# Default: the offline demo (`snakemake -c2`); paper scale: `--configfile config/paper.yaml`.
from snakemake.utils import min_version

min_version("9.14.8")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/indicators.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/fetch.smk"


rule all:
    input:
        get_final_output(),
    default_target: True
