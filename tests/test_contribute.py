"""contribute → PR → review → merge → load_dataset, against the Hub emulator with the real clients;
hostile inputs leave no PR and no stray commit on main."""

import json
import uuid

import pytest
from huggingface_hub import HfApi

from tests.test_validation import make_row, story
from vdata_hub import hub as hub_ops
from vdata_hub.repo import layout
from vdata_hub.repo.card import EVAL_END, EVAL_START, init_repo
from vdata_hub.repo.contribute import contribute
from vdata_hub.errors import AuthError, HubError, ValidationFailed, VdataError
from vdata_hub.generation.records import records_to_table, row_ids
from vdata_hub.repo.review import review


def save_dataset(path, rows):
    from datasets import Dataset
    from datasets.table import InMemoryTable

    table = records_to_table(rows or [make_row(0)]).slice(0, len(rows))  # keeps one chunk when empty
    Dataset(InMemoryTable(table)).save_to_disk(str(path))
    return str(path)


def two_axes(n=30, start=0):
    return [make_row(i, bias_axis="gender" if i % 3 else "religion") for i in range(start, start + n)]


@pytest.fixture
def repo(hub):
    name = f"org/vdata-{uuid.uuid4().hex[:8]}"
    init_repo(name, token=hub.token)
    return name


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(hub_ops, "BACKOFF_SECONDS", [0.05, 0.05, 0.05])


def state(hub, repo):
    """(main's commit, number of PRs) to prove that a failure changed nothing."""
    api = HfApi(token=hub.token)
    prs = list(api.get_repo_discussions(repo, repo_type="dataset", discussion_type="pull_request"))
    return api.repo_info(repo, repo_type="dataset").sha, len(prs)


def test_contribute_review_merge_load(hub, repo, tmp_path):
    from datasets import load_dataset

    out = save_dataset(tmp_path / "out", two_axes(30))
    result = contribute(out, repo=repo, token=hub.token)
    assert result.status == "opened" and result.pr_url.endswith("/discussions/1")
    cid = result.contribution_id
    api = HfApi(token=hub.token)
    pr_files = {e.path for e in api.list_repo_tree(repo, repo_type="dataset", revision="refs/pr/1", recursive=True)
                if hasattr(e, "blob_id")}
    assert pr_files == {"README.md", ".gitattributes", f"data/gender/contributed/{cid}.parquet",
                        f"data/religion/contributed/{cid}.parquet", f"contributions/{cid[:2]}/{cid}.json"}
    commits = api.list_repo_commits(repo, repo_type="dataset", revision="refs/pr/1")
    main_commits = api.list_repo_commits(repo, repo_type="dataset", revision="main")
    assert len(commits) == len(main_commits) + 1  # exactly one contribution commit
    assert commits[0].title.startswith(f"Contribution {cid}")
    details = api.get_discussion_details(repo, 1, repo_type="dataset")
    assert details.title.startswith(f"Contribution {cid}: 30 rows")
    manifest = json.loads(open(api.hf_hub_download(repo, f"contributions/{cid[:2]}/{cid}.json", repo_type="dataset",
                                                   revision="refs/pr/1")).read())
    assert manifest["rows"] == 30 and manifest["rows_per_axis"] == {"gender": 20, "religion": 10}
    assert manifest["contributor"] == "alice" and str(tmp_path) not in json.dumps(manifest)
    assert manifest["license"] == "cc0-1.0" and "releases these rows under CC0-1.0" in details.events[0].content

    again = contribute(out, repo=repo, token=hub.token)
    assert again.status == "already_open" and again.pr_url == result.pr_url
    assert state(hub, repo)[1] == 1

    [reviewed] = review(repo=repo, merge=True, token=hub.token)
    assert reviewed.passed and reviewed.action == "merged", reviewed.summary()
    comments = [e.content for e in api.get_discussion_details(repo, 1, repo_type="dataset").events
                if e.type == "comment"]
    assert any("vdata review: passed" in c for c in comments)

    everything = load_dataset(repo, split="train")
    religion = load_dataset(repo, "religion", split="train")
    assert everything.num_rows == 30 and religion.num_rows == 10
    assert set(religion["bias_axis"]) == {"religion"}
    readme = open(api.hf_hub_download(repo, "README.md", repo_type="dataset")).read()
    assert "config_name: religion" in readme and "| gender | 20 |" in readme and EVAL_START in readme

    with pytest.raises(ValidationFailed, match="already on the repo's main branch"):
        contribute(out, repo=repo, token=hub.token)

    more = save_dataset(tmp_path / "more", two_axes(12, start=1000))
    second = contribute(more, repo=repo, token=hub.token, part="bias_axis=gender")
    assert second.manifest["rows_per_axis"] == {"gender": 8}


