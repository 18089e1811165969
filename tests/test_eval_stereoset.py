"""StereoSet evaluator: the official scoring rules on hand-built examples, batched scores against
the one-sentence-at-a-time official procedure, the CLI outputs, the predictions round trip,
the `evaluate` module and loading StereoSet from a Hub repo."""

import json
import math
from pathlib import Path

import pytest

from vdata_hub.cli import main
from vdata_hub.errors import EvalError
from vdata_hub.eval.scoring import decide, evaluate_results
from vdata_hub.eval.stereoset_data import Example, Sentence, load_stereoset, references

EVAL_DIR = Path(__file__).resolve().parents[1] / "eval"


def example(eid, task, target, domain, pro, anti, unrelated):
    """An example whose three sentences score pro / anti / unrelated (ids derive from eid)."""
    sentences = (Sentence(f"{eid}-s", "", "stereotype"), Sentence(f"{eid}-a", "", "anti-stereotype"),
                 Sentence(f"{eid}-u", "", "unrelated"))
    scores = {f"{eid}-s": pro, f"{eid}-a": anti, f"{eid}-u": unrelated}
    return Example(eid, task, target, domain, "", sentences), scores


def build(*specs):
    examples, scores = {}, {}
    for spec in specs:
        ex, sc = example(*spec)
        examples.setdefault(ex.task, []).append(ex)
        scores.update(sc)
    return examples, scores


def test_ties_count_as_anti_stereotype_and_language_modelling_is_strict():
    ex, scores = example("e", "intrasentence", "t", "gender", pro=0.5, anti=0.5, unrelated=0.5)
    assert decide(ex, scores) == {"pro": 0, "anti": 1, "related": 0}
    ex, scores = example("e", "intrasentence", "t", "gender", pro=0.6, anti=0.5, unrelated=0.5)
    assert decide(ex, scores) == {"pro": 1, "anti": 0, "related": 1}
    ex, scores = example("e", "intrasentence", "t", "gender", pro=0.4, anti=0.5, unrelated=0.1)
    assert decide(ex, scores) == {"pro": 0, "anti": 1, "related": 2}


def test_scores_are_averaged_per_term_and_the_global_score_pools_tasks_per_term():
    examples, scores = build(
        ("a1", "intrasentence", "nurse", "gender", 0.9, 0.5, 0.1),   # pro, 2 related
        ("a2", "intrasentence", "nurse", "gender", 0.5, 0.5, 0.5),   # tie: anti, 0 related
        ("b1", "intrasentence", "Ghana", "race", 0.2, 0.3, 0.1),     # anti, 2 related
        ("b2", "intersentence", "Ghana", "race", 0.3, 0.2, 0.1),     # pro, 2 related
    )
    results = evaluate_results(examples, scores)
    intra = results["intrasentence"]
    # per term: nurse SS 50 LMS 50; Ghana SS 0 LMS 100 -> averages 25 and 75 (pooled would be 33.3 / 66.7)
    assert intra["overall"]["SS Score"] == pytest.approx(25.0)
    assert intra["overall"]["LM Score"] == pytest.approx(75.0)
    assert intra["overall"]["ICAT Score"] == pytest.approx(75.0 * 25.0 / 50.0)
    assert intra["overall"]["Count"] == 3
    assert intra["gender"] == {"Count": 2, "LM Score": 50.0, "SS Score": 50.0, "ICAT Score": 50.0}
    assert intra["race"]["SS Score"] == 0.0 and intra["race"]["ICAT Score"] == 0.0
    assert intra["religion"] == {"Count": 0, "LM Score": None, "SS Score": None, "ICAT Score": None}
    assert results["intersentence"]["overall"]["SS Score"] == 100.0
    # global: Ghana pools its intra and inter examples (SS 50, LMS 100); nurse SS 50, LMS 50
    assert results["overall"]["SS Score"] == pytest.approx(50.0)
    assert results["overall"]["LM Score"] == pytest.approx(75.0)
    assert results["overall"]["ICAT Score"] == pytest.approx(75.0)
    assert results["overall"]["Count"] == 4


def test_missing_scores_are_an_error():
    examples, scores = build(("a1", "intrasentence", "nurse", "gender", 0.9, 0.5, 0.1))
    del scores["a1-u"]
    with pytest.raises(EvalError, match="1 StereoSet sentences have no score"):
        evaluate_results(examples, scores)


