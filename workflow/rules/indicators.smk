# Indicators stage: per-sample scores over the whole pool (cached by sample id and scorer
# identity in results/cache/scores/, which is not an output), pool embeddings for knn<i>, and one
# indicator row per dataset.


rule train_reward_model:
    input:
        pool="results/pool/pool.parquet",
        outputs=reward_training_inputs,
    output:
        model=directory(reward_model_dir()),
    log:
        "logs/train_reward_model/reward.log",
    benchmark:
        "benchmarks/train_reward_model/reward.tsv"
    conda:
        "../../envs/indicators.yaml"
    threads: 2
    resources:
        mem_mb=scaled_mem_mb(4000),
        runtime=scaled_runtime(30),
    params:
        training=as_json(config["indicators"]["reward_training"]),
        encoder=as_json(config["indicators"].get("embedding_model")),
        encoder_stamp=model_stamp(config["indicators"].get("embedding_model")),
        data_root=data_root_flag(),
        seed=config["seed"],
    shell:
        "instructmining train-reward --data-root {params.data_root:q} --training {params.training:q}"
        " --pool {input.pool} --encoder {params.encoder:q} --seed {params.seed} --threads {threads}"
        " --out {output.model} 2> {log}"


rule score_pool:
    input:
        unpack(score_inputs),
    output:
        scores="results/scores/shards/{indicator}/{shard}-of-{num_shards}.parquet",
    log:
        "logs/score_pool/{indicator}.{shard}-of-{num_shards}.log",
    benchmark:
        "benchmarks/score_pool/{indicator}.{shard}-of-{num_shards}.tsv"
    wildcard_constraints:
        indicator=scorer_regex(neural=False),
        shard=r"\d+",
        num_shards=r"\d+",
    conda:
        "../../envs/indicators.yaml"
    threads: 2
    resources:
        mem_mb=scaled_mem_mb(4000),
        runtime=scaled_runtime(60),
    params:
        model=score_model_json,
        model_stamp=score_model_stamp,  # a package model's version: an upgrade reruns the scores
        role=score_model_role,
        version=indicator_version,
        embeddings=score_embedding_flag,
        batch_size=config["indicators"]["batch_size"],
        max_length=config["indicators"]["max_length"],
    shell:
        "instructmining score {wildcards.indicator} --pool {input.pool} --model {params.model:q}"
        " --model-role {params.role} --expect-version {params.version} {params.embeddings} --shard {wildcards.shard}"
        " --num-shards {wildcards.num_shards} --batch-size {params.batch_size}"
        " --max-length {params.max_length} --threads {threads} --out {output.scores} 2> {log}"


# The neural scorers (reward, perplexity, UniEval): the same job as score_pool, in a rule of its
# own so that the SLURM profile gives a GPU to these and not to lengths, MTLD or KNN-i.
use rule score_pool as score_pool_model with:
    log:
        "logs/score_pool_model/{indicator}.{shard}-of-{num_shards}.log",
    benchmark:
        "benchmarks/score_pool_model/{indicator}.{shard}-of-{num_shards}.tsv"
    wildcard_constraints:
        indicator=scorer_regex(neural=True),
        shard=r"\d+",
        num_shards=r"\d+",


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
        model=workflow_model_dir(config["indicators"].get("embedding_model")),
    output:
        embeddings="results/embeddings/pool.npy",
        ids="results/embeddings/pool.ids.parquet",
    log:
        "logs/embed_pool/pool.log",
    benchmark:
        "benchmarks/embed_pool/pool.tsv"
    conda:
        "../../envs/indicators.yaml"
    threads: 2
    resources:
        mem_mb=scaled_mem_mb(4000),
        runtime=scaled_runtime(60),
    params:
        model=as_json(config["indicators"].get("embedding_model")),
        model_stamp=model_stamp(config["indicators"].get("embedding_model")),
        batch_size=config["indicators"]["batch_size"],
        max_length=config["indicators"]["knn_model_max_length"],
    shell:
        "instructmining embed --pool {input.pool} --model {params.model:q} --batch-size {params.batch_size}"
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
    conda:
        "../../envs/indicators.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem_mb(2000),
        runtime=scaled_runtime(10),
    params:
        names=as_json(config["indicators"]["names"]),
        embeddings=embedding_flags,
    shell:
        "instructmining dataset-indicators --dataset {input.dataset} --names {params.names:q}"
        " --scores-dir results/scores {params.embeddings} --name {wildcards.dataset}"
        " --out {output.row} 2> {log}"
