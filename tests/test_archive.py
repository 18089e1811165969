"""`vdata archive` against the Hub emulator with the real clients: main + archive hold every row
exactly once (compared by id and text hash), the tag still loads the state before the move, both
cards say what lives where, pull and stats reach archived rows when asked; a request failing at
any step leaves every row in main or the archive (or both), and a rerun finishes the move."""

import uuid
from datetime import datetime, timezone

import pytest
from huggingface_hub import HfApi

from tests.test_compact import contribute_and_merge, loaded, rows, salt, state  # noqa: F401 -- fixture reused
from tests.test_contribute import fast_backoff  # noqa: F401 -- fixture reused
from vdata_hub.errors import HubError, VdataError
from vdata_hub.repo import layout
from vdata_hub.repo.archive import archive
from vdata_hub.repo.card import card, init_repo
from vdata_hub.repo.compact import compact


class Frozen(datetime):
    """datetime whose now() is a chosen day: manifests written "in" that month."""

    day = datetime(2026, 1, 15, tzinfo=timezone.utc)

    @classmethod
    def now(cls, tz=None):
        return cls.day


def contribute_on(hub, repo, tmp_path, day, batches):
    from vdata_hub.repo import contribute as contribute_module

    Frozen.day = day
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(contribute_module, "datetime", Frozen)
        contribute_and_merge(hub, repo, tmp_path, batches)


def gender_or_religion(i):
    return "gender" if i % 2 else "religion"


@pytest.fixture
def repos(hub, tmp_path):
    """A repo with two old contributions (2025-11) and two recent ones (2026-02), and an archive name."""
    name = f"org/arch-{uuid.uuid4().hex[:8]}"
    init_repo(name, token=hub.token)
    old = datetime(2025, 11, 3, tzinfo=timezone.utc)
    recent = datetime(2026, 2, 10, tzinfo=timezone.utc)
    contribute_on(hub, name, tmp_path, old, [rows(gender_or_religion, 10, s) for s in (0, 100)])
    contribute_on(hub, name, tmp_path, recent, [rows(gender_or_religion, 10, s) for s in (200, 300)])
    return name, f"org/arch-{uuid.uuid4().hex[:8]}-archive"


