"""Maintainer review of contribution pull requests: find what each PR adds relative to its base,
check the layout, run the same validation as `contribute` (plus duplicates and near duplicates
against the current main, through the duplicate index), comment the report on the PR, and merge
or close it. Merging first commits the run indexing the PR's rows to the PR's ref, so the merge
puts rows and index entries on main together (repo.reindex); after merges, full tiers of index
runs are merged and the card is refreshed.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vdata_hub import hub
from vdata_hub.config import resolve_repo
from vdata_hub.errors import HubError, ValidationFailed, VdataError
from vdata_hub.progress import ProgressArg, Reporter
from vdata_hub.repo import layout
from vdata_hub.repo.contribute import contribution_hash
from vdata_hub.repo.index import open_index
from vdata_hub.repo.reindex import contribution_run, merge_runs, same_content
from vdata_hub.repo.snapshot import snapshot
from vdata_hub.repo.validation import Rules, validate

REVIEW_RULES = Rules(pii="reject", check_hashes=True)


@dataclass
class PullRequestReview:
    """The outcome for one PR."""

    num: int
    title: str
    passed: bool
    problems: list = field(default_factory=list)
    report: object = None
    files: list = field(default_factory=list)
    action: str = "commented"  # commented | merged | closed | skipped
    hashes: np.ndarray | None = None
    run: tuple | None = None  # (path, bytes) of the index run of the PR's rows, once it passed
    run_on_pr: bool = False  # the PR already holds that run (an earlier review pushed it)

    def summary(self) -> str:
        verdict = "passed" if self.passed else "failed"
        detail = f": {'; '.join(self.problems)}" if self.problems else ""
        if self.report is not None and self.report.rejected:
            detail += f" (rejected rows: {dict(self.report.rejected)})"
        return f"#{self.num} {verdict}, {self.action}{detail}"


def review(repo: str | None = None, pr=None, merge: bool = False, close_invalid: bool = False,
           token: str | None = None, progress: ProgressArg = False,
           compact_threshold: int | None = None) -> list[PullRequestReview]:
    """Review every open PR of `repo` (or only `pr`); comment, then merge / close as asked. After
    merges, compact main when an axis holds `compact_threshold` contributed shards (default
    compact.DEFAULT_THRESHOLD; 0: never), then refresh the card. `progress`: a note per PR (see
    vdata_hub.progress)."""
    from vdata_hub.repo import compact
    from vdata_hub.repo.card import card

    repo = resolve_repo(repo)
    reporter = Reporter(progress)
    hf_api = hub.api(token)
    with hub.errors(repo, token, "listing pull requests"):
        if pr is not None:
            found = [hf_api.get_discussion_details(repo, int(pr), repo_type="dataset")]
            if not found[0].is_pull_request or found[0].status not in ("open", "draft"):
                raise HubError(f"#{pr} on {repo} is not an open pull request")
        else:
            found = sorted(hub.open_pull_requests(hf_api, repo, token), key=lambda d: d.num)
    index = open_index(repo, hub.main_sha(hf_api, repo, token), token, hf_api)
    results = []
    for discussion in found:
        if discussion.title.startswith(compact.TITLE_PREFIX):
            results.append(PullRequestReview(num=discussion.num, title=discussion.title, passed=False,
                                             action="skipped", problems=["a compaction, not a contribution: "
                                                                         "merge it on the Hub"]))
            continue
        reporter.note(f"reviewing #{discussion.num} {discussion.title} ...")
        result = review_one(hf_api, repo, discussion.num, discussion.title, index, token)
        _act(hf_api, repo, token, discussion, result, merge, close_invalid)
        if result.action == "merged":  # the merge put the PR's run in the index
            index = open_index(repo, hub.main_sha(hf_api, repo, token), token, hf_api, reuse=index)
        results.append(result)
    if any(result.action == "merged" for result in results):
        try:
            merge_runs(repo, token, hf_api, index)
        except VdataError as exc:  # every run is still there: the next merge merges them
            reporter.note(f"merging index runs failed ({exc}); the next review --merge merges them")
        threshold = compact.DEFAULT_THRESHOLD if compact_threshold is None else compact_threshold
        if compact.needs_compaction(snapshot(hf_api, repo, "main", token), threshold):
            try:
                done = compact.compact(repo, direct=True, token=token, progress=progress).summary()
            except VdataError as exc:  # the merges stand; compacting can be done on its own later
                done = f"compaction failed ({exc}); run `vdata compact --repo {repo} --direct`"
            reporter.note(done)
        card(repo, push=True, token=token)
    return results


def review_one(hf_api, repo: str, num: int, title: str, main, token: str | None) -> PullRequestReview:
    """Check one PR against `main` (a repo.index.MainIndex); nothing is posted here."""
    revision = f"refs/pr/{num}"
    result = PullRequestReview(num=num, title=title, passed=False)
    added, changed = pr_changes(hf_api, repo, revision, token, num)
    result.files = sorted(added)
    if changed:
        result.problems.append(f"changes or deletes existing files (the dataset is append-only): {', '.join(changed)}")
    shards = [path for path in added if layout.contributed_shard(path)]
    manifests = [path for path in added if layout.manifest_id(path)]
    index_files = [path for path in added if layout.is_index_file(path)]
    others = [path for path in added if path not in shards and path not in manifests and path not in index_files]
    if others:
        result.problems.append(f"adds files outside the dataset layout: {', '.join(others)}")
    ids = {layout.contributed_shard(p)[1] for p in shards} | {layout.manifest_id(p) for p in manifests}
    if not shards or len(manifests) != 1 or len(ids) != 1:
        result.problems.append(f"expected Parquet shards {layout.shard_path('<axis>', '<id>')} and one manifest "
                               f"{layout.manifest_path('<id>')}, all with the same contribution id")
    if not shards:
        return result
    with tempfile.TemporaryDirectory(prefix="vdata-review-") as tmp, hub.errors(repo, token, f"downloading #{num}"):
        local = {path: hf_api.hf_hub_download(repo, path, repo_type="dataset", revision=revision, local_dir=tmp)
                 for path in sorted(shards + manifests)}
        try:
            report = validate([local[p] for p in sorted(shards)], main=main, rules=REVIEW_RULES)
        except ValidationFailed as exc:
            result.problems.append(str(exc))
            return result
        result.report = report
        result.problems += _consistency(local, sorted(shards), manifests, report)
    result.hashes = report.accepted_hashes()
    if report.ok and len(ids) == 1:
        result.run = contribution_run(report, next(iter(ids)), REVIEW_RULES)
        result.run_on_pr = index_files == [result.run[0]] and same_content(added[result.run[0]], result.run[1])
    if index_files and not result.run_on_pr:
        result.problems.append(f"adds index files that are not the index of its rows: {', '.join(index_files)}")
    result.passed = not result.problems and report.ok
    return result


def _consistency(local: dict, shards: list, manifests: list, report) -> list:
    """Shard folders match the rows' bias_axis; the id and the manifest match the rows."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    problems = []
    for path in shards:
        axis = layout.shard_axis(path)
        values = sorted(pc.unique(pq.read_table(local[path], columns=["bias_axis"]).column(0)).to_pylist())
        if values != [axis]:
            problems.append(f"{path} holds rows of bias_axis {values}, expected only {axis!r}")
    if report.ok:
        expected = layout.contributed_shard(shards[0])[1]
        if contribution_hash(report.accepted_hashes()) != expected:
            problems.append(f"contribution id {expected} does not match its rows")
    for path in manifests:
        try:
            manifest = json.loads(Path(local[path]).read_text(encoding="utf-8"))
        except ValueError:
            problems.append(f"{path} is not valid JSON")
            continue
        if manifest.get("rows") != report.total:
            problems.append(f"{path} says {manifest.get('rows')} rows, the shards hold {report.total}")
        elif "balance" in manifest and not _same_balance(manifest["balance"], [local[p] for p in shards]):
            problems.append(f"{path}: its balance counts do not match the rows (the card sums them)")
    return problems


