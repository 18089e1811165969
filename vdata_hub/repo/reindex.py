"""Writing the duplicate index: the run of a merged contribution, merging runs when there are
too many, and rebuilding the whole index from the data (`vdata reindex`).

The index grows like an LSM tree. `review --merge` commits the run of a PR's rows to the PR's
ref just before merging it, so the merge commit that puts the rows on main also puts their run
in the index (a new file: it cannot conflict with anything). Runs are grouped in tiers by size
(a tier per factor of MERGE_FANOUT in rows); when a tier holds MERGE_FANOUT runs they are merged
into one, in one commit that adds the new run and deletes the old ones, so index/ keeps a few
dozen files for any number of contributions. `reindex` reads the text of every shard at one
commit, builds one run covering every contribution there, and replaces the whole index in one
commit (parent: that commit), so an interrupted rebuild leaves main as it was.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from vdata_hub import hub
from vdata_hub.config import resolve_repo
from vdata_hub.errors import HubError
from vdata_hub.progress import ProgressArg, Reporter
from vdata_hub.repo import index_format, layout
from vdata_hub.repo.index import MainIndex, open_index, repo_state
from vdata_hub.repo.row_checks import Rules

MERGE_FANOUT = 8  # runs per tier before they are merged into one
READ_BATCH_ROWS = 8192


def contribution_run(report, contribution_id: str, rules: Rules | None = None) -> tuple[str, bytes]:
    """(path in the repo, bytes) of the run indexing a validated contribution's accepted rows."""
    rules = rules or Rules()
    data = index_format.build_run(report.accepted_hashes(), report.accepted_signatures(), [contribution_id],
                                  rules.shingle_words)
    return layout.index_run_path(index_format.run_name(data)), data


def same_content(oid: str | None, data: bytes) -> bool:
    """Whether a tree entry's id (LFS sha256 or git blob sha1) is that of these bytes."""
    import hashlib

    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return oid in (hashlib.sha256(data).hexdigest(), blob)


# --- merging runs --------------------------------------------------------------------------------

def tier(rows: int) -> int:
    return int(math.log(max(rows, 1), MERGE_FANOUT) + 1e-9)


def merge_plan(run_rows: dict) -> list[list[str]]:
    """Groups of run paths to merge ({path: rows} in), tier by tier, cascading: a merged group
    counts as one run of the next tier up."""
    runs = dict(run_rows)
    groups = []
    while True:
        tiers: dict = {}
        for path, rows in sorted(runs.items()):
            tiers.setdefault(tier(rows), []).append(path)
        full = [paths for _, paths in sorted(tiers.items()) if len(paths) >= MERGE_FANOUT]
        if not full:
            return groups
        group = full[0]
        groups.append(group)
        merged = f"<merged {len(groups)}>"
        runs[merged] = sum(runs.pop(path) for path in group)


@dataclass
class IndexUpdate:
    """What an index commit did."""

    added: dict = field(default_factory=dict)  # path -> rows
    deleted: list = field(default_factory=list)
    commit: str | None = None


def merge_runs(repo: str, token: str | None = None, hf_api=None, index: MainIndex | None = None) -> IndexUpdate:
    """Merge full tiers of runs on main, in one commit (none when no tier is full)."""
    hf_api = hf_api or hub.api(token)
    base = hub.main_sha(hf_api, repo, token)
    index = open_index(repo, base, token, hf_api, reuse=index, check=False)  # merging runs keeps what they cover
    by_path = {run.path: run for run in index.runs}
    groups = merge_plan({path: run.front.rows for path, run in by_path.items()})
    update = IndexUpdate()
    if not groups:
        return update
    built: dict = {}  # placeholder name -> (hashes, signatures, contributions)
    for number, group in enumerate(groups, 1):
        parts = [built.pop(path) if path in built else _rows_of(by_path[path]) for path in group]
        built[f"<merged {number}>"] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                                       sorted({c for p in parts for c in p[2]}))
        update.deleted += [path for path in group if path in by_path]
    operations = {}
    for hashes, signatures, contributions in built.values():
        data = index_format.build_run(hashes, signatures, contributions, _shingle_words(index))
        path = layout.index_run_path(index_format.run_name(data))
        operations[path] = data
        update.added[path] = len(hashes)
    update.commit = _commit(hf_api, repo, token, base, operations, update.deleted,
                            f"Merge {len(update.deleted)} runs of the duplicate index")
    return update


def _rows_of(run) -> tuple[np.ndarray, np.ndarray, list]:
    """(text hashes, signatures, contributions) of a whole run: its front is known, the
    signatures section is read."""
    start, length = run.front.header["sections"]["signatures"]
    signatures = np.frombuffer(run.fetch(start, start + length), "<u2").reshape(-1, index_format.SIGNATURE_BINS)
    return run.front.hashes.view(np.int64), signatures.astype(np.uint16), list(run.front.contributions)


