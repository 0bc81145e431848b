# Test-only workflow for tests/workflow/test_retry_guard.py: the real resource helpers of
# workflow/rules/common.smk (attempt scaling, caps, GPU declaration, retry guard) around the real
# CLI, with failures forced. Each attempt appends its resources and its log to attempts/<rule>.txt.


include: "../../workflow/rules/common.smk"


rule all_probes:
    input:
        "out/deterministic.txt",
        "out/transient.txt",


# validate-config of a config with an unknown key: an InstructMiningError (exit 2), the same on
# every attempt: a retry cannot fix it.
rule deterministic:
    output:
        "out/deterministic.txt",
    log:
        "logs/deterministic/deterministic.log",
    retries: 2
    resources:
        mem_mb=scaled_mem_mb(600),
        runtime=scaled_runtime(50),
        gpu=gpus(1),
        attempt=attempt_number,
    shell:
        "mkdir -p attempts; echo 'attempt={resources.attempt} mem_mb={resources.mem_mb} runtime={resources.runtime} gpu={resources.gpu}'"
        " >> attempts/deterministic.txt;"
        " printf 'not_a_key: 1\\n' > bad.yaml;"
        " rc=0; instructmining --attempt {resources.attempt} --retry-log {log} validate-config bad.yaml"
        " > {output} 2> {log} || rc=$?; cat {log} >> attempts/deterministic.txt; exit $rc"


# A failure that is not an InstructMiningError (the config file is missing: a traceback, exit 1)
# on attempts 1 and 2, as an OOM kill or a lost node would be; attempt 3 finds the file.
rule transient:
    output:
        "out/transient.txt",
    log:
        "logs/transient/transient.log",
    retries: 2
    resources:
        mem_mb=scaled_mem_mb(600),
        runtime=scaled_runtime(50),
        gpu=gpus(1),
        attempt=attempt_number,
    params:
        good=lambda wildcards: f"{workflow.basedir}/../../config/ci.yaml",
    shell:
        "mkdir -p attempts; echo 'attempt={resources.attempt} mem_mb={resources.mem_mb} runtime={resources.runtime} gpu={resources.gpu}'"
        " >> attempts/transient.txt;"
        " if [ {resources.attempt} -ge 3 ]; then cp {params.good} transient.yaml; fi;"
        " instructmining --attempt {resources.attempt} --retry-log {log} validate-config transient.yaml"
        " --base {workflow.basedir}/../.. > {output} 2> {log}"
