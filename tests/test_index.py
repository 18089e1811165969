"""The duplicate index: its run format and search on their own, then against the Hub emulator
through the real clients: review --merge puts a PR's rows and their index run on main in one
commit, contribute and review stop on a stale index, reindex rebuilds it in one commit, and an
interrupted reindex or merge leaves main as it was."""

import random
import uuid

import numpy as np
import pytest
from huggingface_hub import HfApi

from tests.test_contribute import fast_backoff, save_dataset, state, two_axes  # noqa: F401 -- fixture reused
from tests.test_validation import make_row, story
from vdata_hub.errors import HubError, IndexStale, ValidationFailed
from vdata_hub.repo import dedup, index_format, layout
from vdata_hub.repo.card import init_repo
from vdata_hub.repo.contribute import contribute
from vdata_hub.repo.index import memory_index, open_index, repo_state
from vdata_hub.repo.reindex import merge_plan, reindex
from vdata_hub.repo.review import review


def random_rows(n, seed=1):
    rng = np.random.default_rng(seed)
    hashes = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64)
    return hashes, rng.integers(0, 0xFFFF, (n, dedup.SIGNATURE_BINS)).astype(np.uint16)


def test_a_run_holds_its_rows_and_the_same_rows_give_the_same_bytes():
    hashes, signatures = random_rows(5000)
    signatures[7] = dedup.EMPTY_BIN  # a text of fewer than five words: no signature
    data = index_format.build_run(hashes, signatures, ["b" * 16, "a" * 16])
    shuffled = np.random.default_rng(2).permutation(len(hashes))
    assert index_format.build_run(hashes[shuffled], signatures[shuffled], ["a" * 16, "b" * 16]) == data
    header = index_format.parse_header(data)
    front = index_format.parse_front(data[:index_format.front_end(header)])
    assert front.contributions == ["a" * 16, "b" * 16] and front.rows == 5000
    assert header["signed_rows"] == 4999
    assert (front.hashes == np.sort(hashes.view(np.uint64))).all()
    assert index_format.front_end(header) < 30 * len(hashes)  # what a reader downloads: under 30 bytes a row
    by_row = index_format.read_signatures(data, header)
    assert (by_row[np.searchsorted(front.hashes, hashes[3].view(np.uint64))] == signatures[3]).all()


