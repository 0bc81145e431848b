# Indicators stage: per-sample scores over the whole pool (cached by sample id and scorer
# identity in results/cache/scores/, which is not an output), pool embeddings for knn<i>, and one
# indicator row per dataset.


# Bookkeeping (a few seconds, one thread, no model, small tables; benchmark medians in
# docs/slurm.md): run inside the snakemake process, never as SLURM jobs.
localrules:
    merge_scores,


rule train_reward_model:
    input:
        pool="results/pool/pool.parquet",
        outputs=plan.reward_training_files(config),
    output:
        model=directory(score_plan.reward_model_dir(config)),
    log:
        "logs/train_reward_model/reward.log",
    benchmark:
        "benchmarks/train_reward_model/reward.tsv"
    retries: 2
    conda:
        "../../envs/indicators.yaml"
    threads: job_threads(2)
    resources:
        mem_mb=scaled_mem_mb(4000),
        runtime=scaled_runtime(30),
        gpu=gpus(1),
        attempt=attempt_number,  # the CLI's --attempt (retry guard)
    params:
        training=as_json(config["indicators"]["reward_training"]),
        encoder=as_json(config["indicators"].get("embedding_model")),
        encoder_stamp=spec_stamp(config["indicators"].get("embedding_model")),
        data_root=data_root,
        seed=config["seed"],
    shell:
        "instructmining --attempt {resources.attempt} --retry-log {log}"
        " train-reward --data-root {params.data_root:q} --training {params.training:q}"
        " --pool {input.pool} --encoder {params.encoder:q} --seed {params.seed} --threads {threads}"
        " --out {output.model} 2> {log}"


# Scorer models shipped as GGUF inside a pip package (the demo's SmolLM2-135M-Instruct judge):
# dequantized once into a plain HF folder (indicators.<role>_model.path) that score jobs load.
if score_plan.gguf_models(config):

    rule convert_model:
        output:
            model=directory("results/models/{gguf_model}"),
        log:
            "logs/convert_model/{gguf_model}.log",
        benchmark:
            "benchmarks/convert_model/{gguf_model}.tsv"
        wildcard_constraints:
            gguf_model=score_plan.gguf_model_pattern(config),
        conda:
            "../../envs/finetune.yaml"
        threads: 2
        resources:
            mem_mb=scaled_mem_mb(4000),
            runtime=scaled_runtime(20),
        params:
            model=lambda wildcards: as_json(gguf_model(wildcards)),  # package, subdir, gguf_file
            model_stamp=gguf_model_stamp,  # the package's version: an upgrade reconverts
        shell:
            "instructmining convert-gguf --model {params.model:q} --threads {threads}"
            " --out {output.model} 2> {log}"


rule score_pool:
    input:
        unpack(score_inputs),  # pool (+ the scorer's model folder when the workflow builds it)
    output:
        scores="results/scores/shards/{indicator}/{shard}-of-{num_shards}.parquet",
    log:
        "logs/score_pool/{indicator}.{shard}-of-{num_shards}.log",
    benchmark:
        "benchmarks/score_pool/{indicator}.{shard}-of-{num_shards}.tsv"
    wildcard_constraints:
        indicator=score_plan.scorer_pattern("score_pool"),
        shard=r"\d+",
        num_shards=r"\d+",
    retries: 2
    conda:
        "../../envs/indicators.yaml"
    threads: job_threads(2)
    resources:
        mem_mb=scaled_mem_mb(4000),
        runtime=scaled_runtime(60),
        attempt=attempt_number,  # the CLI's --attempt (retry guard)
    params:
        model=lambda wildcards: as_json(score_job(wildcards).spec),  # null: model-free
        model_stamp=score_model_stamp,  # a package model's version: an upgrade reruns the scores
        role=lambda wildcards: score_job(wildcards).role or "base",
        version=lambda wildcards: score_job(wildcards).version,  # a bump reruns exactly its jobs
        batch_size=config["indicators"]["batch_size"],
        max_length=config["indicators"]["max_length"],
        view=as_json(score_plan.score_view(config)),  # null: the full text (the paper)
    shell:
        "instructmining --attempt {resources.attempt} --retry-log {log}"
        " score {wildcards.indicator} --pool {input.pool} --model {params.model:q}"
        " --model-role {params.role} --expect-version {params.version} --shard {wildcards.shard}"
        " --num-shards {wildcards.num_shards} --batch-size {params.batch_size}"
        " --max-length {params.max_length} --finetune-view {params.view:q} --threads {threads}"
        " --out {output.scores} 2> {log}"