def _same_balance(claimed, paths: list) -> bool:
    """Whether the balance counts a manifest claims are those of the rows of the local shards."""
    import pyarrow.parquet as pq

    from vdata_hub.repo import balance
    from vdata_hub.repo.stats import count_rows

    counted = count_rows(batch for path in paths for batch in pq.ParquetFile(path).iter_batches(batch_size=8192))
    try:
        return balance.pack(claimed) == balance.pack(counted)
    except (AttributeError, KeyError, TypeError, ValueError):  # not even shaped like balance counts
        return False


def pr_changes(hf_api, repo: str, revision: str, token: str | None, num: int | None = None) -> tuple[dict, list]:
    """Files the PR adds ({path: blob id}) and paths it changes or deletes, relative to the commit
    of main it started from (so later merges into main are not mistaken for the PR's changes).
    Only the folders whose tree ids differ are listed, and only the PR's newest commits, so the
    cost follows the PR's size, not the repo's."""
    with hub.errors(repo, token, f"comparing {revision} with main"):
        base = _pr_base(hf_api, repo, revision, num, token)
        if base is None:
            return _files(hf_api, repo, revision, None), []
        added, changed = {}, []
        folders = [None]
        while folders:
            folder = folders.pop()
            before, after = _entries(hf_api, repo, base, folder), _entries(hf_api, repo, revision, folder)
            for path, (kind, oid) in after.items():
                if path not in before:
                    added.update(_files(hf_api, repo, revision, path) if kind == "folder" else {path: oid})
                elif before[path] != (kind, oid):
                    if kind == before[path][0] == "folder":
                        folders.append(path)
                    else:
                        changed.append(path)
            for path, (kind, _) in before.items():
                if path not in after:
                    changed += sorted(_files(hf_api, repo, base, path)) if kind == "folder" else [path]
    return added, sorted(changed)


