"""`vdata compact` against the Hub emulator with the real clients: the same rows before and after
(load_dataset of the default config and of each axis, compared by id and text hash), manifests
intact, one commit, PR or direct; a request failing in the middle leaves main as it was and a
rerun finishes; `review --merge` compacts past its threshold."""

import json
import sys
import uuid

import pyarrow.parquet as pq
import pytest
from huggingface_hub import HfApi

from tests.test_contribute import fast_backoff, save_dataset  # noqa: F401 -- fixture reused
from tests.test_validation import make_row
from vdata_hub.errors import HubError
from vdata_hub.repo import layout
from vdata_hub.repo.card import init_repo
from vdata_hub.repo.compact import compact
from vdata_hub.repo.contribute import contribute
from vdata_hub.repo.review import review


SALT = ""


@pytest.fixture(autouse=True)
def salt(monkeypatch):
    """Rows of each test differ from other tests' (the emulator shares stored files across repos)."""
    monkeypatch.setattr(sys.modules[__name__], "SALT", uuid.uuid4().hex[:8])


def rows(axis_of, n, start):
    return [make_row(i, bias_axis=axis_of(i), system_prompt=f"Be fair. {SALT}") for i in range(start, start + n)]


def contribute_and_merge(hub, repo, tmp_path, batches):
    """Each batch of rows as one contribution merged by `review --merge` (which keeps the duplicate
    index), then the card refreshed (its configs name the axes)."""
    from vdata_hub.repo.card import card

    for batch in batches:
        contribute(save_dataset(tmp_path / f"c{uuid.uuid4().hex[:6]}", batch), repo=repo, token=hub.token)
        assert [r.action for r in review(repo=repo, merge=True, token=hub.token)] == ["merged"]
    card(repo, push=True, token=hub.token)


def loaded(repo, config=None):
    """Sorted (id, text_hash) of what load_dataset returns: the rows a user sees."""
    from datasets import load_dataset

    data = load_dataset(repo, config, split="train", download_mode="force_redownload")
    return sorted(zip(data["id"], data["text_hash"]))


def state(hub, repo):
    api = HfApi(token=hub.token)
    files = {e.path: getattr(e, "blob_id", None) for e in api.list_repo_tree(repo, repo_type="dataset", recursive=True)}
    prs = list(api.get_repo_discussions(repo, repo_type="dataset", discussion_type="pull_request",
                                        discussion_status="open"))
    return api.repo_info(repo, repo_type="dataset").sha, files, len(prs)


def two_axes(i):
    return "gender" if i % 3 else "religion"


@pytest.fixture
def repo(hub, tmp_path):
    name = f"org/compact-{uuid.uuid4().hex[:8]}"
    init_repo(name, token=hub.token)
    contribute_and_merge(hub, name, tmp_path, [rows(two_axes, 12, start) for start in (0, 100, 200, 300)])
    return name


def test_compact_keeps_every_row_once_and_the_manifests(hub, repo, tmp_path):
    api = HfApi(token=hub.token)
    before = {None: loaded(repo), "gender": loaded(repo, "gender"), "religion": loaded(repo, "religion")}
    _, files, _ = state(hub, repo)
    manifests = {p: open(api.hf_hub_download(repo, p, repo_type="dataset")).read()
                 for p in files if layout.manifest_id(p)}
    assert len(manifests) == 4 and sum(1 for p in files if layout.contributed_shard(p)) == 8

    result = compact(repo, target_bytes=12_000, row_group_bytes=4_000, direct=True, token=hub.token)
    assert result.status == "compacted" and result.rows == 48 and len(result.replaced) == 8
    assert len(result.written) >= 2, result.written  # the small target made several shards
    _, files, _ = state(hub, repo)
    assert not any(layout.contributed_shard(p) for p in files)
    assert set(result.written) <= set(files) and result.record_path in files
    for axis in (None, "gender", "religion"):
        assert loaded(repo, axis) == before[axis], axis
    assert {p: open(api.hf_hub_download(repo, p, repo_type="dataset")).read()
            for p in files if layout.manifest_id(p)} == manifests
    commits = api.list_repo_commits(repo, repo_type="dataset")
    assert commits[0].title.startswith("Compaction: 8 shards (48 rows)")

    shard = pq.ParquetFile(api.hf_hub_download(repo, sorted(result.written)[0], repo_type="dataset"))
    assert shard.metadata.num_row_groups >= 2  # row groups capped by row_group_bytes
    assert shard.metadata.row_group(0).column(0).has_offset_index  # page index written
    record = json.loads(open(api.hf_hub_download(repo, result.record_path, repo_type="dataset")).read())
    assert record["rows"] == 48 and len(record["contributions"]) == 4
    assert sum(s[1] for entry in record["written"].values() for s in entry["segments"]) == 48

    assert compact(repo, direct=True, token=hub.token).status == "nothing"


def test_compacting_again_folds_in_new_contributions_and_the_small_tail(hub, repo, tmp_path):
    compact(repo, direct=True, token=hub.token)
    contribute_and_merge(hub, repo, tmp_path, [rows(two_axes, 9, 400), rows(two_axes, 6, 500)])
    before = {None: loaded(repo), "religion": loaded(repo, "religion")}
    second = compact(repo, direct=True, token=hub.token)
    assert second.status == "compacted"
    assert any(layout.compacted_shard(p) for p in second.replaced)  # the small compacted tail, again
    _, files, _ = state(hub, repo)
    assert [p for p in files if layout.is_shard(p)] == sorted(second.written)  # one shard per axis
    assert loaded(repo) == before[None] and loaded(repo, "religion") == before["religion"]
    from vdata_hub.repo.card import card

    text = card(repo, token=hub.token)
    assert "63 rows from 6 contribution(s)" in text and "**63** rows" in text