# The neural scorers (reward, perplexity, UniEval): the same job as score_pool, in a rule of its
# own so that these ask for a GPU and lengths, MTLD or KNN-i do not.
use rule score_pool as score_pool_model with:
    log:
        "logs/score_pool_model/{indicator}.{shard}-of-{num_shards}.log",
    benchmark:
        "benchmarks/score_pool_model/{indicator}.{shard}-of-{num_shards}.tsv"
    wildcard_constraints:
        indicator=score_plan.scorer_pattern("score_pool_model"),
        shard=r"\d+",
        num_shards=r"\d+",
    resources:
        mem_mb=scaled_mem_mb(4000),
        runtime=scaled_runtime(60),
        gpu=gpus(1),
        attempt=attempt_number,


# Set-level indicators (KNN-i) as a per-sample score over the whole pool (each sample's value
# within the pool), to bin the pool by: computed from the pool embeddings, no model runs.
rule score_pool_set:
    input:
        pool=score_plan.POOL,
        embeddings=score_plan.EMBEDDINGS,
        embedding_ids=score_plan.EMBEDDING_IDS,
    output:
        scores="results/scores/shards/{indicator}/{shard}-of-{num_shards}.parquet",
    log:
        "logs/score_pool_set/{indicator}.{shard}-of-{num_shards}.log",
    benchmark:
        "benchmarks/score_pool_set/{indicator}.{shard}-of-{num_shards}.tsv"
    wildcard_constraints:
        indicator=score_plan.scorer_pattern("score_pool_set"),
        shard=r"\d+",
        num_shards=r"\d+",
    retries: 1
    conda:
        "../../envs/indicators.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(4000),
        runtime=scaled_runtime(20),
        attempt=attempt_number,  # the CLI's --attempt (retry guard)
    params:
        version=lambda wildcards: score_job(wildcards).version,
    shell:
        "instructmining --attempt {resources.attempt} --retry-log {log}"
        " score {wildcards.indicator} --pool {input.pool} --embeddings {input.embeddings}"
        " --embedding-ids {input.embedding_ids} --expect-version {params.version} --shard {wildcards.shard}"
        " --num-shards {wildcards.num_shards} --out {output.scores} 2> {log}"


rule merge_scores:
    input:
        pool="results/pool/pool.parquet",
        shards=score_shards,
    output:
        scores="results/scores/{indicator}.parquet",
    log:
        "logs/merge_scores/{indicator}.log",
    benchmark:
        "benchmarks/merge_scores/{indicator}.tsv"
    retries: 0
    conda:
        "../../envs/indicators.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(10),
    shell:
        "instructmining merge-scores {wildcards.indicator} --pool {input.pool} --shards {input.shards}"
        " --out {output.scores} 2> {log}"


rule embed_pool:
    input:
        pool="results/pool/pool.parquet",
        model=score_plan.workflow_model_dirs(
            config["indicators"].get("embedding_model")
        ),
    output:
        embeddings="results/embeddings/pool.npy",
        ids="results/embeddings/pool.ids.parquet",
    log:
        "logs/embed_pool/pool.log",
    benchmark:
        "benchmarks/embed_pool/pool.tsv"
    retries: 2
    conda:
        "../../envs/indicators.yaml"
    threads: job_threads(2)
    resources:
        mem_mb=scaled_mem_mb(4000),
        runtime=scaled_runtime(60),
        gpu=gpus(1),
        attempt=attempt_number,  # the CLI's --attempt (retry guard)
    params:
        model=as_json(config["indicators"].get("embedding_model")),
        model_stamp=spec_stamp(config["indicators"].get("embedding_model")),
        batch_size=config["indicators"]["batch_size"],
        max_length=config["indicators"]["knn_model_max_length"],
    shell:
        "instructmining --attempt {resources.attempt} --retry-log {log}"
        " embed --pool {input.pool} --model {params.model:q} --batch-size {params.batch_size}"
        " --max-length {params.max_length} --threads {threads} --out {output.embeddings}"
        " --ids-out {output.ids} 2> {log}"


rule dataset_indicators:
    input:
        unpack(dataset_indicator_inputs),
    output:
        row="results/indicators/{dataset}.parquet",
    log:
        "logs/dataset_indicators/{dataset}.log",
    benchmark:
        "benchmarks/dataset_indicators/{dataset}.tsv"
    retries: 0
    group:
        indicator_group  # ~1 s per dataset: a few SLURM group jobs (profile: group-components)
    conda:
        "../../envs/indicators.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(10),
    params:
        names=as_json(config["indicators"]["names"]),
    shell:
        "instructmining dataset-indicators --data {input.data} --name {wildcards.dataset}"
        " --names {params.names:q} --scores {input.scores} --embeddings {input.embeddings}"
        " --embedding-ids {input.embedding_ids} --out {output.row} 2> {log}"
