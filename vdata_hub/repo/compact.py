"""`vdata compact`: rewrite the small shards of each bias axis into large ones, in one commit.

Every contribution adds one small shard per axis under data/<axis>/contributed/; the Hub allows
10,000 entries per folder and readers work best with shards of a few hundred MB. Compaction reads
the small shards of main at one commit (contributed shards, and compacted shards under half the
target size), streams their row groups in contribution-date order into shards of about
`target_bytes` (row groups of at most shard_format.ROW_GROUP_BYTES of Arrow data, page index,
content-defined chunking), checks that the new shards hold exactly the rows it read (the id and
text hash of every row, both sides sorted and compared) and that each contribution's rows per
axis match its manifest, uploads them, and makes one commit that adds the new shards and a
compaction record and deletes the replaced shards: as a pull request, or straight to main with
`direct`. The commit names the commit it was planned on (`parent_commit`), so a main that moved
in between is refused rather than compacted twice. Rows are copied, never changed: their ids
(which the near-duplicate index refers to) stay the same.

Memory stays bounded by one row group being assembled plus the inputs being read (a few
downloads ahead); disk by one output shard and the inputs in flight (each output is uploaded and
deleted as soon as it is complete).

The compaction record (compactions/<date>-<digest>.json) lists what was replaced and written
(with the contributions each new shard holds) and carries the manifests of the contributions
compacted for the first time, summed, so the card reads one file instead of one per contribution.
`review --merge` runs compaction when an axis holds `threshold` contributed shards.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from vdata_hub import __version__, hub
from vdata_hub.config import resolve_repo
from vdata_hub.errors import HubError, VdataError
from vdata_hub.progress import ProgressArg, Reporter
from vdata_hub.repo import balance, layout, shard_format
from vdata_hub.repo.snapshot import Snapshot, fetch_bytes, json_bytes, read_json, snapshot

DEFAULT_TARGET_BYTES = 256 * 2**20
DEFAULT_THRESHOLD = 200  # contributed shards in one axis that make `review --merge` compact
SMALL_FRACTION = 0.5  # a compacted shard under this share of the target is compacted again
DOWNLOAD_AHEAD = 8  # input shards downloaded ahead of the one being read
MEMORY_FETCH_BYTES = 32 * 2**20  # inputs up to this size are read into memory, larger ones to disk
AHEAD_BYTES = 32 * 2**20  # input bytes fetched and decoded ahead of the one being written
TITLE_PREFIX = "Compaction:"
KEY_COLUMNS = ["id", "text_hash"]


@dataclass
class Plan:
    """What one compaction replaces: per axis, the input shards in the order their rows are written."""

    axes: dict = field(default_factory=dict)  # axis -> [input paths]
    contributions: dict = field(default_factory=dict)  # contribution id -> manifest (those being compacted)
    dates: dict = field(default_factory=dict)  # contribution id -> YYYYMMDD
    segments: dict = field(default_factory=dict)  # compacted input -> [[contribution id, rows, date], ...]

    @property
    def inputs(self) -> list[str]:
        return [path for paths in self.axes.values() for path in paths]


@dataclass
class CompactionResult:
    """What `compact` did; `summary()` is what the CLI prints."""

    repo: str
    status: str = "nothing"  # nothing | dry_run | compacted | opened
    replaced: dict = field(default_factory=dict)  # path -> rows
    written: dict = field(default_factory=dict)  # path -> {rows, bytes, segments: [[cid, rows, date], ...]}
    record_path: str | None = None
    commit: str | None = None
    pr_url: str | None = None
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: dict = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.replaced.values())

    def summary(self) -> str:
        if self.status == "nothing":
            return f"nothing to compact on {self.repo}: no axis holds two or more small shards"
        what = (f"{len(self.replaced)} shard(s) ({self.rows:,} rows, {self.bytes_read / 2**20:,.1f} MiB) into "
                f"{len(self.written)} ({self.bytes_written / 2**20:,.1f} MiB)")
        if self.status == "dry_run":
            return f"dry run: would compact {len(self.replaced)} shard(s) of {self.repo}: " + ", ".join(
                f"{axis} {n}" for axis, n in _per_axis(self.replaced).items())
        if self.status == "opened":
            return f"opened pull request compacting {what}: {self.pr_url}"
        return f"compacted {what} on {self.repo}'s main branch (commit {self.commit[:12]})"


def _per_axis(paths) -> dict:
    counts: dict = {}
    for path in paths:
        axis = layout.shard_axis(path)
        counts[axis] = counts.get(axis, 0) + 1
    return counts


def contributed_counts(snap: Snapshot) -> dict[str, int]:
    """{axis: contributed (not yet compacted) shards} of a snapshot."""
    return {axis: sum(1 for p in paths if layout.contributed_shard(p)) for axis, paths in snap.shards_by_axis().items()}


def needs_compaction(snap: Snapshot, threshold: int = DEFAULT_THRESHOLD) -> bool:
    return threshold > 0 and any(n >= threshold for n in contributed_counts(snap).values())


def compact(repo: str | None = None, target_bytes: int = DEFAULT_TARGET_BYTES, direct: bool = False,
            dry_run: bool = False, token: str | None = None, progress: ProgressArg = False,
            row_group_bytes: int = shard_format.ROW_GROUP_BYTES) -> CompactionResult:
    """Compact the small shards of every axis of `repo`'s main branch (see the module docstring).
    `progress`: a note and a bar of the bytes rewritten (see vdata_hub.progress)."""
    repo = resolve_repo(repo)
    reporter = Reporter(progress)
    if target_bytes <= 0 or row_group_bytes <= 0:
        raise VdataError("`target_bytes` and `row_group_bytes` must be positive")
    hf_api = hub.api(token)
    if not dry_run:
        hub.check_write_token(hf_api, repo, token)
    clock = time.perf_counter()
    snap = snapshot(hf_api, repo, "main", token)
    records = read_json(hf_api, snap, snap.compaction_records(), token)
    plan = plan_compaction(hf_api, snap, records, target_bytes, token)
    result = CompactionResult(repo=repo, seconds={"plan": time.perf_counter() - clock})
    if not plan.axes:
        return result
    result.replaced = {path: 0 for path in plan.inputs}
    result.bytes_read = snap.size(plan.inputs)
    if dry_run:
        result.status = "dry_run"
        return result
    reporter.note(f"compacting {len(plan.inputs)} shard(s) of {repo} ({result.bytes_read / 2**20:,.1f} MiB) ...")
    with tempfile.TemporaryDirectory(prefix="vdata-compact-") as tmp:
        clock = time.perf_counter()
        additions = rewrite(hf_api, snap, plan, Path(tmp), result, target_bytes, row_group_bytes, token, reporter)
        result.seconds["rewrite_and_upload"] = time.perf_counter() - clock
    clock = time.perf_counter()
    record = compaction_record(snap, plan, records, result, target_bytes)
    result.record_path = record_path(plan, result)
    commit_compaction(hf_api, snap, result, additions, record, direct, token)
    result.seconds["commit"] = time.perf_counter() - clock
    return result


def plan_compaction(hf_api, snap: Snapshot, records: dict, target_bytes: int, token: str | None) -> Plan:
    """Per axis, the shards to rewrite: contributed shards and compacted shards under
    SMALL_FRACTION of the target, when there are at least two; compacted ones first (oldest rows),
    then contributed ones by the date of their contribution."""
    plan = Plan()
    small = small_shards({path: snap.files[path].size for path in snap.shards()}, target_bytes)
    if not small:
        return plan
    manifest_paths = snap.manifests()
    wanted = sorted({layout.contributed_shard(p)[1] for paths in small.values() for p in paths
                     if layout.contributed_shard(p)})
    manifests = read_json(hf_api, snap, [manifest_paths[c] for c in wanted if c in manifest_paths], token)
    plan.contributions = {m.get("contribution_id") or layout.manifest_id(p): m for p, m in manifests.items()}
    for cid in wanted:
        created = str(plan.contributions.get(cid, {}).get("created_at", ""))
        plan.dates[cid] = created[:10].replace("-", "") if len(created) >= 10 else _today()
    known = written_segments(records)
    for path in (p for paths in small.values() for p in paths if layout.compacted_shard(p)):
        first = layout.compacted_shard(path)[1]
        plan.segments[path] = known.get(path) or [["", None, first]]
    for axis, paths in small.items():
        compacted = sorted(p for p in paths if layout.compacted_shard(p))
        contributed = sorted((p for p in paths if layout.contributed_shard(p)),
                             key=lambda p: (plan.dates[layout.contributed_shard(p)[1]], p))
        plan.axes[axis] = compacted + contributed
    return plan


def small_shards(sizes: dict[str, int], target_bytes: int) -> dict[str, list[str]]:
    """{axis: shards to rewrite} of data files {path: size}: the contributed shards and the
    compacted shards under SMALL_FRACTION of the target, for axes that have two or more."""
    small: dict[str, list[str]] = {}
    for axis, paths in layout.shards_by_axis(sizes).items():
        chosen = [p for p in paths if layout.contributed_shard(p)
                  or (layout.compacted_shard(p) and sizes[p] < SMALL_FRACTION * target_bytes)]
        if len(chosen) >= 2:
            small[axis] = chosen
    return small


def written_segments(records: dict) -> dict:
    """{compacted shard path: [[contribution id, rows, date], ...]} from compaction records."""
    found = {}
    for record in records.values():
        for path, entry in record.get("written", {}).items():
            found[path] = [list(segment) for segment in entry.get("segments", [])]
    return found


def _today() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d")


def row_keys(table):
    """The id and text hash of every row, as a table (one of the pieces `same_rows` compares)."""
    return table.select(KEY_COLUMNS).replace_schema_metadata(None)


def same_rows(first: list, second: list) -> bool:
    """Whether two lists of row_keys tables hold the same rows, each as often: both sorted by
    id and text hash (Arrow's sort, in C++) and compared."""
    import pyarrow as pa

    def ordered(tables):
        if not tables:
            return pa.table({"id": pa.array([], pa.string()), "text_hash": pa.array([], pa.int64())})
        keys = pa.concat_tables(tables).combine_chunks()
        return keys.sort_by([("id", "ascending"), ("text_hash", "ascending")]).combine_chunks()

    a, b = ordered(first), ordered(second)
    return a.num_rows == b.num_rows and a.equals(b)


class Downloads:
    """Files of a snapshot fetched DOWNLOAD_AHEAD ahead of the one being used: small ones into
    memory with one GET each, larger ones (over MEMORY_FETCH_BYTES) to a file in `folder`.
    `get(i)` returns the bytes or the local path of the i-th; `done(x)` deletes a local file."""

    def __init__(self, hf_api, snap: Snapshot, paths: list[str], folder: Path):
        def fetch(path):
            if snap.files[path].size > MEMORY_FETCH_BYTES:
                return Path(hf_api.hf_hub_download(snap.repo, path, repo_type="dataset", revision=snap.commit,
                                                   local_dir=str(folder)))
            return fetch_bytes(hf_api, snap.repo, snap.commit, path)

        self.pool = ThreadPoolExecutor(max_workers=DOWNLOAD_AHEAD, thread_name_prefix="vdata-compact-get")
        self.paths, self.fetch = paths, fetch
        self.futures = {path: self.pool.submit(fetch, path) for path in paths[:DOWNLOAD_AHEAD]}

    def get(self, index: int):
        path = self.paths[index]
        ahead = index + DOWNLOAD_AHEAD
        if ahead < len(self.paths):
            self.futures[self.paths[ahead]] = self.pool.submit(self.fetch, self.paths[ahead])
        return self.futures.pop(path).result()

    @staticmethod
    def done(fetched) -> None:
        if isinstance(fetched, Path):
            fetched.unlink()

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Inputs:
    """The row groups of the input shards, in order: fetched and decoded by background threads
    (Arrow decoding releases the GIL), at most AHEAD_BYTES of input in flight. Small shards are
    read into memory; larger ones are downloaded to `folder` and read one row group at a time."""

    def __init__(self, hf_api, snap: Snapshot, paths: list[str], folder: Path):
        self.snap, self.paths = snap, paths
        self.downloads = Downloads(hf_api, snap, [], folder)
        self.pool = ThreadPoolExecutor(max_workers=DOWNLOAD_AHEAD, thread_name_prefix="vdata-compact-read")
        self.futures, self.next, self.in_flight = {}, 0, 0

    def _decode(self, path: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        fetched = self.downloads.fetch(path)
        if isinstance(fetched, bytes):
            parquet = pq.ParquetFile(pa.BufferReader(fetched))
            return [_canonical(parquet.read_row_group(i), path) for i in range(parquet.num_row_groups)]
        return fetched

    def _fill(self) -> None:
        while self.next < len(self.paths) and (not self.futures or self.in_flight < AHEAD_BYTES):
            path = self.paths[self.next]
            self.futures[path] = self.pool.submit(self._decode, path)
            self.in_flight += self.snap.files[path].size
            self.next += 1

    def __iter__(self):
        import pyarrow.parquet as pq

        for path in self.paths:
            self._fill()
            decoded = self.futures.pop(path).result()
            self.in_flight -= self.snap.files[path].size
            if isinstance(decoded, list):
                yield path, iter(decoded)
            else:
                parquet = pq.ParquetFile(decoded)
                yield path, (_canonical(parquet.read_row_group(i), path) for i in range(parquet.num_row_groups))
                decoded.unlink()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _AxisWriter:
    """Compacted shards of one axis: row groups of at most `row_group_bytes`, a new file once the
    current one reaches `target_bytes`. Row groups are encoded by a background thread (one at a
    time, while the next is assembled); each finished file goes to `finish(path, segments)`."""

    def __init__(self, axis: str, folder: Path, target_bytes: int, row_group_bytes: int, finish, encoder):
        self.axis, self.folder = axis, folder
        self.target_bytes, self.row_group_bytes = target_bytes, row_group_bytes
        self.finish, self.encoder = finish, encoder
        self.writer = self.path = self.encoding = None
        self.pending, self.pending_bytes, self.pending_segments = [], 0, []
        self.file_segments: list = []  # [contribution id, rows, date] of the file being written
        self.number = 0

    def write(self, table, contribution_id: str, date: str) -> None:
        self.pending.append(table)
        self.pending_bytes += table.get_total_buffer_size()
        _add_segment(self.pending_segments, [contribution_id, table.num_rows, date])
        if self.pending_bytes >= self.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self.pending:
            return
        self._wait()
        if self.writer is not None and self.path.stat().st_size >= self.target_bytes:
            self._close_file()
        if self.writer is None:
            self.number += 1
            self.path = self.folder / f"{self.axis}-{self.number:05d}.parquet"
            self.writer = shard_format.open_writer(self.path)
        for segment in self.pending_segments:
            _add_segment(self.file_segments, segment)
        table, writer = pa.concat_tables(self.pending), self.writer
        self.pending, self.pending_bytes, self.pending_segments = [], 0, []
        self.encoding = self.encoder.submit(writer.write_table, table)

    def _wait(self) -> None:
        if self.encoding is not None:
            self.encoding.result()
            self.encoding = None

    def _close_file(self) -> None:
        self.writer.close()
        self.writer = None
        segments, self.file_segments = self.file_segments, []
        self.finish(self.path, segments)

    def close(self) -> None:
        self._flush()
        self._wait()
        if self.writer is not None:
            self._close_file()


def _add_segment(segments: list, segment: list) -> None:
    """Append [cid, rows, date], merged into the last one when it is the same contribution."""
    if segments and segments[-1][0] == segment[0] and segments[-1][2] == segment[2]:
        segments[-1][1] += segment[1]
    else:
        segments.append(list(segment))


def rewrite(hf_api, snap: Snapshot, plan: Plan, folder: Path, result: CompactionResult, target_bytes: int,
            row_group_bytes: int, token: str | None, reporter: Reporter) -> list:
    """Stream every input of the plan into compacted shards; verify, upload and list them.
    Returns the CommitOperationAdds of the uploaded shards. Reading, encoding and uploading run
    in parallel (see _Inputs, _AxisWriter); the upload of a finished file also reads back its ids
    and text hashes."""
    import pyarrow.parquet as pq
    from huggingface_hub import CommitOperationAdd

    additions, uploads, written_keys = [], [], {}
    out = folder / "out"
    out.mkdir(parents=True)
    encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vdata-compact-encode")
    uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vdata-compact-upload")
    inputs = _Inputs(hf_api, snap, plan.inputs, folder / "in")
    progress = reporter.bar(total=snap.size(plan.inputs), unit="B", unit_scale=True, desc="compact")
    per_contribution: dict = {}  # (cid, axis) -> rows read from contributed shards

    def upload(local: Path, axis: str, segments: list) -> None:
        written_keys.setdefault(axis, []).append(row_keys(pq.read_table(local, columns=KEY_COLUMNS)))
        path = output_path(axis, segments)
        result.written[path] = {"rows": sum(rows for _, rows, _ in segments), "bytes": local.stat().st_size,
                                "segments": segments}
        result.bytes_written += local.stat().st_size
        addition = CommitOperationAdd(path, str(local))
        with hub.errors(snap.repo, token, "uploading compacted shards"):
            hub.with_retries(lambda: hf_api.preupload_lfs_files(snap.repo, [addition], repo_type="dataset"),
                             retry_5xx=True)
        local.unlink()
        additions.append(addition)

    def finish(local: Path, segments: list, axis: str) -> None:
        for done in [u for u in uploads if u.done()]:
            done.result()  # an upload that failed stops the compaction now
        uploads.append(uploader.submit(upload, local, axis, segments))

    try:
        read_keys: dict = {}
        rows_in = iter(inputs)
        for axis, paths in plan.axes.items():
            writer = _AxisWriter(axis, out, target_bytes, row_group_bytes,
                                 lambda local, segments, axis=axis: finish(local, segments, axis), encoder)
            for _ in paths:
                with hub.errors(snap.repo, token, "reading the shards"):
                    path, tables = next(rows_in)
                    contributed = layout.contributed_shard(path)
                    pieces = ([[contributed[1], None, plan.dates[contributed[1]]]] if contributed
                              else [list(segment) for segment in plan.segments[path]])
                    rows_here = 0
                    for table in tables:
                        read_keys.setdefault(axis, []).append(row_keys(table))
                        for cid, date, piece in _by_contribution(table, contributed, pieces):
                            writer.write(piece, cid, date)
                        rows_here += table.num_rows
                result.replaced[path] = rows_here
                if contributed:
                    per_contribution[contributed[::-1]] = rows_here
                progress.update(snap.files[path].size)
            writer.close()
        for pending in uploads:
            pending.result()
        for axis in plan.axes:
            _check_same_rows(axis, read_keys.get(axis, []), written_keys.get(axis, []))
    finally:
        inputs.close()
        encoder.shutdown(wait=True, cancel_futures=True)
        uploader.shutdown(wait=True, cancel_futures=True)
        progress.close()
    _check_manifests(per_contribution, plan)
    return additions


def _canonical(table, path: str):
    """A row group with the record schema (columns in order, no file metadata)."""
    from vdata_hub.generation.records import ARROW_SCHEMA

    if table.schema.equals(ARROW_SCHEMA, check_metadata=False):
        return table.replace_schema_metadata(None)
    missing = [name for name in ARROW_SCHEMA.names if name not in table.schema.names]
    if missing:
        raise HubError(f"{path} has no column(s) {', '.join(missing)}; it cannot be compacted with the others")
    return table.select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA)


def _by_contribution(table, contributed, pieces: list):
    """(contribution id, date, rows) pieces of a row group, consuming `pieces` ([[cid, rows left,
    date], ...]; rows None: all the rest): the whole group for a contributed shard, and for a
    compacted one the runs of rows its compaction record says each contribution holds."""
    offset = 0
    while offset < table.num_rows and pieces:
        cid, left, date = pieces[0]
        take = table.num_rows - offset if left is None else min(left, table.num_rows - offset)
        yield cid, date, table.slice(offset, take)
        offset += take
        if left is not None:
            if take == left:
                pieces.pop(0)
            else:
                pieces[0][1] -= take
    if offset < table.num_rows:  # more rows than the record said: kept, with no contribution named
        yield "", pieces[-1][2] if pieces else _today(), table.slice(offset)


def output_path(axis: str, segments: list) -> str:
    """compacted-<first>-<last>-<digest>: dates of its oldest and newest contribution, and a digest
    of the contributions and row counts it holds (the same inputs give the same name)."""
    dates = [date for _, _, date in segments if date] or [_today()]
    digest = hashlib.sha256(json.dumps([axis, segments]).encode()).hexdigest()[:12]
    return layout.compacted_shard_path(axis, min(dates), max(dates), digest)


def _check_same_rows(axis: str, read_keys: list, written_keys: list) -> None:
    if not same_rows(read_keys, written_keys):
        read, written = sum(t.num_rows for t in read_keys), sum(t.num_rows for t in written_keys)
        raise HubError(f"compaction of {axis}: the new shards do not hold exactly the rows read "
                       f"({read} read, {written} written); nothing was committed")


def _check_manifests(per_contribution: dict, plan: Plan) -> None:
    """Each compacted contribution's rows per axis must be what its manifest says."""
    for (cid, axis), rows in per_contribution.items():
        manifest = plan.contributions.get(cid)
        if manifest is None or "rows_per_axis" not in manifest:
            continue
        expected = manifest["rows_per_axis"].get(axis)
        if expected != rows:
            raise HubError(f"contribution {cid}: {rows} rows of {axis} on main, its manifest says {expected}; "
                           "nothing was compacted (fix the repo first)")


def compaction_record(snap: Snapshot, plan: Plan, records: dict, result: CompactionResult, target_bytes: int) -> dict:
    """The record committed with the compaction (see the module docstring)."""
    from vdata_hub.repo.card import slim

    covered = {m["contribution_id"] for record in records.values() for m in record.get("contributions", [])}
    fresh = [plan.contributions[cid] for cid in sorted(plan.contributions) if cid not in covered]
    counts = balance.empty()
    without = 0
    for manifest in fresh:
        if manifest.get("balance"):
            balance.merge(counts, manifest["balance"])
        else:
            without += manifest.get("rows", 0)
    return {
        "kind": "vdata-compaction", "tool": f"vdata-hub {__version__}",
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "base_commit": snap.commit, "target_bytes": target_bytes,
        "rows": result.rows, "replaced": dict(sorted(result.replaced.items())),
        "written": dict(sorted(result.written.items())),
        "contributions": [slim(m) for m in fresh], "balance": balance.pack(counts), "rows_without_balance": without,
    }


def record_path(plan: Plan, result: CompactionResult) -> str:
    """compactions/<newest date inside>-<digest of what was replaced>."""
    digest = hashlib.sha256("\n".join(sorted(result.replaced)).encode()).hexdigest()[:12]
    newest = max((layout.compacted_shard(path)[2] for path in result.written), default=_today())
    return layout.compaction_record_path(newest, digest)


def commit_compaction(hf_api, snap: Snapshot, result: CompactionResult, additions: list, record: dict,
                      direct: bool, token: str | None) -> None:
    """One commit: the new shards and the record in, the replaced shards out; on main (`direct`)
    or as a pull request. A 5xx is retried only after checking the commit did not land anyway."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    operations = [*additions,
                  CommitOperationAdd(result.record_path, json_bytes(record)),
                  *[CommitOperationDelete(path) for path in sorted(result.replaced)]]
    title = (f"{TITLE_PREFIX} {len(result.replaced)} shards ({result.rows:,} rows) into {len(result.written)}")
    description = ("Rewrites small shards into large ones with `vdata compact`; every row is kept exactly once "
                   f"(checked by id and text hash). Record: `{result.record_path}`.\n")

    def commit():
        info = hf_api.create_commit(snap.repo, operations, commit_message=title, commit_description=description,
                                    repo_type="dataset", revision="main", create_pr=not direct,
                                    parent_commit=snap.commit)
        return info

    def landed():
        if direct:
            if hub.file_exists(hf_api, snap.repo, result.record_path, "main", token):
                return hf_api.repo_info(snap.repo, repo_type="dataset").sha
            return None
        for discussion in hub.open_pull_requests(hf_api, snap.repo, token):
            if hub.file_exists(hf_api, snap.repo, result.record_path, f"refs/pr/{discussion.num}", token):
                return hub.pr_url(snap.repo, discussion.num)
        return None

    try:
        with hub.errors(snap.repo, token, "committing the compaction"):
            outcome = hub.with_retries(commit, retry_5xx=True, before_retry=landed)
    except HubError as exc:
        if "(412" in str(exc):
            raise HubError(f"main of {snap.repo} changed while compacting; run `vdata compact` again") from None
        raise
    if not hasattr(outcome, "oid"):  # found landed after a failed try: main's commit, or the PR's URL
        (result.commit, result.status) = (outcome, "compacted") if direct else (None, "opened")
        result.pr_url = None if direct else outcome
        return
    if direct:
        result.status, result.commit = "compacted", outcome.oid
    else:
        result.status, result.pr_url, result.commit = "opened", outcome.pr_url, outcome.oid