def test_near_duplicates_of_main_are_found_exactly_at_the_threshold():
    """Every main row with an estimated similarity of at least 0.8 is found, whichever bins
    differ (a match shares at least 4 of the 16 bands), and nothing below it is reported."""
    hashes, signatures = random_rows(20_000)
    index = memory_index(hashes, signatures)
    rng = random.Random(3)
    queries, expected = [], []
    for _ in range(300):
        row = rng.randrange(len(hashes))
        changed = rng.randrange(0, 20)
        spread = [4 * (k % 16) + k // 16 for k in range(changed)]  # one per band first: fewest bands shared
        bins = rng.sample(range(64), changed) if rng.random() < 0.5 else spread
        query = signatures[row].copy()
        query[bins] ^= 1
        queries.append(query)
        expected.append(hashes[row] if 64 - changed >= 0.8 * 64 else 0)
    found = index.near_duplicates(np.array(queries), 0.8)
    assert found.tolist() == expected
    assert index.duplicates(np.r_[hashes[:5], [1, 2]]).tolist() == [True] * 5 + [False] * 2
    assert dedup.min_shared_bands(0.8) == 4


def test_unrelated_texts_cost_no_range_reads():
    """Band filters keep only a key's top bits: those must be uniform (MinHash bins are minimums,
    so raw keys are not), or unrelated rows would pass the filters and cost range reads."""
    from tests.test_validation import make_table
    from vdata_hub.repo.validation import validate

    main = validate(make_table([make_row(i) for i in range(3000)]))
    index = memory_index(main.accepted_hashes(), main.accepted_signatures())
    report = validate(make_table([make_row(10_000 + i) for i in range(1000)]), main=index)
    assert report.ok and index.requests == 0


def test_merge_plan_keeps_few_runs_per_tier(monkeypatch):
    import vdata_hub.repo.reindex as reindex_module

    monkeypatch.setattr(reindex_module, "MERGE_FANOUT", 4)
    runs = {f"r{i}": 1000 for i in range(4)} | {f"m{i}": 4000 for i in range(3)}
    assert merge_plan(runs) == [["r0", "r1", "r2", "r3"], ["<merged 1>", "m0", "m1", "m2"]]
    assert merge_plan({"a": 10, "b": 10, "c": 10}) == []


@pytest.fixture
def repo(hub):
    name = f"org/index-{uuid.uuid4().hex[:8]}"
    init_repo(name, token=hub.token)
    return name


def tree(hub, repo, revision="main"):
    api = HfApi(token=hub.token)
    return {e.path for e in api.list_repo_tree(repo, repo_type="dataset", revision=revision, recursive=True)
            if hasattr(e, "size")}


def runs_on(hub, repo, revision="main"):
    return sorted(path for path in tree(hub, repo, revision) if layout.index_run_name(path))


def unique_rows(n, salt):
    """Rows no other test has (the emulator keeps LFS objects across repos)."""
    return [make_row(i, text=story(i) + f" Told by {salt}.") for i in range(n)]


def test_the_merge_commit_adds_the_rows_and_their_index_run(hub, repo, tmp_path):
    result = contribute(save_dataset(tmp_path / "a", two_axes(30)), repo=repo, token=hub.token)
    assert result.main_index.rows == 0 and runs_on(hub, repo, "refs/pr/1") == []
    [reviewed] = review(repo=repo, merge=True, token=hub.token)
    assert reviewed.action == "merged"
    api = HfApi(token=hub.token)
    details = api.get_discussion_details(repo, 1, repo_type="dataset")
    merged = tree(hub, repo, details.merge_commit_oid)
    [run] = runs_on(hub, repo, details.merge_commit_oid)
    assert layout.manifest_path(result.contribution_id) in merged and run in merged
    parent = [c.commit_id for c in api.list_repo_commits(repo, repo_type="dataset")]
    before_merge = tree(hub, repo, parent[parent.index(details.merge_commit_oid) + 1])
    assert not any(path.startswith(("data/", "index/")) for path in before_merge)

    index = open_index(repo, api.repo_info(repo, repo_type="dataset").sha, hub.token)
    assert index.contributions == {result.contribution_id} and index.rows == 30
    near = make_row(1000, text=story(4) + " Indeed.")  # row 4 of the merged data, one word more
    second = contribute(save_dataset(tmp_path / "b", [near, make_row(1001)]), repo=repo, token=hub.token)
    assert second.report.rejected == {"near_duplicate_of_main": 1}
    main_id = second.report.matches["row-001000"]
    assert main_id in set(pull_ids(hub, repo)) and main_id in second.report.summary()


def pull_ids(hub, repo):
    from datasets import load_dataset

    return load_dataset(repo, split="train")["id"]


def website_merge(hub, repo, tmp_path, rows, name="w"):
    """A contribution merged on the Hub's website: no vdata review, so no index run."""
    result = contribute(save_dataset(tmp_path / name, rows), repo=repo, token=hub.token)
    num = int(result.pr_url.rsplit("/", 1)[1])
    HfApi(token=hub.token).merge_pull_request(repo, num, repo_type="dataset")
    return result


def test_a_website_merge_makes_the_index_stale_until_reindex(hub, repo, tmp_path, capsys, monkeypatch):
    from vdata_hub.cli import main

    merged = website_merge(hub, repo, tmp_path, unique_rows(20, "web"))
    more = save_dataset(tmp_path / "more", [make_row(50, text=story(3) + " Told by web. Yes."), make_row(51)])
    for attempt in (lambda: contribute(more, repo=repo, token=hub.token),
                    lambda: review(repo=repo, token=hub.token)):
        with pytest.raises(IndexStale, match=rf"no duplicate index: a maintainer must run `vdata reindex --repo {repo}`"):
            attempt()

    monkeypatch.setenv("HF_TOKEN", hub.token)
    main(["reindex", "--repo", repo, "--quiet"])
    [run] = runs_on(hub, repo)
    assert open_index(repo, state(hub, repo)[0], hub.token).contributions == {merged.contribution_id}
    main(["reindex", "--repo", repo])
    assert "already up to date" in capsys.readouterr().out and runs_on(hub, repo) == [run]

    result = contribute(more, repo=repo, token=hub.token)
    assert result.report.rejected == {"near_duplicate_of_main": 1}
    website_merge(hub, repo, tmp_path, [make_row(60), make_row(61)], name="w2")
    with pytest.raises(IndexStale, match=r"stale duplicate index \(1 contribution\(s\) on main are not in it\)"):
        review(repo=repo, token=hub.token)


@pytest.mark.parametrize("fault", ["shard read", "commit"])
def test_an_interrupted_reindex_leaves_main_as_it_was(hub, repo, tmp_path, fault):
    website_merge(hub, repo, tmp_path, unique_rows(40, f"reindex {fault}"))
    before = state(hub, repo)
    if fault == "shard read":
        hub.fail_next("GET", r"/resolve/.*data/", 500, count=20)  # beyond the client's retries
    else:
        hub.fail_next("POST", r"/commit/main", 500, count=1)
    with pytest.raises(HubError):
        reindex(repo=repo, token=hub.token)
    hub.clear_faults()
    assert state(hub, repo) == before and runs_on(hub, repo) == []
    result = reindex(repo=repo, token=hub.token)
    assert result.rows == 40 and result.update.commit and len(runs_on(hub, repo)) == 1


def test_an_interrupted_merge_leaves_main_as_it_was_and_a_rerun_merges(hub, repo, tmp_path):
    result = contribute(save_dataset(tmp_path / "a", unique_rows(12, "merge fault")), repo=repo, token=hub.token)
    before = state(hub, repo)
    hub.fail_next("POST", r"/discussions/1/merge", 500, count=1)
    with pytest.raises(HubError):
        review(repo=repo, merge=True, token=hub.token)
    hub.clear_faults()
    assert state(hub, repo) == before and runs_on(hub, repo) == []
    assert len(runs_on(hub, repo, "refs/pr/1")) == 1  # the run waits on the PR
    [reviewed] = review(repo=repo, merge=True, token=hub.token)
    assert reviewed.passed and reviewed.action == "merged", reviewed.summary()
    index = open_index(repo, state(hub, repo)[0], hub.token)
    assert index.contributions == {result.contribution_id} and len(index.runs) == 1


def test_runs_are_merged_in_tiers_and_still_find_every_row(hub, repo, tmp_path, monkeypatch):
    import vdata_hub.repo.reindex as reindex_module

    monkeypatch.setattr(reindex_module, "MERGE_FANOUT", 2)
    ids = []
    for part in range(4):
        rows = [make_row(100 * part + i) for i in range(8)]
        ids.append(contribute(save_dataset(tmp_path / f"p{part}", rows), repo=repo, token=hub.token).contribution_id)
        [reviewed] = review(repo=repo, merge=True, token=hub.token)
        assert reviewed.action == "merged", reviewed.summary()
    index = open_index(repo, state(hub, repo)[0], hub.token)
    assert len(index.runs) == 1 and index.rows == 32 and index.contributions == set(ids)
    again = save_dataset(tmp_path / "again", [make_row(1), make_row(301), make_row(999)])
    result = contribute(again, repo=repo, token=hub.token)
    assert result.report.rejected == {"duplicate_of_main": 2} and result.report.accepted == 1


def test_a_pr_that_brings_its_own_index_files_fails(hub, repo, tmp_path):
    from tests.test_review import hand_made_pr

    num = hand_made_pr(hub, repo, tmp_path, [make_row(1), make_row(2)],
                       extra={layout.index_run_path("0" * 16): b"VDXRUN01 not really"})
    [reviewed] = review(repo=repo, merge=True, token=hub.token)
    assert reviewed.num == num and not reviewed.passed
    assert "adds index files that are not the index of its rows" in " ".join(reviewed.problems)
    assert runs_on(hub, repo) == []


def test_state_of_a_new_repo_needs_no_index(hub, repo):
    sha = state(hub, repo)[0]
    assert repo_state(HfApi(token=hub.token), repo, sha).runs == {}
    assert open_index(repo, sha, hub.token).rows == 0


def test_contribute_reads_each_run_front_once_and_keeps_it(hub, repo, tmp_path, monkeypatch):
    contribute(save_dataset(tmp_path / "a", unique_rows(200, "cost")), repo=repo, token=hub.token)
    review(repo=repo, merge=True, token=hub.token)
    monkeypatch.setenv("VDATA_INDEX_CACHE", str(tmp_path / "fronts"))  # a contributor's own cache
    new = save_dataset(tmp_path / "b", [make_row(5000), unique_rows(200, "cost")[7]])
    cold = contribute(new, repo=repo, token=hub.token, dry_run=True)
    assert cold.main_index.requests == 1 and 0 < cold.main_index.bytes_read < cold.main_index.bytes_total
    warm = contribute(new, repo=repo, token=hub.token, dry_run=True)
    assert warm.main_index.requests == 0 and warm.main_index.bytes_read == 0
    assert warm.report.rejected == cold.report.rejected == {"duplicate_of_main": 1}
    monkeypatch.setenv("VDATA_INDEX_CACHE", "off")
    assert contribute(new, repo=repo, token=hub.token, dry_run=True).main_index.requests == 1


def test_an_interrupted_run_merge_leaves_a_complete_index(hub, repo, tmp_path, monkeypatch):
    """The run merge after a PR merge is its own commit: when it fails, main keeps every run (the
    index still covers every contribution), and the next merge merges them."""
    import vdata_hub.repo.reindex as reindex_module

    monkeypatch.setattr(reindex_module, "MERGE_FANOUT", 2)
    ids = []
    for part in range(3):
        rows = [make_row(500 + 100 * part + i) for i in range(6)]
        ids.append(contribute(save_dataset(tmp_path / f"p{part}", rows), repo=repo, token=hub.token).contribution_id)
        if part == 1:
            hub.fail_next("POST", r"/commit/main", 500, count=1)  # the run merge's commit
            notes = []
            results = review(repo=repo, merge=True, token=hub.token, progress=notes.append)
            hub.clear_faults()
            assert [r.action for r in results] == ["merged"]  # the merge stands; only the run merge failed
            assert any("merging index runs failed" in note for note in notes), notes
            index = open_index(repo, state(hub, repo)[0], hub.token)
            assert len(index.runs) == 2 and index.contributions == set(ids)
        else:
            review(repo=repo, merge=True, token=hub.token)
    index = open_index(repo, state(hub, repo)[0], hub.token)
    assert len(index.runs) == 1 and index.contributions == set(ids) and index.rows == 18