def test_compaction_as_a_pull_request(hub, repo):
    before_state, before_rows = state(hub, repo), loaded(repo)
    result = compact(repo, token=hub.token)
    assert result.status == "opened" and result.pr_url
    assert state(hub, repo)[:2] == before_state[:2]  # main untouched until the PR is merged
    [skipped] = review(repo=repo, merge=True, token=hub.token)
    assert skipped.action == "skipped"  # review does not judge a compaction as a contribution
    HfApi(token=hub.token).merge_pull_request(repo, int(result.pr_url.rsplit("/", 1)[1]), repo_type="dataset")
    assert loaded(repo) == before_rows


@pytest.mark.parametrize("failure", ["upload", "download", "commit"])
def test_a_failed_request_changes_nothing_and_a_rerun_finishes(hub, repo, failure):
    before_state, before_rows = state(hub, repo), loaded(repo)
    if failure == "upload":
        hub.fail_next("PUT", r"^/lfs-upload/", 400, message="disk full")
    elif failure == "download":
        hub.fail_next("GET", r"/resolve/[0-9a-f]{40}/data/religion/contributed/", 404, code="EntryNotFound")
    else:
        hub.fail_next("POST", r"/commit/main", 500, count=20)
    try:
        with pytest.raises(HubError):
            compact(repo, direct=True, token=hub.token)
    finally:
        hub.clear_faults()
    assert state(hub, repo) == before_state  # no partial commit, no PR
    assert compact(repo, direct=True, token=hub.token).status == "compacted"
    assert loaded(repo) == before_rows


def test_a_main_that_moved_meanwhile_is_refused(hub, repo, tmp_path, monkeypatch):
    from vdata_hub.repo import compact as compact_module

    real = compact_module.rewrite

    def rewrite_while_someone_merges(*args, **kwargs):
        additions = real(*args, **kwargs)
        contribute_and_merge(hub, repo, tmp_path, [rows(two_axes, 5, 900)])
        return additions

    monkeypatch.setattr(compact_module, "rewrite", rewrite_while_someone_merges)
    with pytest.raises(HubError, match="changed while compacting"):
        compact(repo, direct=True, token=hub.token)
    monkeypatch.setattr(compact_module, "rewrite", real)
    _, files, _ = state(hub, repo)
    assert sum(1 for p in files if layout.contributed_shard(p)) == 10  # nothing compacted
    assert compact(repo, direct=True, token=hub.token).status == "compacted"


def test_review_merge_compacts_past_the_threshold(hub, tmp_path):
    name = f"org/compact-{uuid.uuid4().hex[:8]}"
    init_repo(name, token=hub.token)
    for start in (0, 100, 200):
        contribute(save_dataset(tmp_path / f"c{start}", rows(lambda i: "gender", 8, start)), repo=name,
                   token=hub.token)
    results = review(repo=name, merge=True, token=hub.token, compact_threshold=3)
    assert [r.action for r in results] == ["merged"] * 3
    _, files, _ = state(hub, name)
    assert not any(layout.contributed_shard(p) for p in files)
    assert [p for p in files if layout.is_shard(p)] and any(layout.is_compaction_record(p) for p in files)
    assert len(loaded(name)) == 24


def test_a_lost_answer_to_a_commit_that_landed_is_not_a_second_compaction(hub, repo):
    before = loaded(repo)
    commits = len(HfApi(token=hub.token).list_repo_commits(repo, repo_type="dataset"))
    hub.clear_requests()
    hub.fail_next("POST", r"/commit/main", 504, when="after")  # the commit lands, the answer is lost
    try:
        result = compact(repo, direct=True, token=hub.token)
    finally:
        hub.clear_faults()
    assert any(r["status"] == 504 for r in hub.requests())  # the fault did fire
    assert result.status == "compacted"
    assert len(HfApi(token=hub.token).list_repo_commits(repo, repo_type="dataset")) == commits + 1
    assert loaded(repo) == before


def test_cli_compact(hub, repo, capsys, monkeypatch):
    from vdata_hub.cli import main

    monkeypatch.setenv("HF_TOKEN", hub.token)
    main(["compact", "--repo", repo, "--dry-run"])
    assert "dry run: would compact 8 shard(s)" in capsys.readouterr().out
    main(["compact", "--repo", repo, "--direct", "--quiet"])
    assert "compacted 8 shard(s) (48 rows" in capsys.readouterr().out


def test_same_rows_sees_a_lost_a_duplicated_and_a_changed_row():
    import pyarrow as pa

    from vdata_hub.repo.compact import same_rows

    keys = pa.table({"id": ["a", "b", "c"], "text_hash": [1, 2, 3]})
    assert same_rows([keys.slice(2), keys.slice(0, 2)], [keys])
    assert not same_rows([keys], [keys.slice(0, 2)])  # lost
    assert not same_rows([keys], [keys, keys.slice(0, 1)])  # duplicated
    assert not same_rows([keys], [pa.table({"id": ["a", "b", "c"], "text_hash": [1, 3, 2]})])  # texts swapped