def test_batched_scores_equal_one_sentence_at_a_time(tiny_gpt2, stereoset_dev):
    from vdata_hub.eval.likelihood import intersentence_logprobs, intrasentence_logprobs, official_intrasentence_scores
    from vdata_hub.eval.models import load_model

    lm = load_model(str(tiny_gpt2), "cpu")
    data = load_stereoset(str(stereoset_dev), max_examples=6)
    sentences = [s.text for e in data["intrasentence"] for s in e.sentences]
    batched = intrasentence_logprobs(lm.model, lm.tokenizer, sentences, batch_size=5)
    official = official_intrasentence_scores(lm.model, lm.tokenizer, sentences)
    for logprobs, score in zip(batched, official):
        assert sum(logprobs) / len(logprobs) == pytest.approx(math.log(score), abs=1e-5)
    assert len({len(lp) for lp in batched}) > 1  # the batches really were padded
    pairs = [(e.context, s.text) for e in data["intersentence"] for s in e.sentences]
    batched = intersentence_logprobs(lm.model, lm.tokenizer, pairs, batch_size=7)
    single = intersentence_logprobs(lm.model, lm.tokenizer, pairs, batch_size=1)
    for b, s in zip(batched, single):
        assert len(b) == len(s)
        assert sum(b) / len(b) == pytest.approx(sum(s) / len(s), abs=1e-5)
    # and both equal a plain full-sequence pass: log p(sentence token | <|endoftext|> context, earlier tokens)
    import torch

    context, sentence = pairs[0]
    prefix = [50256] + lm.tokenizer(context)["input_ids"]
    ids = prefix + lm.tokenizer(" " + sentence)["input_ids"]
    with torch.inference_mode():
        logprobs = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    expected = [logprobs[j - 1, ids[j]].item() for j in range(len(prefix), len(ids))]
    assert batched[0] == pytest.approx(expected, abs=1e-5)


def plain_logprobs(model, sequence, first):
    """log p(token | everything before it) from one unbatched pass: what every batched path must give."""
    import torch

    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([sequence])).logits[0].float(), dim=-1)
    return [logprobs[j - 1, sequence[j]].item() for j in range(first, len(sequence))]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 64])
@pytest.mark.parametrize("split_head", [True, False])
def test_shared_prefixes_and_packing_give_the_plain_pass(tiny_gpt2, batch_size, split_head, monkeypatch):
    """Sequences sharing prefixes of every length (also a duplicate, one that is the start of
    another, one of a single token), packed in batches of any size, score exactly as one plain
    pass each; also when the model cannot be split into body and vocabulary projection."""
    from vdata_hub.eval.likelihood import _batches, _pack, token_logprobs
    from vdata_hub.eval.models import load_model

    lm = load_model(str(tiny_gpt2), "cpu")
    if not split_head:
        monkeypatch.setattr(lm.model, "get_output_embeddings", lambda: None)
    encode = [lm.tokenizer(text)["input_ids"] for text in (
        "The chess player was hispanic.", "The chess player was fox.", "The chess player was asian.",
        "The chess player was asian.", "The chess player", "The nurse is kind.", "Ghana is hot", "Hi")]
    sequences = [[50256] + ids for ids in encode] + encode
    first_scored = [3] * len(encode) + [1] * len(encode)
    first_scored[len(encode) - 1] = 1  # "<|endoftext|>Hi": score both tokens
    batched = token_logprobs(lm.model, sequences, first_scored, batch_size=batch_size)
    for sequence, first, logprobs in zip(sequences, first_scored, batched):
        assert logprobs == pytest.approx(plain_logprobs(lm.model, sequence, first), abs=1e-5)
    batches = _batches(sequences, batch_size)
    assert sorted(i for members in batches for i in members) == list(range(len(sequences)))
    assert all(len(members) <= batch_size for members in batches)
    assert len(batches) == -(-len(sequences) // batch_size)  # as few passes as the batch size allows
    for members in batches:  # every distinct prefix once; last tokens are never fed in
        prefixes = {tuple(sequences[i][:end]) for i in members for end in range(1, len(sequences[i]))}
        assert len(_pack(members, sequences)[0]) == len(prefixes)
    if batch_size == 64:
        assert len(prefixes) < sum(len(sequence) - 1 for sequence in sequences) - 20


def test_vocabulary_slices_give_the_whole_log_softmax():
    """The projection runs against a slice of the vocabulary at a time (with its bias, uneven last
    slice); combining the slices' log-sum-exps gives the log-softmax over the whole vocabulary."""
    import torch

    from vdata_hub.eval.likelihood import _target_logprobs

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 10)
    features = torch.randn(4, 8)
    rows, targets = torch.tensor([0, 1, 1, 3, 2]), torch.tensor([9, 0, 4, 3, 7])
    with torch.inference_mode():
        expected = torch.log_softmax(head(features), dim=-1)[rows, targets]
        for vocabulary_slice in (1, 3, 10, 64):
            sliced = _target_logprobs(head, features, rows, targets, vocabulary_slice)
            assert sliced.tolist() == pytest.approx(expected.tolist(), abs=1e-6)


