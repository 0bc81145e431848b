# Data stage: D_eval, the pool, and the datasets (mixtures, bins) as {dataset} wildcards.


# Bookkeeping (a few seconds, one thread, no model, small tables; benchmark medians in
# docs/slurm.md): run inside the snakemake process, never as SLURM jobs.
localrules:
    make_mixtures,
    make_heldout,
    make_bins,
    write_manifest,


rule build_eval:
    input:
        files=plan.eval_files(config),
    output:
        eval="results/eval/eval.parquet",
        eval_all="results/eval/eval_all.parquet",
    log:
        "logs/build_eval/build_eval.log",
    benchmark:
        "benchmarks/build_eval/build_eval.tsv"
    retries: 1
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(20),
        attempt=attempt_number,  # the CLI's --attempt (retry guard)
    params:
        eval_config=as_json(config["eval"]),
        data_root=data_root,
        seed=config["seed"],
    shell:
        "instructmining --attempt {resources.attempt} --retry-log {log}"
        " build-eval --eval-config {params.eval_config:q} --data-root {params.data_root:q}"
        " --seed {params.seed} --out {output.eval} --out-all {output.eval_all} 2> {log}"


rule build_pool:
    input:
        files=plan.pool_files(config),
        eval_all="results/eval/eval_all.parquet",
    output:
        pool="results/pool/pool.parquet",
        stats="results/pool/stats.json",
    log:
        "logs/build_pool/build_pool.log",
    benchmark:
        "benchmarks/build_pool/build_pool.tsv"
    retries: 1
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(4000),
        runtime=scaled_runtime(60),
        attempt=attempt_number,  # the CLI's --attempt (retry guard)
    params:
        sources=as_json(config["pool"]["sources"]),
        data_root=data_root,
        multiturn=config["pool"]["multiturn"],
        seed=config["seed"],
    shell:
        "instructmining --attempt {resources.attempt} --retry-log {log}"
        " build-pool --sources {params.sources:q} --data-root {params.data_root:q}"
        " --eval {input.eval_all} --multiturn {params.multiturn} --seed {params.seed}"
        " --out {output.pool} --stats {output.stats} 2> {log}"


rule make_mixtures:
    input:
        pool="results/pool/pool.parquet",
        scores=design.design_inputs(config),  # spanning: the per-sample scores; random: none
    output:
        datasets=expand(
            "results/datasets/{dataset}.parquet", dataset=MIXTURES + REPEATS
        ),
        manifest="results/datasets/mixtures.tsv",
        design=design.design_outputs(config),  # spanning: design.json; random: none
    log:
        "logs/make_mixtures/make_mixtures.log",
    benchmark:
        "benchmarks/make_mixtures/make_mixtures.tsv"
    retries: 0
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(20),
    params:
        sources=as_json(config["mixtures"]["sources"]),
        n=config["mixtures"]["n"],
        size=config["mixtures"]["size"],
        seed=config["seed"],
        shortfall=config["mixtures"]["shortfall"],
        repeats=as_json(config["mixtures"]["repeats"]),
        design=design_options,  # --design random, or spanning with its indicators and settings
    shell:
        "instructmining make-mixtures --pool {input.pool} --sources {params.sources:q} --n {params.n}"
        " --size {params.size} --seed {params.seed} --shortfall {params.shortfall}"
        " --repeats {params.repeats:q} {params.design} --scores {input.scores}"
        " --design-out {output.design} --out {output.datasets} --manifest {output.manifest} 2> {log}"


rule make_heldout:
    input:
        pool="results/pool/pool.parquet",
    output:
        datasets=expand("results/datasets/{dataset}.parquet", dataset=HELDOUT),
        manifest="results/datasets/heldout.tsv",
    log:
        "logs/make_heldout/make_heldout.log",
    benchmark:
        "benchmarks/make_heldout/make_heldout.tsv"
    retries: 0
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(20),
    params:
        sources=as_json(config["mixtures"]["sources"]),  # drawn like the paper's random mixtures
        n=config["mixtures"]["heldout"],
        size=config["mixtures"]["size"],
        seed=config["seed"],  # their own stream is derived from it
        shortfall=config["mixtures"]["shortfall"],
    shell:
        "instructmining make-heldout --pool {input.pool} --sources {params.sources:q} --n {params.n}"
        " --size {params.size} --seed {params.seed} --shortfall {params.shortfall}"
        " --out {output.datasets} --manifest {output.manifest} 2> {log}"


rule make_bins:
    input:
        pool="results/pool/pool.parquet",
        scores="results/scores/{indicator}.parquet",
    output:
        datasets=expand(
            "results/datasets/uni-{{indicator}}-{k}.parquet",
            k=range(config["bins"]["k"]),
        ),
        manifest="results/datasets/bins-{indicator}.tsv",
    log:
        "logs/make_bins/{indicator}.log",
    benchmark:
        "benchmarks/make_bins/{indicator}.tsv"
    retries: 0
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(20),
    params:
        k=config["bins"]["k"],
        size=config["bins"]["size"] or "none",
        seed=config["seed"],
    shell:
        "instructmining make-bins --pool {input.pool} --scores {input.scores}"
        " --indicator {wildcards.indicator} --k {params.k} --size {params.size} --seed {params.seed}"
        " --out {output.datasets} --manifest {output.manifest} 2> {log}"


rule write_manifest:
    input:
        datasets=expand("results/datasets/{dataset}.parquet", dataset=DATASETS),
    output:
        manifest="results/datasets/manifest.tsv",
        html=report(
            "results/datasets/manifest.html",
            caption="../report/manifest.rst",
            category="Data",
        ),
    log:
        "logs/write_manifest/write_manifest.log",
    benchmark:
        "benchmarks/write_manifest/write_manifest.tsv"
    retries: 0
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(10),
    shell:
        "instructmining write-manifest --out {output.manifest} --html {output.html}"
        " {input.datasets} 2> {log}"
