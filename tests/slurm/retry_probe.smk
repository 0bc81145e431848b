# Test-only workflow for tests/slurm/test_slurm.py: one rule whose first SLURM attempt is granted
# too little memory, to prove that a failed job is resubmitted with the attempt-scaled request of
# the real rules (scaled_mem_mb from workflow/rules/common.smk) and then succeeds.
# memory_probe.sh asks the controller what SLURM actually granted the job (`sbatch --mem`), not
# what Snakemake meant to ask for. Run from the repository root:
#     snakemake -s tests/slurm/retry_probe.smk -d /tmp/probe --profile slurm --profile slurm-cpu \
#         --configfile config/ci.yaml --config data_root=$PWD/../shared/data


include: "../../workflow/rules/common.smk"


rule memory_probe:
    output:
        granted="results/memory_probe/granted.txt",
    log:
        "logs/memory_probe/memory_probe.log",
    retries: 1
    resources:
        mem_mb=scaled_mem_mb(600),  # attempt 1: 600 MB, attempt 2: 1200 MB, ...
        runtime=scaled_runtime(5),
    params:
        need_mb=1000,
    shell:
        "bash {workflow.basedir}/memory_probe.sh {params.need_mb} {resources.mem_mb} {output.granted} 2> {log}"
