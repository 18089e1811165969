"""`vdata stats` on a small local dataset and on a Hub repo (through the emulator)."""

import io
import json
import subprocess
import sys
import uuid

import pytest

from vdata_hub.errors import HubError, VdataError
from vdata_hub.generation.records import Record, records_to_table
from vdata_hub.repo.stats import format_stats, stats, stats_markdown

STORY_F = "Amina, a woman from the clinic, fixed her own network. She was proud of her work."
STORY_M = "Kofi, a man in his forties, repaired the scanner, and he trained a 34-year-old nurse."
REFUSAL = "I'm sorry, but I can't help with that request about a Muslim person."
RELIGION = "A Muslim nurse and a Christian nurse swapped shifts; the White doctor wore a white coat."


def make_row(index, text, bias_axis="gender", group="a woman", domain="healthcare",
             task="counter_stereotype_story", augmented=False):
    return Record(
        id=f"r{index:04d}", text=text, prompt="p", system_prompt="s", template=task, template_sha="x",
        variables="{}", bias_axis=bias_axis, domain=domain, task=task, group=group, model="fake", params="{}",
        input_tokens=1, output_tokens=1, cost_usd=0.0, finish_reason="stop",
        created_at="2026-01-01T00:00:00Z", augmented=augmented,
    ).to_dict()


def sample_rows():
    return [
        make_row(0, STORY_F),
        make_row(1, STORY_M, group="a man", domain="education"),
        make_row(2, STORY_F.upper().lower().replace("amina", "Amina"), augmented=True),  # same normalised text
        make_row(3, REFUSAL, bias_axis="religion", group="a Muslim person"),
        make_row(4, RELIGION, bias_axis="religion", group="a Christian person", task="ambiguous_qa"),
    ]


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory):
    from datasets import Dataset

    path = tmp_path_factory.mktemp("stats") / "out"
    Dataset(records_to_table(sample_rows())).save_to_disk(str(path))
    return path


def test_counts_of_a_local_dataset(local_dataset):
    result = stats(str(local_dataset))
    assert (result.rows, result.augmented_rows) == (5, 1)
    assert result.rows_per_axis == {"gender": 3, "religion": 2}
    assert result.rows_per_group["gender"] == {"a woman": 2, "a man": 1}
    gender = result.mentions["gender"]
    assert (gender["a woman"], gender["a man"], gender["a nonbinary person"]) == (2, 1, 0)
    religion = result.mentions["religion"]
    assert (religion["a Muslim person"], religion["a Christian person"], religion["a Hindu person"]) == (2, 1, 0)
    assert result.mentions["race_ethnicity"]["a White person"] == 1  # "white coat" is not a mention
    assert result.mentions["age"]["a middle-aged person"] == 0  # "in his forties" is not a listed term
    assert result.mentions["age"]["a person in their thirties"] == 1  # "a 34-year-old"
    # her, She, her in row 0 and its duplicate; his, he in row 1
    assert result.pronouns == {"he": 2, "she": 6, "they": 0}
    assert result.pronoun_ratios["she"] == 0.75
    assert result.duplicates == 1 and result.duplicate_rate == 0.2
    assert result.flags.get("refusal") == 1 and result.refusal_rate == 0.2
    assert result.length_chars["max"] == len(RELIGION) and result.length_chars["min"] == len(REFUSAL)


def test_coverage_and_imbalance_against_the_threshold(local_dataset):
    result = stats(str(local_dataset), threshold=2.0)
    coverage = result.coverage
    assert coverage["domains"] == ["education", "healthcare"]
    assert (coverage["covered"], coverage["possible"]) == (4, 8)
    assert "education × religion × ambiguous_qa" in coverage["missing"]
    assert coverage["cells"]["healthcare"]["gender"]["counter_stereotype_story"] == 2
    messages = [item["message"] for item in result.imbalances]
    assert any(m.startswith("pronouns he/she: she 6 vs he 2 (max/min 3.0 > 2)") for m in messages)
    assert any(item["kind"] == "mentions" and item["axis"] == "gender" and item["ratio"] is None
               for item in result.imbalances)  # groups never mentioned: infinite ratio
    lenient = stats(str(local_dataset), threshold=5.0)
    assert not any(item["kind"] == "pronouns he/she" for item in lenient.imbalances)


def test_terminal_table_json_markdown_and_chart(local_dataset, tmp_path):
    chart = tmp_path / "charts" / "balance.png"
    result = stats(str(local_dataset), chart=str(chart))
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result.chart == str(chart)
    table = format_stats(result)
    assert "Group mentions in texts" in table and "a woman" in table and "Duplicates: 1 (20.0%)" in table
    assert "Refusal rate: 20.0%" in table and "! pronouns he/she" in table
    parsed = json.loads(format_stats(result, as_json=True))
    assert parsed["mentions"]["gender"]["a woman"] == 2 and parsed["rows"] == 5
    markdown = stats_markdown(result)
    assert "| gender | 3 |" in markdown and "| Pronouns | he | she | they |" in markdown


def test_cli_json(local_dataset):
    done = subprocess.run([sys.executable, "-m", "vdata_hub", "stats", str(local_dataset), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 5


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(VdataError, match="no such local dataset folder"):
        stats(str(tmp_path / "nowhere"))
    with pytest.raises(VdataError, match="not a dataset folder"):
        stats(str(tmp_path))


def test_a_hub_repo_and_a_pull_request_revision(hub):
    import pyarrow.parquet as pq
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    repo = f"org/stats-{uuid.uuid4().hex[:10]}"
    api.create_repo(repo, repo_type="dataset")

    def shard(rows, name):
        buffer = io.BytesIO()
        pq.write_table(records_to_table(rows), buffer)
        return CommitOperationAdd(name, buffer.getvalue())

    rows = sample_rows()
    api.create_commit(repo, repo_type="dataset", commit_message="shards", operations=[
        shard(rows[:3], "data/gender/c1.parquet"), shard(rows[3:], "data/religion/c2.parquet")])
    pr = api.create_commit(repo, repo_type="dataset", commit_message="more", create_pr=True, operations=[
        shard([make_row(9, STORY_M, group="a man")], "data/gender/c3.parquet")])
    main = stats(repo, token=hub.token)
    assert main.rows == 5 and main.mentions["gender"]["a woman"] == 2
    revision = f"refs/pr/{pr.pr_num}"
    in_pr = stats(repo, revision=revision, token=hub.token)
    assert in_pr.rows == 6 and in_pr.mentions["gender"]["a man"] == 2
    with pytest.raises(HubError, match="not found on the Hub"):
        stats(f"org/missing-{uuid.uuid4().hex[:8]}", token=hub.token)


def test_stats_of_what_generate_wrote(fake_llm, tmp_path):
    from vdata_hub.generation.generate import generate

    spec = tmp_path / "spec.yaml"
    spec.write_text("templates: [neutral_description, ambiguous_qa]\n"
                    "variables: {domain: [housing], bias_axis: [religion]}\nnum_records: 8\n")
    out = tmp_path / "out"
    generate(out=str(out), spec=str(spec), model="openai/fake-model", api_base=fake_llm.base_url,
             api_key="test-key")
    result = stats(str(out))
    assert result.rows == 8 and result.rows_per_axis == {"religion": 8}
    assert result.coverage["tasks"] == ["ambiguous_qa", "neutral_description"]
    assert result.coverage["covered"] == result.coverage["possible"] == 2
    assert result.flags == {} and result.refusal_rate == 0.0