def everything(repo, archive_repo):
    """Rows of main and of the archive together (duplicates kept, so a row in both shows twice)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        archived = loaded(archive_repo)
    except (RepositoryNotFoundError, FileNotFoundError, ValueError):
        archived = []
    return sorted(loaded(repo) + archived)


def test_archive_by_axis_moves_rows_and_keeps_them_reachable(hub, repos, tmp_path):
    from vdata_hub.query.pull import pull
    from vdata_hub.repo.stats import stats

    repo, to = repos
    before = loaded(repo)
    religion = loaded(repo, "religion")
    result = archive(repo, to=to, axis="religion", token=hub.token)
    assert result.status == "archived" and result.rows == len(religion) == 20
    assert loaded(to) == religion and loaded(to, "religion") == religion
    assert sorted(loaded(repo) + loaded(to)) == before  # every row exactly once
    _, files, _ = state(hub, repo)
    assert not any(layout.shard_axis(p) == "religion" for p in files) and result.record_path in files
    assert len(HfApi(token=hub.token).list_repo_commits(to, repo_type="dataset")) == 2  # creation + one move

    from datasets import load_dataset

    tagged = load_dataset(repo, split="train", revision=result.tag, download_mode="force_redownload")
    assert sorted(zip(tagged["id"], tagged["text_hash"])) == before

    main_card = card(repo, token=hub.token)
    assert f"[{to}]" in main_card and "20 were moved to an archive repo" in main_card and result.tag in main_card
    archive_card = open(HfApi(token=hub.token).hf_hub_download(to, "README.md", repo_type="dataset")).read()
    assert f"# Archive of {repo}" in archive_card and "config_name: religion" in archive_card

    out = tmp_path / "all.jsonl"
    assert pull(str(out), repo=repo, token=hub.token).rows == 20
    assert pull(str(out), repo=repo, token=hub.token, include_archive=True).rows == 40
    religion_only = pull(str(out), repo=repo, config="religion", token=hub.token, include_archive=True)
    assert religion_only.rows == 20
    assert stats(repo, token=hub.token).rows == 20
    assert stats(repo, token=hub.token, include_archive=True).rows == 40

    assert archive(repo, to=to, axis="religion", token=hub.token).status == "nothing"


def test_archive_before_a_date_after_compaction(hub, repos):
    repo, to = repos
    before = loaded(repo)
    with pytest.raises(VdataError, match="choose what to archive"):
        archive(repo, to=to, token=hub.token)
    compact(repo, direct=True, token=hub.token)  # one compacted shard per axis, 2025-11 to 2026-02
    assert archive(repo, to=to, before="2026-01-01", token=hub.token).status == "nothing"
    result = archive(repo, to=to, before="2026-03-01", axis="gender", token=hub.token)
    assert result.status == "archived" and list(result.shards) == [
        p for p in state(hub, result.archive_repo)[1] if layout.is_shard(p)]
    assert sorted(loaded(repo) + loaded(to)) == before


def test_archive_by_contribution_refuses_to_split_a_compacted_shard(hub, repos):
    repo, to = repos
    api = HfApi(token=hub.token)
    files = state(hub, repo)[1]
    first = sorted(layout.manifest_id(p) for p in files if layout.manifest_id(p))[0]
    result = archive(repo, to=to, contributions=first, token=hub.token)
    assert set(result.shards) == {p for p in files if layout.contributed_shard(p) and first in p}
    compact(repo, direct=True, token=hub.token)
    second = sorted(layout.manifest_id(p) for p in files if layout.manifest_id(p))[1]
    with pytest.raises(VdataError, match="also holds rows of contribution"):
        archive(repo, to=to, contributions=second, token=hub.token)
    assert api.repo_info(repo, repo_type="dataset").sha == state(hub, repo)[0]


@pytest.mark.parametrize("step", ["upload", "archive_commit", "tag", "main_commit"])
def test_interrupted_move_loses_nothing_and_a_rerun_finishes(hub, repos, step):
    repo, to = repos
    before, before_main = loaded(repo), state(hub, repo)
    faults = {
        # (the emulator shares stored objects across repos: the batch call, not a PUT, is what fails)
        "upload": ("POST", rf"/datasets/{to}\.git/info/lfs/objects/batch", 400),
        "archive_commit": ("POST", rf"/api/datasets/{to}/commit/", 500),
        "tag": ("POST", rf"/api/datasets/{repo}/tag/", 500),
        "main_commit": ("POST", rf"/api/datasets/{repo}/commit/main", 500),
    }
    method, path, status = faults[step]
    hub.fail_next(method, path, status, count=20)
    try:
        with pytest.raises(HubError):
            archive(repo, to=to, axis="religion", token=hub.token)
    finally:
        hub.clear_faults()
    assert state(hub, repo)[:2] == before_main[:2]  # main untouched: every row still there
    result = archive(repo, to=to, axis="religion", token=hub.token)
    assert result.status == "archived"
    if step in ("tag", "main_commit"):
        assert "the archive already held the shards" in result.steps  # the archive commit was not redone
    assert sorted(loaded(repo) + loaded(to)) == before


def test_rerun_after_main_was_compacted_meanwhile_leaves_no_duplicate_in_the_archive(hub, repos):
    repo, to = repos
    before = loaded(repo)
    hub.fail_next("POST", rf"/api/datasets/{repo}/commit/main", 500, count=20)
    try:
        with pytest.raises(HubError):
            archive(repo, to=to, axis="religion", token=hub.token)
    finally:
        hub.clear_faults()
    assert everything(repo, to) == sorted(before + loaded(repo, "religion"))  # in both, never in neither
    compact(repo, direct=True, token=hub.token)  # the shards the move chose are gone
    result = archive(repo, to=to, axis="religion", token=hub.token)
    assert result.status == "archived"
    assert everything(repo, to) == before  # the interrupted move's copies were removed
    archived = [p for p in state(hub, to)[1] if layout.is_shard(p)]
    assert archived == sorted(result.shards) and all(layout.compacted_shard(p) for p in archived)


@pytest.mark.parametrize("step", ["archive_commit", "main_commit"])
def test_a_lost_answer_to_a_commit_that_landed_is_detected(hub, repos, step):
    repo, to = repos
    before = loaded(repo)
    target = to if step == "archive_commit" else repo
    hub.clear_requests()
    hub.fail_next("POST", rf"/api/datasets/{target}/commit/", 504, when="after")
    try:
        result = archive(repo, to=to, axis="religion", token=hub.token)
    finally:
        hub.clear_faults()
    assert any(r["status"] == 504 for r in hub.requests())  # the fault did fire
    assert result.status == "archived"
    assert sorted(loaded(repo) + loaded(to)) == before
    assert len(HfApi(token=hub.token).list_repo_commits(to, repo_type="dataset")) == 2  # creation + one move


def test_cli_archive(hub, repos, capsys, monkeypatch):
    from vdata_hub.cli import main

    repo, to = repos
    monkeypatch.setenv("HF_TOKEN", hub.token)
    main(["archive", "--repo", repo, "--to", to, "--axis", "religion", "--dry-run"])
    assert "dry run: would move 4 shard(s)" in capsys.readouterr().out
    main(["archive", "--repo", repo, "--to", to, "--before", "2025-12-01", "--quiet"])
    printed = capsys.readouterr().out
    assert "moved 4 shard(s) (20 rows)" in printed and "tagged archive-" in printed
    with pytest.raises(SystemExit):
        main(["archive", "--repo", repo, "--to", to, "--before", "last week"])
    assert "expected a date" in capsys.readouterr().err