def test_dry_run_uploads_nothing(hub, repo, tmp_path):
    before = state(hub, repo)
    result = contribute(save_dataset(tmp_path / "out", two_axes(9)), repo=repo, token=hub.token, dry_run=True)
    assert result.status == "dry_run"
    cid = result.contribution_id
    assert sorted(result.files) == sorted([f"data/gender/contributed/{cid}.parquet",
                                           f"data/religion/contributed/{cid}.parquet",
                                           f"contributions/{cid[:2]}/{cid}.json"])
    assert "would open a pull request" in result.summary()
    assert state(hub, repo) == before


@pytest.mark.parametrize("case", ["wrong_schema", "empty", "all_bad", "ten_mb_row"])
def test_hostile_datasets_leave_nothing(hub, repo, tmp_path, case):
    before = state(hub, repo)
    if case == "wrong_schema":
        from datasets import Dataset

        Dataset.from_list([{"text": story(1), "label": 1}]).save_to_disk(str(tmp_path / "out"))
        out, message = str(tmp_path / "out"), "missing columns"
    elif case == "empty":
        out, message = save_dataset(tmp_path / "out", []), "nothing to contribute"
    elif case == "all_bad":
        rows = [make_row(1, text="Contact me at a@b.co please, " + "x" * 10, model=""), make_row(2, text="")]
        out, message = save_dataset(tmp_path / "out", rows), "no row passed validation"
    else:
        out, message = save_dataset(tmp_path / "out", [make_row(1, text="word " * 2_100_000)]), "too_long"
    with pytest.raises(ValidationFailed, match=message):
        contribute(out, repo=repo, token=hub.token)
    assert state(hub, repo) == before


def test_bad_tokens_give_clear_errors(hub, repo, tmp_path):
    out = save_dataset(tmp_path / "out", two_axes(6))
    before = state(hub, repo)
    with pytest.raises(AuthError, match="refused the token") as wrong:
        contribute(out, repo=repo, token="hf_not_a_real_token_123456")
    assert "hf_not_a_real" not in str(wrong.value)
    with pytest.raises(AuthError, match="read-only"):
        contribute(out, repo=repo, token=hub.read_token)
    with pytest.raises(HubError, match="not found"):
        contribute(out, repo="org/does-not-exist-" + uuid.uuid4().hex[:6], token=hub.token)
    assert state(hub, repo) == before


def test_upload_failure_leaves_no_pr_and_retries_commit(hub, repo, tmp_path):
    out = save_dataset(tmp_path / "out", two_axes(12))
    before = state(hub, repo)
    hub.fail_next("PUT", r"^/lfs-upload/", 400, count=1, message="disk full")
    with pytest.raises(HubError, match="opening the pull request"):
        contribute(out, repo=repo, token=hub.token)
    hub.clear_faults()
    assert state(hub, repo) == before

    hub.fail_next("POST", r"/commit/main", 500, count=1)
    hub.fail_next("POST", r"/commit/main", 429, count=1)
    result = contribute(out, repo=repo, token=hub.token)
    hub.clear_faults()
    assert result.status == "opened"
    assert state(hub, repo) == (before[0], 1)


def test_cli_contribute_dry_run(hub, repo, tmp_path, capsys, monkeypatch):
    from vdata_hub.cli import main

    out = save_dataset(tmp_path / "out", two_axes(6))
    monkeypatch.setenv("HF_TOKEN", hub.token)
    main(["contribute", out, "--repo", repo, "--dry-run", "--part", "3"])
    printed = capsys.readouterr().out
    assert "checked 3 rows: 3 accepted" in printed and "would open a pull request" in printed
    with pytest.raises(SystemExit):
        main(["contribute", str(tmp_path / "missing"), "--repo", repo])
    assert "error: " in capsys.readouterr().err


def test_part_selection():
    from vdata_hub.repo.contribute import select_part

    table = records_to_table(two_axes(40))
    assert select_part(table, 0.25).num_rows == 10
    assert select_part(table, "7").num_rows == 7
    small, large = select_part(table, 5), select_part(table, 20)
    assert set(small.column("id").to_pylist()) <= set(large.column("id").to_pylist())
    assert set(select_part(table, "bias_axis=religion").column("bias_axis").to_pylist()) == {"religion"}
    with pytest.raises(VdataError, match="expected a fraction"):
        select_part(table, "half")


