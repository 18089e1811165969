"""CrowS-Pairs for causal LMs: the scoring rule on hand-made pairs, batched decisions against the
one-sentence-a-pass reference (bias-bench's generative procedure), the CLI outputs, and the pairs
loaded from the CSV and from a Hub repo in the Hub copy's layout."""

import json
import math
from pathlib import Path

import pytest

from vdata_hub.cli import main
from vdata_hub.errors import EvalError
from vdata_hub.eval.crows_pairs_data import BIAS_TYPES, load_crows_pairs
from vdata_hub.eval.crows_pairs_run import evaluate_pairs, pair_scores


def row(more, less, direction="stereo", bias_type="gender"):
    return {"index": 0, "bias_type": bias_type, "stereo_antistereo": direction, "sent_more_score": more,
            "sent_less_score": less}


def test_sent_more_above_sent_less_counts_whatever_the_direction_and_ties_stay_in_the_denominator():
    rows = [row(-1.0, -2.0), row(-3.0, -2.0), row(-2.0, -2.0),                 # stereo: pro, anti, neutral
            row(-1.0, -2.0, "antistereo"), row(-1.5, -1.5, "antistereo")]     # antistereo: pro, neutral
    scores = pair_scores(rows)
    assert scores == {"metric": 40.0, "stereotype": 50.0, "anti_stereotype": 100.0, "neutral": 40.0, "count": 5}
    assert pair_scores([row(-1.0, -1.0)])["stereotype"] is None  # no decided stereo pair: no score
    results = evaluate_pairs(rows + [row(-1.0, -2.0, bias_type="age")])
    assert list(results["by_bias_type"]) == ["gender", "age"]  # in CrowS-Pairs' order, present types only
    assert results["by_bias_type"]["age"]["metric"] == 100.0 and results["overall"]["count"] == 6


def test_pairs_from_the_csv_filtered_and_cut(crows_pairs_csv):
    pairs = load_crows_pairs(str(crows_pairs_csv))
    assert len(pairs) == 150 and [p.index for p in pairs[:3]] == [0, 1, 2]
    assert {p.bias_type for p in pairs} == set(BIAS_TYPES) and {p.direction for p in pairs} == {"stereo", "antistereo"}
    assert pairs[2].direction == "antistereo" and pairs[2].sent_more.startswith("His mind wondered")
    age = load_crows_pairs(str(crows_pairs_csv), max_examples=2, bias_type="age")
    assert len(age) == 2 and all(p.bias_type == "age" for p in age)
    with pytest.raises(EvalError, match="not a CrowS-Pairs bias type"):
        load_crows_pairs(str(crows_pairs_csv), bias_type="race")


def test_batched_decisions_equal_one_sentence_a_pass(tiny_gpt2, crows_pairs_csv):
    """The batched prefix-sharing scorer against bias-bench's generative procedure (one forward pass
    per sentence, softmax, 2 ** mean log2 p): same scores to 1e-5, same decision for every pair."""
    from vdata_hub.eval.crows_pairs_run import score_pairs
    from vdata_hub.eval.likelihood import official_intrasentence_scores
    from vdata_hub.eval.models import load_model

    pairs = load_crows_pairs(str(crows_pairs_csv), max_examples=60)
    batched, _ = score_pairs(str(tiny_gpt2), pairs, batch_size=16, device="cpu")
    lm = load_model(str(tiny_gpt2), "cpu")
    reference = official_intrasentence_scores(lm.model, lm.tokenizer, [s for p in pairs for s in (p.sent_more,
                                                                                               p.sent_less)])
    one_a_pass = [(math.log(reference[2 * k]), math.log(reference[2 * k + 1])) for k in range(len(pairs))]
    for (more, less), (ref_more, ref_less) in zip(batched, one_a_pass):
        assert more == pytest.approx(ref_more, abs=1e-5) and less == pytest.approx(ref_less, abs=1e-5)
        assert (more > less, more == less) == (ref_more > ref_less, ref_more == ref_less)
    assert len({more > less for more, less in batched}) == 2  # both decisions occur


@pytest.fixture(scope="module")
def crows_run(tiny_gpt2, crows_pairs_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("crows") / "results"
    main(["eval", "crows-pairs", "--model", str(tiny_gpt2), "--data", str(crows_pairs_csv), "--max-examples", "80",
          "--batch-size", "16", "--device", "cpu", "--output", str(out), "--quiet"])
    return out


def test_cli_writes_results_scores_table_and_chart(crows_run):
    results = json.loads((crows_run / "results.json").read_text())
    assert set(results) == {"overall", "by_bias_type", "confidence_intervals"}
    keys = {"metric", "stereotype", "anti_stereotype", "neutral", "count"}
    assert set(results["overall"]) == keys and results["overall"]["count"] == 80
    assert all(set(block) == keys for block in results["by_bias_type"].values())
    assert sum(block["count"] for block in results["by_bias_type"].values()) == 80
    intervals = results["confidence_intervals"]
    low, high = intervals["overall"]["metric"]
    assert low <= results["overall"]["metric"] <= high and high - low > 1
    assert set(intervals["by_bias_type"]) == set(results["by_bias_type"])
    rows = [json.loads(line) for line in (crows_run / "scores.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(80))
    assert set(rows[0]) == {"index", "bias_type", "stereo_antistereo", "sent_more_score", "sent_less_score"}
    assert evaluate_pairs(rows) == {k: v for k, v in results.items() if k != "confidence_intervals"}
    table = (crows_run / "results.md").read_text()
    assert "| **overall** | 80 |" in table and f"[{low:.1f}, {high:.1f}]" in table
    assert (crows_run / "crows_pairs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = json.loads((crows_run / "run.json").read_text())
    assert run["start_token"] == "<|endoftext|>" and run["data"].endswith("crows_pairs_subset.csv")


def test_crows_pairs_from_a_hub_repo_matches_the_csv(hub, crows_pairs_csv):
    """The Hub copy's layout: `id`, class labels for the direction and the bias type, split `test`."""
    import uuid

    import datasets
    from huggingface_hub import HfApi

    repo = f"alice/crows-{uuid.uuid4().hex[:8]}"
    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    api.create_repo(repo, repo_type="dataset")
    pairs = load_crows_pairs(str(crows_pairs_csv), max_examples=20)
    features = datasets.Features({
        "id": datasets.Value("int32"), "sent_more": datasets.Value("string"), "sent_less": datasets.Value("string"),
        "stereo_antistereo": datasets.ClassLabel(names=["stereo", "antistereo"]),
        "bias_type": datasets.ClassLabel(names=list(BIAS_TYPES))})
    rows = [{"id": p.index, "sent_more": p.sent_more, "sent_less": p.sent_less,
             "stereo_antistereo": ["stereo", "antistereo"].index(p.direction),
             "bias_type": BIAS_TYPES.index(p.bias_type)} for p in pairs]
    path = Path(hub.data_dir) / "crows.parquet"
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
    api.upload_file(path_or_fileobj=str(path), path_in_repo="data/test-00000-of-00001.parquet", repo_id=repo,
                    repo_type="dataset")
    assert load_crows_pairs(repo) == pairs
    with pytest.raises(EvalError, match="--data FILE"):
        load_crows_pairs("alice/no-such-crows-pairs")