def test_a_model_that_ignores_the_packed_mask_is_scored_one_pass_at_a_time(tiny_gpt2, monkeypatch):
    """Packing relies on the model honouring a 4-D attention mask and position ids; a model that
    drops them would mix the packed sequences, so scoring falls back to plain passes."""
    from vdata_hub.eval.likelihood import _model_parts, _packing_is_exact, token_logprobs
    from vdata_hub.eval.models import load_model

    lm = load_model(str(tiny_gpt2), "cpu")
    assert _packing_is_exact(_model_parts(lm.model), "cpu")
    forward = lm.model.transformer.forward
    monkeypatch.setattr(lm.model.transformer, "forward", lambda input_ids=None, **_: forward(input_ids=input_ids))
    assert not _packing_is_exact(_model_parts(lm.model), "cpu")
    sequences = [lm.tokenizer(text)["input_ids"] for text in ("The nurse is kind.", "The nurse is tall.", "Hi there")]
    batched = token_logprobs(lm.model, sequences, [1, 1, 1], batch_size=8)
    for sequence, logprobs in zip(sequences, batched):
        assert logprobs == pytest.approx(plain_logprobs(lm.model, sequence, 1), abs=1e-5)


@pytest.fixture(scope="module")
def cli_run(tiny_gpt2, stereoset_dev, tmp_path_factory):
    out = tmp_path_factory.mktemp("stereoset") / "results"
    main(["eval", "stereoset", "--model", str(tiny_gpt2), "--data", str(stereoset_dev), "--max-examples", "12",
          "--batch-size", "8", "--device", "cpu", "--output", str(out), "--quiet"])
    return out


