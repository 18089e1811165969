"""The dataset card: valid for huggingface_hub, configs per axis, totals from the manifests, and
the evaluation section kept verbatim across refreshes."""

import uuid

import pytest
from huggingface_hub import DatasetCard, HfApi

from vdata_hub.repo.card import EVAL_END, EVAL_START, card, init_repo, render_card
from vdata_hub.errors import VdataError
from vdata_hub.repo.reindex import reindex

MANIFESTS = [
    {"rows": 30, "rows_per_axis": {"gender": 20, "religion": 10}, "rows_per_domain": {"healthcare": 30},
     "rows_per_task": {"story": 30}, "rows_per_model": {"openai/gpt-4o-mini": 30}, "input_tokens": 600,
     "output_tokens": 2400, "cost_usd": 0.012, "contributor": "alice", "generator_versions": ["0.1.0"]},
    {"rows": 5, "rows_per_axis": {"gender": 5}, "rows_per_domain": {"education": 5}, "rows_per_task": {"dialogue": 5},
     "rows_per_model": {"local": 5}, "input_tokens": 100, "output_tokens": 400, "cost_usd": 0.0,
     "contributor": "bob", "generator_versions": ["0.2.0"]},
]


def test_rendered_card_is_valid_and_has_the_totals():
    text = render_card("org/vdata", MANIFESTS, ["gender", "religion"])
    data = DatasetCard(text).data.to_dict()
    assert data["license"] == "cc0-1.0" and data["task_categories"] == ["text-generation"]
    assert "[CC0-1.0](https://creativecommons.org/publicdomain/zero/1.0/)" in text
    assert "may also fall under the terms of use of the provider whose model wrote it" in text
    assert [c["config_name"] for c in data["configs"]] == ["default", "gender", "religion"]
    assert data["configs"][0]["data_files"][0]["path"] == "data/*/**/*.parquet"
    assert data["configs"][2]["data_files"][0]["path"] == "data/religion/**/*.parquet"
    for expected in ("35 rows from 2 contribution(s)", "| gender | 25 |", "| education | 5 |", "| dialogue | 5 |",
                     "| local | 5 |", "700 input and 2,800 output tokens", "$0.01", "alice (30 rows), bob (5 rows)",
                     "Generator versions: 0.1.0, 0.2.0"):
        assert expected in text, expected


def test_eval_section_survives_refreshes():
    section = "\n| model | ICAT before | ICAT after |\n|---|---|---|\n| gpt2 | 70.5 | 72.1 |\n"
    old = render_card("org/vdata", MANIFESTS[:1], ["gender"]).replace(
        text_between(render_card("org/vdata", [], [])), section)
    refreshed = render_card("org/vdata", MANIFESTS, ["gender", "religion"], existing=old)
    assert f"{EVAL_START}{section}{EVAL_END}" in refreshed


def text_between(card_text):
    return card_text.split(EVAL_START, 1)[1].split(EVAL_END, 1)[0]


def test_card_push_keeps_eval_and_init_repo_refuses_existing(hub, tmp_path):
    repo = f"org/card-{uuid.uuid4().hex[:8]}"
    url = init_repo(repo, token=hub.token)
    assert url.endswith(f"datasets/{repo}")
    api = HfApi(token=hub.token)
    assert set(api.list_repo_files(repo, repo_type="dataset")) == {"README.md", ".gitattributes"}
    assert "*.parquet filter=lfs" in open(api.hf_hub_download(repo, ".gitattributes", repo_type="dataset")).read()
    readme = open(api.hf_hub_download(repo, "README.md", repo_type="dataset")).read()
    section = "\nStereoSet ICAT: 70.54 -> 71.02 (gpt2, 200 steps)\n"
    api.upload_file(path_or_fileobj=readme.replace(text_between(readme), section).encode(), path_in_repo="README.md",
                    repo_id=repo, repo_type="dataset", commit_message="eval results")
    commits = len(api.list_repo_commits(repo, repo_type="dataset"))
    text = card(repo=repo, push=True, token=hub.token, output=str(tmp_path / "README.md"))
    assert f"{EVAL_START}{section}{EVAL_END}" in text
    assert (tmp_path / "README.md").read_text() == text
    assert len(api.list_repo_commits(repo, repo_type="dataset")) == commits  # unchanged card: no commit
    with pytest.raises(VdataError, match="already exists"):
        init_repo(repo, token=hub.token)


def test_cli_init_repo_and_card(hub, capsys, monkeypatch):
    from vdata_hub.cli import main

    monkeypatch.setenv("HF_TOKEN", hub.token)
    repo = f"alice/cli-{uuid.uuid4().hex[:8]}"
    main(["init-repo", repo])
    assert capsys.readouterr().out.strip().endswith(f"datasets/{repo}")
    main(["card", "--repo", repo])
    printed = capsys.readouterr().out
    assert printed.startswith("---\nlicense: cc0-1.0") and "0 rows from 0 contribution(s)" in printed


BALANCE_TEXTS = [
    "Amina, a woman from the clinic, fixed her own network. She was proud of her work.",
    "Kofi, a man in his forties, repaired the scanner, and he trained a nurse.",
    "A Muslim nurse and a Christian nurse swapped shifts on a busy night at the clinic.",
]