def _pr_base(hf_api, repo: str, revision: str, num: int | None, token: str | None) -> str | None:
    """The commit of main the PR started from: the newest commit of its history that the PR did not
    add (the PR's commits are its `commit` events)."""
    if num is None:
        return _pr_base_from_main(hf_api, repo, revision)
    details = hf_api.get_discussion_details(repo, num, repo_type="dataset")
    own = {event.oid for event in details.events if event.type == "commit"}
    if not own:
        return _pr_base_from_main(hf_api, repo, revision)
    for commit in hub.commits(repo, revision, token):
        if commit not in own:
            return commit
    return None


def _pr_base_from_main(hf_api, repo: str, revision: str) -> str | None:
    main_commits = {c.commit_id for c in hf_api.list_repo_commits(repo, repo_type="dataset", revision="main")}
    pr_commits = [c.commit_id for c in hf_api.list_repo_commits(repo, repo_type="dataset", revision=revision)]
    return next((c for c in pr_commits if c in main_commits), None)


def _entries(hf_api, repo: str, revision: str, folder: str | None) -> dict:
    """{path: ("folder" | "file", tree id or content id)} of one folder's direct entries."""
    entries = {}
    for entry in hf_api.list_repo_tree(repo, path_in_repo=folder, repo_type="dataset", revision=revision):
        if hasattr(entry, "blob_id"):
            entries[entry.path] = ("file", entry.lfs.sha256 if getattr(entry, "lfs", None) else entry.blob_id)
        else:
            entries[entry.path] = ("folder", entry.tree_id)
    return entries


def _files(hf_api, repo: str, revision: str, folder: str | None) -> dict:
    """{path: content id} of every file under a folder (None: the whole repo)."""
    return {entry.path: (entry.lfs.sha256 if getattr(entry, "lfs", None) else entry.blob_id)
            for entry in hf_api.list_repo_tree(repo, path_in_repo=folder, recursive=True, repo_type="dataset",
                                               revision=revision)
            if hasattr(entry, "blob_id")}


def _act(hf_api, repo: str, token: str | None, discussion, result: PullRequestReview, merge: bool,
         close_invalid: bool) -> None:
    """Comment the report; merge a passing PR or close a failing one when asked."""
    from vdata_hub.repo.card import render_template

    report = result.report.as_dict() if result.report is not None else {
        "checked": 0, "accepted": 0, "rejected": {}, "scrubbed": {}, "flagged": {}}
    examples = {reason: result.report.example_ids(reason) for reason in (result.report.rejected_ids if result.report else [])}
    comment = render_template("review_comment.md.j2", passed=result.passed, problems=result.problems,
                              report=report, examples=examples, files=result.files)
    num = discussion.num
    with hub.errors(repo, token, f"updating #{num}"):
        hf_api.comment_discussion(repo, num, comment, repo_type="dataset")
        if result.passed and merge:
            if discussion.status == "draft":
                hf_api.change_discussion_status(repo, num, "open", repo_type="dataset")
            if not result.run_on_pr:
                _push_run(hf_api, repo, num, result.run)
            hub.with_retries(lambda: hf_api.merge_pull_request(repo, num, comment="Merged by vdata review.",
                                                               repo_type="dataset"))
            result.action = "merged"
        elif not result.passed and close_invalid:
            reasons = "; ".join(result.problems) or ", ".join(
                f"{reason}: {count}" for reason, count in result.report.rejected.most_common())
            hf_api.change_discussion_status(repo, num, "closed", comment=f"Closed by vdata review: {reasons}",
                                            repo_type="dataset")
            result.action = "closed"


def _push_run(hf_api, repo: str, num: int, run: tuple) -> None:
    """Commit the index run of the PR's rows to the PR, so that merging it adds both."""
    from huggingface_hub import CommitOperationAdd

    path, data = run
    hub.with_retries(lambda: hf_api.create_commit(
        repo, [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)], repo_type="dataset",
        revision=f"refs/pr/{num}", commit_message="Index the contribution's rows for duplicate checks"))