def test_generate_then_contribute_review_and_load(hub, fake_llm, tmp_path):
    from datasets import load_dataset

    from tests.test_generate import write_spec
    from vdata_hub.generation.generate import generate

    out = str(tmp_path / "out")
    generate(out=out, spec=str(write_spec(tmp_path)), api_base=fake_llm.base_url, api_key="test-key")
    name = f"org/gen-{uuid.uuid4().hex[:8]}"
    init_repo(name, token=hub.token)
    result = contribute(out, repo=name, token=hub.token)
    assert result.status == "opened", result.summary()
    [reviewed] = review(repo=name, merge=True, token=hub.token)
    assert reviewed.action == "merged", reviewed.summary()
    rows = load_dataset(name, split="train")
    assert rows.num_rows == result.report.accepted == 12
    assert load_dataset(name, "age", split="train").num_rows == result.manifest["rows_per_axis"]["age"]


def test_unreachable_hub_is_a_clear_error(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    out = save_dataset(tmp_path / "out", two_axes(3))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(HubError, match="cannot reach the Hub at http://127.0.0.1:9"):
        contribute(out, repo="org/vdata", token=hub.token)


def test_the_same_near_duplicates_contributed_twice_open_one_pr(hub, fake_llm, tmp_path):
    """Issue 13's sequence as a new user would run it: generate -n 120 with texts that are near
    duplicates of each other, contribute, review --merge, then contribute the same folder again.
    The second time no row is new: no second PR, whatever near duplicates the data holds."""
    from tests.test_generate import write_spec
    from vdata_hub.generation.generate import generate
    from vdata_hub.generation.local_dataset import load_local_dataset
    from vdata_hub.repo.index import open_index
    from vdata_hub.repo.validation import validate

    fake_llm.set(near_duplicates=True)
    out = str(tmp_path / "out")
    generate(out=out, spec=str(write_spec(tmp_path, num_records=120)), api_base=fake_llm.base_url,
             api_key="test-key")
    name = f"org/twice-{uuid.uuid4().hex[:8]}"
    init_repo(name, token=hub.token)
    first = contribute(out, repo=name, token=hub.token)
    assert first.status == "opened" and first.report.rejected["near_duplicate"] > 0, first.summary()
    [reviewed] = review(repo=name, merge=True, token=hub.token)
    assert reviewed.action == "merged", reviewed.summary()

    before = state(hub, name)
    with pytest.raises(ValidationFailed, match="nothing new to contribute"):
        contribute(out, repo=name, token=hub.token)
    assert state(hub, name) == before  # no second PR, nothing on main

    api = HfApi(token=hub.token)
    again = validate(load_local_dataset(out), main=open_index(name, before[0], hub.token))
    assert again.accepted == 0
    assert again.rejected["duplicate_of_main"] == first.report.accepted
    assert again.rejected["near_duplicate_of_main"] > 0
    from datasets import load_dataset

    on_main = set(load_dataset(name, split="train", revision=before[0])["id"])
    matched = [again.matches[row_id] for row_id in again.rejected_ids["near_duplicate_of_main"]]
    assert set(matched) <= on_main and api.file_exists(name, layout.manifest_path(first.contribution_id),
                                                       repo_type="dataset")
    assert "near_duplicate_of_main" in again.summary() and "(main: " in again.summary()


def test_an_output_folder_written_before_plan_key_is_contributable(hub, repo, tmp_path):
    """Folders that `generate` wrote before rows had a plan_key (their id was the plan key) are
    contributed with the plan key moved to plan_key and ids made unique."""
    from datasets import Dataset, load_dataset
    from datasets.table import InMemoryTable

    rows = two_axes(9)
    old = records_to_table(rows).drop_columns(["plan_key"])
    Dataset(InMemoryTable(old)).save_to_disk(str(tmp_path / "old"))
    result = contribute(str(tmp_path / "old"), repo=repo, token=hub.token)
    assert result.status == "opened" and result.report.accepted == 9
    [reviewed] = review(repo=repo, merge=True, token=hub.token)
    assert reviewed.action == "merged", reviewed.summary()
    merged = load_dataset(repo, split="train")
    assert sorted(merged["plan_key"]) == sorted(row["id"] for row in rows)
    assert sorted(merged["id"]) == sorted(row_ids(old.column("text_hash").to_numpy()).to_pylist())
