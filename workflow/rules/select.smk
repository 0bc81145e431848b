# Selection stage: rule-guided vs random subsets of the unseen pool, and the subset-size search.


rule select_dataset:
    input:
        unpack(selection_inputs),
    output:
        dataset="results/datasets/sel-{method}-{n}-{seed}.parquet",
    log:
        "logs/select_dataset/sel-{method}-{n}-{seed}.log",
    benchmark:
        "benchmarks/select_dataset/sel-{method}-{n}-{seed}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(20),
    params:
        rule=selection_rule_flag,
        sources=selection_sources_flag(),
        embeddings=selection_embeddings_flag,
        master_seed=config["seed"],
    shell:
        "instructmining select-dataset --pool {input.pool} --method {wildcards.method} --n {wildcards.n}"
        " --seed {wildcards.seed} --master-seed {params.master_seed} {params.rule} {params.sources}"
        " --scores-dir results/scores {params.embeddings} --out {output.dataset} 2> {log}"


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
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(1000),
        runtime=scaled_runtime(10),
    shell:
        "instructmining plot-selection --table {input.runs} --out {output.table} --plot {output.plot}"
        " --html {output.html} 2> {log}"


rule search_size:
    input:
        unpack(search_inputs),
    output:
        search=report(
            "results/analysis/size_search.json",
            caption="../report/size_search.rst",
            category="Selection",
            labels={"result": "size search"},
        ),
    log:
        "logs/search_size/search_size.log",
    benchmark:
        "benchmarks/search_size/search_size.tsv"
    conda:
        "../../envs/search.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(6000),
        runtime=scaled_runtime(
            60 * config["selection"].get("search", {}).get("budget", 8)
        ),
    params:
        rule=selection_rule_flag,
        sources=selection_sources_flag(),
        embeddings=selection_embeddings_flag,
        model=base_model_spec,
        finetune=finetune_config,
        eval_loss=eval_loss_config,
        search=search_flags(),
    shell:
        "instructmining search-size --pool {input.pool} --eval {input.eval} {params.rule} {params.sources}"
        " --scores-dir results/scores {params.embeddings} --model {params.model:q}"
        " --finetune-config {params.finetune:q} --eval-config {params.eval_loss:q} {params.search}"
        " --workdir results/search --threads {threads} --out {output.search} 2> {log}"