def test_cli_writes_official_layout_scores_table_and_chart(cli_run):
    results = json.loads((cli_run / "results.json").read_text())
    assert set(results) == {"intrasentence", "intersentence", "overall", "confidence_intervals"}
    intervals = results["confidence_intervals"]
    assert intervals["resamples"] == 1000 and intervals["seed"] == 0 and intervals["level"] == 0.95
    for task in ("intrasentence", "intersentence"):
        assert set(results[task]) == {"gender", "profession", "race", "religion", "overall"}
        assert results[task]["overall"]["Count"] == 12
        assert set(results[task]["overall"]) == {"Count", "LM Score", "SS Score", "ICAT Score"}
        assert set(intervals[task]) == set(results[task])
        assert intervals[task]["religion"] == {"LM Score": None, "SS Score": None, "ICAT Score": None}  # no example
        for name in ("LM Score", "SS Score", "ICAT Score"):
            low, high = intervals[task]["overall"][name]
            assert low <= results[task]["overall"][name] <= high
    predictions = json.loads((cli_run / "predictions.json").read_text())
    assert len(predictions["intrasentence"]) == len(predictions["intersentence"]) == 36
    assert set(predictions["intrasentence"][0]) == {"id", "score"}
    rows = [json.loads(line) for line in (cli_run / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 72 and all(math.isclose(r["score"], math.exp(r["mean_logprob"])) for r in rows)
    table = (cli_run / "results.md").read_text()
    assert "| intrasentence | gender |" in table and "95% bootstrap intervals" in table
    ss, (low, high) = results["overall"]["SS Score"], intervals["overall"]["SS Score"]
    assert f"{ss:.2f} [{low:.1f}, {high:.1f}]" in table
    assert (cli_run / "ss_by_domain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = json.loads((cli_run / "run.json").read_text())
    assert run["start_token"] == "<|endoftext|>" and "conditioned on the context" in run["intersentence_method"]


def test_predictions_round_trip_and_evaluate_module(cli_run, stereoset_dev, tmp_path, capsys):
    out = tmp_path / "again"
    main(["eval", "stereoset", "--predictions", str(cli_run / "predictions.json"), "--data", str(stereoset_dev),
          "--max-examples", "12", "--output", str(out)])
    assert "ICAT Score" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text()) == json.loads((cli_run / "results.json").read_text())
    assert json.loads((out / "predictions.json").read_text()) == json.loads((cli_run / "predictions.json").read_text())

    import evaluate

    metric = evaluate.load(str(EVAL_DIR / "stereoset"))
    data = load_stereoset(str(stereoset_dev), max_examples=12)
    refs = references(data["intrasentence"] + data["intersentence"])
    score_of = {row["id"]: row["score"] for task in ("intrasentence", "intersentence")
                for row in json.loads((cli_run / "predictions.json").read_text())[task]}
    computed = metric.compute(predictions=[score_of[r["id"]] for r in refs], references=refs)
    expected = json.loads((cli_run / "results.json").read_text())
    assert computed["overall"] == pytest.approx(expected["overall"])
    assert computed["intrasentence"]["race"] == pytest.approx(expected["intrasentence"]["race"])


def test_predictions_for_other_examples_are_refused(cli_run, stereoset_dev, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "stereoset", "--predictions", str(cli_run / "predictions.json"), "--data", str(stereoset_dev),
              "--max-examples", "13", "--output", str(tmp_path / "x")])
    assert "error: 6 StereoSet sentences have no score" in capsys.readouterr().err


def test_shard_pieces_scored_together_equal_the_whole_run(cli_run, tiny_gpt2, stereoset_dev, tmp_path, capsys):
    """A long run split with --shard I/K: the pieces' predictions files, scored together, give the
    same results as one run over all the examples."""
    common = ["--data", str(stereoset_dev), "--max-examples", "12"]
    parts = []
    for shard in ("0/3", "1,2/3"):
        out = tmp_path / f"piece{len(parts)}"
        main(["eval", "stereoset", "--model", str(tiny_gpt2), *common, "--shard", shard, "--batch-size", "5",
              "--device", "cpu", "--output", str(out), "--quiet"])
        parts.append(out / "predictions.json")
    counts = [json.loads((p.parent / "results.json").read_text())["intersentence"]["overall"]["Count"] for p in parts]
    assert counts == [4, 8]
    main(["eval", "stereoset", "--predictions", ",".join(map(str, parts)), *common, "--output", str(tmp_path / "all"),
          "--quiet"])
    merged = json.loads((tmp_path / "all" / "results.json").read_text())
    assert merged == json.loads((cli_run / "results.json").read_text())
    whole = {r["id"]: r["score"] for r in json.loads((cli_run / "predictions.json").read_text())["intrasentence"]}
    pieces = {r["id"]: r["score"] for r in json.loads((tmp_path / "all" / "predictions.json").read_text())["intrasentence"]}
    assert pieces.keys() == whole.keys() and all(abs(pieces[k] - whole[k]) < 1e-6 for k in whole)

    clash = tmp_path / "clash.json"
    changed = json.loads(parts[0].read_text())
    changed["intrasentence"][0]["score"] += 0.5
    clash.write_text(json.dumps(changed))
    with pytest.raises(SystemExit):
        main(["eval", "stereoset", "--predictions", f"{parts[0]},{clash}", *common, "--output", str(tmp_path / "x")])
    assert "two different scores" in capsys.readouterr().err
    with pytest.raises(EvalError, match="I/K"):
        load_stereoset(str(stereoset_dev), shard="3/3")


def test_stereoset_from_a_hub_repo_matches_the_json_file(hub, stereoset_dev):
    """McGill-NLP/stereoset's layout (one Parquet per config, integer gold labels) on the emulator."""
    import uuid

    import datasets
    from huggingface_hub import HfApi

    repo = f"alice/stereoset-{uuid.uuid4().hex[:8]}"
    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    api.create_repo(repo, repo_type="dataset")
    raw = json.loads(stereoset_dev.read_text())["data"]
    label = datasets.ClassLabel(names=["anti-stereotype", "stereotype", "unrelated"])
    annotations = datasets.Sequence({"label": label, "human_id": datasets.Value("string")})
    features = datasets.Features({
        "id": datasets.Value("string"), "target": datasets.Value("string"), "bias_type": datasets.Value("string"),
        "context": datasets.Value("string"),
        "sentences": datasets.Sequence({"sentence": datasets.Value("string"), "id": datasets.Value("string"),
                                        "labels": annotations,
                                        "gold_label": label})})
    for task in ("intrasentence", "intersentence"):
        rows = [{**{k: e[k] for k in ("id", "target", "bias_type", "context")},
                 "sentences": {"sentence": [s["sentence"] for s in e["sentences"]],  # column-wise, as there
                               "id": [s["id"] for s in e["sentences"]],
                               "gold_label": [label.str2int(s["gold_label"]) for s in e["sentences"]],
                               "labels": [{"label": [label.str2int(s["gold_label"])], "human_id": ["h"]}
                                          for s in e["sentences"]]}}
                for e in raw[task][:5]]
        dataset = datasets.Dataset.from_list(rows, features=features)
        path = Path(hub.data_dir) / f"{task}.parquet"
        dataset.to_parquet(str(path))
        api.upload_file(path_or_fileobj=str(path), path_in_repo=f"{task}/validation-00000-of-00001.parquet",
                        repo_id=repo, repo_type="dataset")
    card = ("---\nconfigs:\n- config_name: intersentence\n  data_files:\n  - split: validation\n    path: "
            "intersentence/validation-*\n- config_name: intrasentence\n  data_files:\n  - split: validation\n"
            "    path: intrasentence/validation-*\n---\n# StereoSet\n")
    api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo, repo_type="dataset")
    assert load_stereoset(repo) == load_stereoset(str(stereoset_dev), max_examples=5)


def test_a_missing_hub_repo_says_how_to_run_offline(hub):
    with pytest.raises(EvalError, match="--data FILE"):
        load_stereoset("alice/no-such-stereoset")
