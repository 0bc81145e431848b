# Selection stage: rule-guided vs random subsets of the unseen pool, and the subset-size search.


# Bookkeeping (a few seconds, one thread, no model, small tables; benchmark medians in
# docs/slurm.md): run inside the snakemake process, never as SLURM jobs.
localrules:
    select_dataset,
    plot_selection,
    selection_study,


rule select_dataset:
    input:
        unpack(selection_inputs),
    output:
        dataset="results/datasets/sel-{method}-{n}-{seed}.parquet",
    log:
        "logs/select_dataset/sel-{method}-{n}-{seed}.log",
    benchmark:
        "benchmarks/select_dataset/sel-{method}-{n}-{seed}.tsv"
    retries: 0
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(20),
    params:
        rule=selection_rule,  # rule.json or a shipped name; none for random subsets
        sources=config["selection"].get("pool") or [],  # none: every unseen source
        master_seed=config["seed"],
    shell:
        "instructmining select-dataset --pool {input.pool} --method {wildcards.method} --n {wildcards.n}"
        " --seed {wildcards.seed} --master-seed {params.master_seed} --rule {params.rule}"
        " --sources {params.sources} --scores {input.scores} --embeddings {input.embeddings}"
        " --embedding-ids {input.embedding_ids} --out {output.dataset} 2> {log}"


rule plot_selection:
    input:
        runs="results/analysis/selection_runs.tsv",
    output:
        table="results/analysis/selection.tsv",
        html=report(
            "results/analysis/selection.html",
            caption="../report/selection_table.rst",
            category="Selection",
            labels={"result": "loss per n"},
        ),
        plot="results/analysis/selection.png",
        svg=report(
            "results/analysis/selection.svg",
            caption="../report/selection.rst",
            category="Selection",
            labels={"result": "rule vs random"},
        ),
    log:
        "logs/plot_selection/plot_selection.log",
    benchmark:
        "benchmarks/plot_selection/plot_selection.tsv"
    retries: 0
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(1000),
        runtime=scaled_runtime(10),
    shell:
        "instructmining plot-selection --table {input.runs} --out {output.table} --plot {output.plot}"
        " --html {output.html} 2> {log}"


rule selection_study:
    input:
        runs="results/analysis/selection_runs.tsv",
    output:
        study="results/analysis/selection_study.json",
        html=report(
            "results/analysis/selection_study.html",
            caption="../report/selection_study.rst",
            category="Selection",
            labels={"result": "rule - random, 95% interval"},
        ),
    log:
        "logs/selection_study/selection_study.log",
    benchmark:
        "benchmarks/selection_study/selection_study.tsv"
    retries: 0
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(1000),
        runtime=scaled_runtime(10),
    shell:
        "instructmining selection-study --table {input.runs} --out {output.study}"
        " --html {output.html} 2> {log}"


rule search_size:
    input:
        **plan.search_files(config),
    output:
        search="results/analysis/size_search.json",
        html=report(
            "results/analysis/size_search.html",
            caption="../report/size_search.rst",
            category="Selection",
            labels={"result": "size search"},
        ),
    log:
        "logs/search_size/search_size.log",
    benchmark:
        "benchmarks/search_size/search_size.tsv"
    retries: 1
    conda:
        "../../envs/search.yaml"
    threads: job_threads(1)
    resources:
        mem_mb=scaled_mem_mb(6000),
        runtime=scaled_runtime(
            60 * config["selection"].get("search", {}).get("budget", 8)
        ),
        gpu=gpus(1),
        attempt=attempt_number,  # the CLI's --attempt (retry guard)
    params:
        rule=selection_rule,
        sources=config["selection"].get("pool") or [],
        model=as_json(config["base_model"]["model"]),
        finetune=as_json(config["finetune"]),
        eval_loss=as_json(config["eval_loss"]),
        search=plan.search_settings(config),  # n_min, n_max, budget, algorithm, seed
        workdir="results/search",  # trial cache, kept across reruns (not an output)
    shell:
        "instructmining --attempt {resources.attempt} --retry-log {log}"
        " search-size --pool {input.pool} --eval {input.eval} --rule {params.rule}"
        " --sources {params.sources} --scores {input.scores} --embeddings {input.embeddings}"
        " --embedding-ids {input.embedding_ids} --model {params.model:q}"
        " --finetune-config {params.finetune:q} --eval-config {params.eval_loss:q}"
        " --n-min {params.search[n_min]} --n-max {params.search[n_max]} --budget {params.search[budget]}"
        " --algorithm {params.search[algorithm]} --seed {params.search[seed]}"
        " --workdir {params.workdir} --threads {threads} --out {output.search}"
        " --html {output.html} 2> {log}"