def _shingle_words(index: MainIndex) -> int:
    return index.runs[0].front.header["shingle_words"] if index.runs else index_format.SHINGLE_WORDS


def _commit(hf_api, repo: str, token: str | None, base: str, added: dict, deleted: list, message: str,
            revision: str = "main") -> str:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    operations = [CommitOperationDelete(path_in_repo=path) for path in deleted]
    operations += [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in added.items()]
    with hub.errors(repo, token, "committing the duplicate index"):
        info = hub.with_retries(lambda: hf_api.create_commit(
            repo, operations, commit_message=message, repo_type="dataset", revision=revision, parent_commit=base))
    return info.oid


# --- rebuilding from the data --------------------------------------------------------------------

@dataclass
class ReindexResult:
    """What `reindex` did; `summary()` is what the CLI prints."""

    repo: str
    rows: int = 0
    contributions: int = 0
    shards: int = 0
    bytes_read: int = 0
    update: IndexUpdate | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        head = (f"indexed {self.rows:,} rows of {self.contributions:,} contribution(s) from {self.shards} shard(s) "
                f"of {self.repo} in {self.seconds:.1f} s")
        if self.update is None or self.update.commit is None:
            return head + "; the index was already up to date"
        return head + f"; replaced {len(self.update.deleted)} index file(s) in commit {self.update.commit[:12]}"


def reindex(repo: str | None = None, token: str | None = None, progress: ProgressArg = False,
            rules: Rules | None = None) -> ReindexResult:
    """Rebuild `repo`'s duplicate index from the text of every shard on main, in one commit.
    `progress`: a bar over the shards' bytes (see vdata_hub.progress)."""
    from huggingface_hub import HfFileSystem

    repo = resolve_repo(repo)
    reporter = Reporter(progress)
    rules = rules or Rules()
    hf_api = hub.api(token)
    clock = time.perf_counter()
    base = hub.main_sha(hf_api, repo, token)
    state = repo_state(hf_api, repo, base, token)
    with hub.errors(repo, token, "listing the data"):
        shards = [(entry.path, entry.size) for entry in hf_api.list_repo_tree(
            repo, path_in_repo=layout.DATA_DIR, recursive=True, repo_type="dataset", revision=base)
            if getattr(entry, "size", None) is not None and layout.is_shard(entry.path)] if state.has_data else []
    result = ReindexResult(repo=repo, contributions=len(state.contributions), shards=len(shards))
    fs = HfFileSystem(token=token, skip_instance_cache=True)
    hashes, signatures = [], []
    reporter.note(f"reading the text of {len(shards)} shard(s) on main ...")
    with hub.errors(repo, token, "reading the data"), reporter.bar(total=sum(size for _, size in shards), unit="B",
                                                                   unit_scale=True) as bar:
        for path, size in shards:
            shard_hashes, shard_signatures = _shard_rows(fs, repo, base, path, rules.shingle_words)
            hashes.append(shard_hashes)
            signatures.append(shard_signatures)
            result.bytes_read += size
            bar.update(size)
    hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.int64)
    parts = signatures
    signatures = np.concatenate(parts) if parts else np.zeros((0, index_format.SIGNATURE_BINS), np.uint16)
    del parts  # at most two copies of the signatures at once (here, and sorted in build_run)
    result.rows = len(hashes)
    data = index_format.build_run(hashes, signatures, sorted(state.contributions), rules.shingle_words)
    path = layout.index_run_path(index_format.run_name(data))
    current = sorted(state.runs) + state.other_index_files
    result.update = IndexUpdate()
    if current != [path]:
        result.update = IndexUpdate(added={path: len(hashes)}, deleted=current)
        result.update.commit = _commit(hf_api, repo, token, base, {path: data}, current,
                                       f"Rebuild the duplicate index ({len(hashes):,} rows)")
    result.seconds = time.perf_counter() - clock
    return result


def _shard_rows(fs, repo: str, revision: str, path: str, shingle_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Text hashes and signatures of a shard's rows, from its text column."""
    import pyarrow.parquet as pq

    from vdata_hub.repo.dedup import text_signatures

    hashes, signatures, cache = [], [], {}
    with fs.open(f"datasets/{repo}@{revision}/{path}", "rb") as handle:
        parquet = pq.ParquetFile(handle)
        if "text" not in parquet.schema_arrow.names:
            raise HubError(f"{path} on {repo} has no text column; it is not a vdata shard")
        for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=["text"]):
            batch_hashes, batch_signatures = text_signatures(batch.column(0), shingle_words, cache)
            hashes.append(batch_hashes)
            signatures.append(batch_signatures)
    if not hashes:
        return np.zeros(0, np.int64), np.zeros((0, index_format.SIGNATURE_BINS), np.uint16)
    return np.concatenate(hashes), np.concatenate(signatures)
