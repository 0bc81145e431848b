# Finetune stage: build the base model once (demo: pretrain a small Llama; or convert a GGUF),
# QLoRA-finetune it on every dataset, and score D_eval under each finetuned model in the same job
# (the model is still in memory: one base-model load per dataset instead of two; issue #15).
# A changed eval_loss: block or D_eval reruns the job, which resumes from the final checkpoint,
# trains 0 steps and only re-evaluates.
# Checkpoints live in results/finetune/{dataset}/checkpoints/, which is not an output: Snakemake
# does not delete it before a rerun, so a killed or timed-out job resumes where it stopped.


if config["base_model"]["source"] != "hub":

    rule prepare_base_model:
        input:
            eval_all="results/eval/eval_all.parquet",  # every eval instruction, not just the subset
            pool="results/pool/pool.parquet",
        output:
            model=directory(plan.base_model_dir(config)),
        log:
            "logs/prepare_base_model/base.log",
        benchmark:
            "benchmarks/prepare_base_model/base.tsv"
        retries: 2
        conda:
            "../../envs/finetune.yaml"
        threads: job_threads(2)
        resources:
            mem_mb=scaled_mem_mb(4000),
            runtime=scaled_runtime(30),
            gpu=gpus(1),
            attempt=attempt_number,  # the CLI's --attempt (retry guard)
        params:
            cfg=as_json(config["base_model"]),  # the base_model: block (source, pretrain settings, gguf file)
            packages=base_model_input_stamp(config["base_model"]),  # corpus/GGUF package versions
            seed=config["seed"],
        shell:
            "instructmining --attempt {resources.attempt} --retry-log {log}"
            " prepare-base-model --base-model {params.cfg:q} --eval {input.eval_all}"
            " --pool {input.pool} --out {output.model} --seed {params.seed} --threads {threads} 2> {log}"


rule finetune:
    input:
        unpack(finetune_inputs),  # data (+ base, when the workflow builds it)
        eval="results/eval/eval.parquet",
    output:
        adapter=directory("results/finetune/{dataset}/adapter"),
        loss="results/loss/{dataset}.json",
    log:
        "logs/finetune/{dataset}.log",
    benchmark:
        "benchmarks/finetune/{dataset}.tsv"
    retries: 2
    conda:
        "../../envs/finetune.yaml"
    threads: job_threads(1)  # the demo's small model is start-up bound: two 1-thread jobs beat one 2-thread job
    resources:
        mem_mb=scaled_mem_mb(6000),
        runtime=scaled_runtime(75),  # training + scoring D_eval (a separate 30-minute eval job before)
        gpu=gpus(1),
        attempt=attempt_number,  # the CLI's --attempt (retry guard)
    params:
        model=as_json(config["base_model"]["model"]),  # where the base model is (path / hub id + revision)
        model_stamp=spec_stamp(config["base_model"]["model"]),  # a package model's version: an upgrade reruns
        cfg=as_json(config["finetune"]),  # the finetune: block (QLoRA, LoRA, optimizer, template, save_steps)
        eval_cfg=as_json(config["eval_loss"]),  # the eval_loss: block (batch size, max length)
        checkpoints=lambda wildcards: f"results/finetune/{wildcards.dataset}/checkpoints",
    shell:
        "instructmining --attempt {resources.attempt} --retry-log {log}"
        " finetune --data {input.data} --model {params.model:q} --config {params.cfg:q}"
        " --name {wildcards.dataset} --checkpoints {params.checkpoints} --out {output.adapter}"
        " --eval {input.eval} --eval-config {params.eval_cfg:q} --loss {output.loss}"
        " --threads {threads} 2> {log}"
