"""Maintainer review against the emulator: PRs made by the tool pass and merge; PRs made by hand
that break the layout, carry personal data or duplicate main fail, get a comment, and are closed."""

import json
import uuid

import pyarrow.parquet as pq
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from tests.test_contribute import fast_backoff, save_dataset, two_axes  # noqa: F401 -- fixture reused
from tests.test_validation import make_row, story
from vdata_hub.repo.card import init_repo
from vdata_hub.repo.contribute import contribute, contribution_hash
from vdata_hub.generation.records import records_to_table
from vdata_hub.repo.review import review


@pytest.fixture
def repo(hub):
    name = f"org/review-{uuid.uuid4().hex[:8]}"
    init_repo(name, token=hub.token)
    return name


def hand_made_pr(hub, repo, tmp_path, rows, extra=None, token=None, manifest=None):
    """A PR opened without vdata contribute: one shard, a manifest, and optional extra files (ids
    made from the text hashes, as contribute makes them)."""
    table = records_to_table([{**row, "id": ""} for row in rows])
    cid = contribution_hash(table.column("text_hash").to_numpy())
    shard = tmp_path / f"{cid}.parquet"
    pq.write_table(table, shard)
    manifest = {"rows": len(rows), **(manifest or {})}
    operations = [CommitOperationAdd(f"data/gender/{cid}.parquet", str(shard)),
                  CommitOperationAdd(f"contributions/{cid}.json", json.dumps(manifest).encode())]
    operations += [CommitOperationAdd(path, content) for path, content in (extra or {}).items()]
    info = HfApi(token=token or hub.token).create_commit(repo, operations, commit_message="hand-made",
                                                         repo_type="dataset", create_pr=True)
    return info.pr_num


def comments(hub, repo, num):
    details = HfApi(token=hub.token).get_discussion_details(repo, num, repo_type="dataset")
    return details.status, [e.content for e in details.events if e.type == "comment"]


def test_overlapping_prs_merge_once_and_the_card_follows(hub, repo, tmp_path):
    first = contribute(save_dataset(tmp_path / "a", two_axes(20)), repo=repo, token=hub.token)
    second = contribute(save_dataset(tmp_path / "b", two_axes(20, start=10)), repo=repo, token=hub.token)
    assert first.pr_url != second.pr_url
    results = review(repo=repo, merge=True, close_invalid=True, token=hub.token)
    assert [(r.num, r.passed, r.action) for r in results] == [(1, True, "merged"), (2, False, "closed")]
    assert results[1].report.rejected == {"duplicate_of_main": 10}
    status, texts = comments(hub, repo, 2)
    assert status == "closed" and any("duplicate_of_main: 10" in t for t in texts)
    api = HfApi(token=hub.token)
    readme = open(api.hf_hub_download(repo, "README.md", repo_type="dataset")).read()
    assert "20 rows from 1 contribution" in readme and "alice (20 rows)" in readme
    assert "## Balance statistics" in readme and "**20** rows (0 counterfactual augmentations)" in readme


def test_hand_made_prs_that_break_the_rules_fail(hub, repo, tmp_path):
    layout = hand_made_pr(hub, repo, tmp_path, [make_row(1), make_row(2)],
                          extra={"README.md": b"---\nlicense: mit\n---\nmine now\n", "run.sh": b"echo hi\n"})
    pii = hand_made_pr(hub, repo, tmp_path, [make_row(3, text=story(3) + " Mail me: bob@example.org"), make_row(4)],
                       token=hub.bob_token)
    axis = hand_made_pr(hub, repo, tmp_path, [make_row(5, bias_axis="religion"), make_row(6)])
    results = {r.num: r for r in review(repo=repo, merge=True, token=hub.token)}
    assert not any(r.passed for r in results.values())
    assert "changes or deletes existing files" in " ".join(results[layout].problems)
    assert "outside the dataset layout: run.sh" in " ".join(results[layout].problems)
    assert results[pii].report.rejected == {"personal_data": 1}
    assert "bias_axis ['gender', 'religion']" in " ".join(results[axis].problems)
    for num in (layout, pii, axis):
        status, texts = comments(hub, repo, num)
        assert status in ("open", "draft") and any("vdata review: failed" in t for t in texts)
    main = HfApi(token=hub.token).list_repo_files(repo, repo_type="dataset")
    assert not any(path.startswith("data/") for path in main)


def test_review_single_pr_without_merge_only_comments(hub, repo, tmp_path):
    result = contribute(save_dataset(tmp_path / "a", two_axes(9)), repo=repo, token=hub.token)
    num = int(result.pr_url.rsplit("/", 1)[1])
    [reviewed] = review(repo=repo, pr=num, token=hub.token)
    assert reviewed.passed and reviewed.action == "commented"
    status, texts = comments(hub, repo, num)
    assert status in ("open", "draft") and any("can be merged" in t for t in texts)


def test_a_manifest_whose_balance_counts_lie_fails(hub, repo, tmp_path):
    from vdata_hub.repo.balance import count_batch

    rows = [make_row(11), make_row(12)]
    honest = {**count_batch(records_to_table(rows)), "duplicates": 0}
    inflated = {**honest, "mentions": {"gender": {"a woman": 1000}}}
    good = hand_made_pr(hub, repo, tmp_path, rows, manifest={"balance": honest})
    bad = hand_made_pr(hub, repo, tmp_path, [make_row(13), make_row(14)], manifest={"balance": inflated})
    results = {r.num: r for r in review(repo=repo, token=hub.token)}
    assert results[good].passed, results[good].summary()
    assert "balance counts do not match the rows" in " ".join(results[bad].problems)


def test_the_layout_check_lists_only_the_folders_the_pr_changes(hub, repo, tmp_path):
    """Review finds a PR's files from the folders whose tree ids differ and the PR's newest commits,
    never from the whole tree or main's whole history (thousands of files and merges at scale)."""
    from urllib.parse import unquote

    for part in range(2):
        contribute(save_dataset(tmp_path / f"m{part}", two_axes(6, start=100 * part)), repo=repo, token=hub.token)
        review(repo=repo, merge=True, token=hub.token)
    result = contribute(save_dataset(tmp_path / "new", two_axes(6, start=900)), repo=repo, token=hub.token)
    num = int(result.pr_url.rsplit("/", 1)[1])
    hub.clear_requests()
    [reviewed] = review(repo=repo, pr=num, token=hub.token)
    assert reviewed.passed and sorted(reviewed.files) == sorted(result.files)
    paths = [unquote(request["path"]) for request in hub.requests()]
    assert any("/tree/" in path for path in paths) and not any("/commits/main" in path for path in paths)
    whole_trees = [path for path in paths if "recursive=true" in path and "/tree/" in path
                   and path.split("?")[0].rstrip("/").endswith((f"/tree/refs/pr/{num}", "/tree/main"))]
    assert whole_trees == []