def test_card_shows_balance_statistics_of_the_rows_on_main(hub, tmp_path):
    from datasets import Dataset
    from datasets.table import InMemoryTable

    from tests.test_validation import make_row
    from vdata_hub.repo.contribute import contribute
    from vdata_hub.generation.records import records_to_table

    repo = f"org/card-{uuid.uuid4().hex[:8]}"
    init_repo(repo, token=hub.token)
    api = HfApi(token=hub.token)
    empty = open(api.hf_hub_download(repo, "README.md", repo_type="dataset")).read()
    assert "## Balance statistics" in empty and "No rows yet" in empty
    rows = [make_row(i, text=text, bias_axis=axis)
            for i, (text, axis) in enumerate(zip(BALANCE_TEXTS, ["gender", "gender", "religion"]))]
    Dataset(InMemoryTable(records_to_table(rows))).save_to_disk(str(tmp_path / "out"))
    pr = contribute(str(tmp_path / "out"), repo=repo, token=hub.token)
    api.merge_pull_request(repo, int(pr.pr_url.rsplit("/", 1)[1]), repo_type="dataset")
    text = card(repo=repo, push=True, token=hub.token)
    DatasetCard(text).validate("dataset")  # the rendered card still validates (YAML, card data)
    assert "No rows yet" not in text
    for expected in ("**3** rows", "Refusal rate 0.0%, duplicates 0 (0.0%)",
                     "| count (share) | 2 (40%) | 3 (60%) | 0 (0%) |",  # he: his, he; she: her, She, her
                     "| gender | 2 | a woman 1, a man 1, a nonbinary person 0,",
                     "| religion | 1 | a Christian person 1, a Muslim person 1, a Jewish person 0,",
                     "coverage 2 of 2 domain × axis × task cells", "Length in words: min 14,",
                     "mentions in gender: a woman 1 vs a nonbinary person 0 (max/min inf > 2)"):
        assert expected in text, expected
    assert open(api.hf_hub_download(repo, "README.md", repo_type="dataset")).read() == text


def test_card_reads_no_data_and_shows_each_month(hub, tmp_path):
    """Per month: rows, contributions, cost and data size; refreshing reads manifests and records,
    never a Parquet file; after compaction, one record instead of the compacted manifests."""
    from datetime import datetime, timezone

    from tests.test_archive import contribute_on, gender_or_religion
    from tests.test_compact import rows
    from vdata_hub.repo.compact import compact

    repo = f"org/card-{uuid.uuid4().hex[:8]}"
    init_repo(repo, token=hub.token)
    contribute_on(hub, repo, tmp_path, datetime(2026, 9, 2, tzinfo=timezone.utc),
                  [rows(gender_or_religion, 6, 0), rows(gender_or_religion, 4, 50)])
    contribute_on(hub, repo, tmp_path, datetime(2026, 10, 20, tzinfo=timezone.utc), [rows(gender_or_religion, 5, 90)])
    hub.clear_requests()
    text = card(repo=repo, token=hub.token)
    fetched = [r["path"] for r in hub.requests() if "/resolve/" in r["path"]]
    assert fetched and not any("/data/" in path for path in fetched), fetched
    assert "| 2026-09 | 10 | 2 | $0.00 |" in text and "| 2026-10 | 5 | 1 | $0.00 |" in text
    assert "**15** rows" in text and "<!-- vdata-storage: {" in text

    compact(repo, direct=True, token=hub.token)
    hub.clear_requests()
    again = card(repo=repo, token=hub.token)
    fetched = [r["path"] for r in hub.requests() if "/resolve/" in r["path"]]
    assert not any("/data/" in path or "/contributions/" in path for path in fetched), fetched
    assert any("/compactions/" in path for path in fetched)
    assert "15 rows from 3 contribution(s)" in again and "**15** rows" in again
    assert again.split("## Balance statistics")[1].split("## Layout")[0] == \
        text.split("## Balance statistics")[1].split("## Layout")[0]


@pytest.mark.parametrize("failure", ["manifest", "commit"])
def test_an_interrupted_refresh_changes_nothing_and_a_rerun_pushes(hub, tmp_path, failure):
    from vdata_hub.errors import HubError

    repo = f"org/card-{uuid.uuid4().hex[:8]}"
    init_repo(repo, token=hub.token)
    api = HfApi(token=hub.token)
    for number in range(3):  # merged without a card refresh: the card is stale
        result = contribute_on_pr(hub, repo, tmp_path, [make_rows(number)])
        api.merge_pull_request(repo, result, repo_type="dataset")
        reindex(repo, token=hub.token)  # merged on the website: the duplicate index is rebuilt by hand
    head, stale = api.repo_info(repo, repo_type="dataset").sha, readme(api, repo)
    if failure == "manifest":
        hub.fail_next("GET", r"/resolve/[0-9a-f]{40}/contributions/", 404, code="EntryNotFound")
    else:
        hub.fail_next("POST", rf"/api/datasets/{repo}/commit/main", 500, count=20)
    try:
        with pytest.raises(HubError):
            card(repo=repo, push=True, token=hub.token)
    finally:
        hub.clear_faults()
    assert api.repo_info(repo, repo_type="dataset").sha == head and readme(api, repo) == stale
    text = card(repo=repo, push=True, token=hub.token)
    assert readme(api, repo) == text and "3 contribution(s)" in text


def make_rows(number):
    from tests.test_validation import make_row

    return [make_row(1000 * number + i, system_prompt=f"card test {uuid.uuid4().hex[:6]}") for i in range(4)]


def contribute_on_pr(hub, repo, tmp_path, batches):
    from tests.test_contribute import save_dataset
    from vdata_hub.repo.contribute import contribute

    [batch] = batches
    result = contribute(save_dataset(tmp_path / uuid.uuid4().hex[:6], batch), repo=repo, token=hub.token)
    return int(result.pr_url.rsplit("/", 1)[1])


def readme(api, repo):
    return open(api.hf_hub_download(repo, "README.md", repo_type="dataset", force_download=True)).read()
