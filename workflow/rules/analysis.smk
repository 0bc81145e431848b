# Analysis stage: the table of mixtures, the rule (stepwise OLS), the univariate study, the plots.


# Bookkeeping (a few seconds, one thread, no model, small tables; benchmark medians in
# docs/slurm.md): run inside the snakemake process, never as SLURM jobs.
localrules:
    collect_table,
    fit_rule,
    plot_fit,
    univariate,


rule collect_table:
    input:
        losses=group_losses,
        indicators=group_indicators,
    output:
        table="results/analysis/{group}.tsv",
        html=report(
            "results/analysis/{group}.html",
            caption="../report/table.rst",
            category="Data",
            labels={"table": "{group}"},
        ),
    log:
        "logs/collect_table/{group}.log",
    benchmark:
        "benchmarks/collect_table/{group}.tsv"
    wildcard_constraints:
        group="table|heldout|bins|selection_runs",
    retries: 0
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(1000),
        runtime=scaled_runtime(10),
    shell:
        "instructmining collect-table --losses {input.losses} --indicators {input.indicators}"
        " --out {output.table} --html {output.html} 2> {log}"


rule validate_indicators:
    input:
        **plan.validity_files(config),  # pool, eval_all, ladder files, scorer model folders
    output:
        table=plan.VALIDITY,
        answers="results/analysis/indicator_validity_scores.parquet",
        html=report(
            "results/analysis/indicator_validity.html",
            caption="../report/validity.rst",
            category="Regression",
            labels={"result": "indicator validity"},
        ),
    log:
        "logs/validate_indicators/validate_indicators.log",
    benchmark:
        "benchmarks/validate_indicators/validate_indicators.tsv"
    retries: 2
    conda:
        "../../envs/indicators.yaml"
    threads: 2
    resources:
        mem_mb=scaled_mem_mb(4000),
        runtime=scaled_runtime(60),
        gpu=gpus(1),  # the neural scorers
        attempt=attempt_number,  # the CLI's --attempt (retry guard)
    params:
        data_root=data_root,
        outputs=as_json(plan.validity_outputs(config)),
        contrasts=as_json(config["validity"]["contrasts"]),
        split=as_json(plan.validity_split(config)),
        names=as_json(config["indicators"]["names"]),
        models=as_json(plan.validity_models(config)),
        stamps=[spec_stamp(s) for s in plan.validity_models(config).values()],
        versions=[
            score_plan.score_job(config, n).version
            for n in config["indicators"]["names"]
        ],
        options=as_json(plan.validity_options(config)),
        max_prompts=config["validity"]["max_prompts"],  # None: every usable prompt
        bootstrap=config["validity"]["bootstrap"],
        seed=config["seed"],
    shell:
        "instructmining --attempt {resources.attempt} --retry-log {log}"
        " validate-indicators --pool {input.pool} --eval-all {input.eval_all}"
        " --data-root {params.data_root:q} --outputs {params.outputs:q} --contrasts {params.contrasts:q}"
        " --split {params.split:q}"
        " --names {params.names:q} --models {params.models:q} --options {params.options:q}"
        " --max-prompts {params.max_prompts} --bootstrap {params.bootstrap} --seed {params.seed}"
        " --threads {threads} --out {output.table} --answers-out {output.answers} --html {output.html} 2> {log}"


rule fit_rule:
    input:
        **plan.fit_rule_files(config),  # table, + validity table when required
    output:
        rule="results/analysis/rule.json",
        coefficients="results/analysis/coefficients.tsv",
        steps="results/analysis/stepwise.tsv",
        html=report(
            "results/analysis/rule.html",
            caption="../report/rule.rst",
            category="Regression",
            labels={"result": "rule, coefficients, stepwise path"},
        ),
    log:
        "logs/fit_rule/fit_rule.log",
    benchmark:
        "benchmarks/fit_rule/fit_rule.tsv"
    retries: 0
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(20),
    params:
        criterion=config["analysis"]["criterion"],
        p_enter=config["analysis"]["p_enter"],
        p_remove=config["analysis"]["p_remove"],
        candidates=plan.quality_rule_candidates(config),
        models=as_json(score_plan.quality_rule_models(config)),  # reused by `instructmining select`
        options=as_json(score_plan.quality_rule_options(config)),
    shell:
        "instructmining fit-rule --table {input.table} --validity {input.validity} --criterion {params.criterion}"
        " --p-enter {params.p_enter} --p-remove {params.p_remove} --candidates {params.candidates}"
        " --models {params.models:q} --options {params.options:q}"
        " --out {output.rule} --coefficients {output.coefficients} --steps {output.steps}"
        " --html {output.html} 2> {log}"


rule validate_rule:
    input:
        unpack(validation_inputs),
    output:
        validation="results/analysis/validation.json",
        html=report(
            "results/analysis/validation.html",
            caption="../report/validation.rst",
            category="Regression",
            labels={"result": "validation"},
        ),
    log:
        "logs/validate_rule/validate_rule.log",
    benchmark:
        "benchmarks/validate_rule/validate_rule.tsv"
    retries: 0
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(30),
    params:
        bootstrap=config["analysis"]["bootstrap"],
        seed=config["seed"],
    shell:
        "instructmining validate-rule --rule {input.rule} --table {input.table} --heldout {input.heldout}"
        " --bootstrap {params.bootstrap} --seed {params.seed} --out {output.validation}"
        " --html {output.html} 2> {log}"


rule plot_fit:
    input:
        rule="results/analysis/rule.json",
        table="results/analysis/table.tsv",
    output:
        plot="results/analysis/fit.png",
        svg=report(
            "results/analysis/fit.svg",
            caption="../report/fit.rst",
            category="Regression",
            labels={"result": "fit"},
        ),
        coefficients="results/analysis/coefficients.png",
        coefficients_svg=report(
            "results/analysis/coefficients.svg",
            caption="../report/coefficients.rst",
            category="Regression",
            labels={"result": "standardized coefficients"},
        ),
    log:
        "logs/plot_fit/plot_fit.log",
    benchmark:
        "benchmarks/plot_fit/plot_fit.tsv"
    retries: 0
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(1000),
        runtime=scaled_runtime(10),
    shell:
        "instructmining plot-fit --rule {input.rule} --table {input.table} --out {output.plot}"
        " --coefficients {output.coefficients} 2> {log}"


rule univariate:
    input:
        table="results/analysis/table.tsv",
        bins="results/analysis/bins.tsv",
    output:
        table="results/analysis/univariate.tsv",
        html=report(
            "results/analysis/univariate.html",
            caption="../report/univariate_table.rst",
            category="Univariate",
            labels={"result": "correlations"},
        ),
        plot="results/analysis/univariate.png",
        svg=report(
            "results/analysis/univariate.svg",
            caption="../report/univariate.rst",
            category="Univariate",
            labels={"result": "panels"},
        ),
    log:
        "logs/univariate/univariate.log",
    benchmark:
        "benchmarks/univariate/univariate.tsv"
    retries: 0
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(1000),
        runtime=scaled_runtime(10),
    params:
        indicators=config["bins"]["indicators"],
    shell:
        "instructmining univariate --table {input.table} --bins {input.bins} --indicators {params.indicators}"
        " --out {output.table} --plot {output.plot} --html {output.html} 2> {log}"
