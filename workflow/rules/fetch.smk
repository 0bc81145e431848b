# Fetch stage: put every hub model and dataset the config names into the Hugging Face cache, for
# clusters whose compute nodes have no internet. Not part of `rule all`: run it once, on the login
# node, before the workflow (`snakemake --profile slurm fetch`); every SLURM job then runs with
# HF_HUB_OFFLINE=1 (set by the profile's `precommand`). See docs/slurm.md.
# A localrule runs in the snakemake process itself, i.e. on the login node, which has internet;
# submitted as a SLURM job it would run offline on a compute node and download nothing.
localrules:
    fetch,


rule fetch:
    output:
        manifest="results/fetch/manifest.json",
    log:
        "logs/fetch/fetch.log",
    benchmark:
        "benchmarks/fetch/fetch.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(4000),
        runtime=scaled_runtime(240),  # a 7B snapshot is ~13 GB
    params:
        hub_items=as_json([item.__dict__ for item in plan_fetch(config)]),  # every hub id + revision/config/split; a config change refetches
    shell:
        "instructmining fetch --items {params.hub_items:q} --manifest {output.manifest} 2> {log}"
