"""Contribute a generated dataset: validate it, then open one pull request on the Hub dataset
whose single commit adds the Parquet shards and a manifest.

The PR adds one shard per bias axis and the contribution's manifest (paths: repo.layout).
The contribution id is a hash of the contributed texts, so the same data twice is one PR.
Either the PR exists with every file or nothing does: shards are written to a temporary folder,
uploaded, and only then referenced by one `create_commit(create_pr=True)`.
The shards are written while validation runs: validation hands over each batch's accepted rows as
soon as it has decided them, so writing batch k overlaps checking the batches after it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vdata_hub import DATASET_LICENSE, __version__, hub
from vdata_hub.config import resolve_repo
from vdata_hub.errors import ValidationFailed, VdataError
from vdata_hub.generation.local_dataset import load_local_dataset
from vdata_hub.generation.records import ARROW_SCHEMA, upgrade_table
from vdata_hub.progress import ProgressArg, Reporter
from vdata_hub.repo import balance, layout, shard_format
from vdata_hub.repo.index import open_index
from vdata_hub.repo.snapshot import json_bytes
from vdata_hub.repo.validation import Rules, validate

DEFAULT_LICENSE = DATASET_LICENSE
ROW_GROUP_ROWS = 65_536
DUPLICATE_REASONS = {"duplicate", "duplicate_of_main", "near_duplicate", "near_duplicate_of_main"}


@dataclass
class ContributionResult:
    """What `contribute` did; `summary()` is what the CLI prints."""

    repo: str
    contribution_id: str
    report: object
    files: dict = field(default_factory=dict)  # path in repo -> rows (shards) or bytes (manifest)
    manifest: dict = field(default_factory=dict)
    pr_url: str | None = None
    status: str = "opened"  # opened | dry_run | already_open | already_merged
    seconds: dict = field(default_factory=dict)  # time per stage: check_main, validate_and_write, upload
    main_index: object = None  # the repo.index.MainIndex consulted (bytes_read, requests, bytes_total)

    def summary(self) -> str:
        lines = [self.report.summary()]
        if self.status == "dry_run":
            lines.append(f"dry run: would open a pull request on {self.repo} adding:")
            lines += [f"  {path}  ({count})" for path, count in self.files.items()]
        elif self.status == "already_open":
            lines.append(f"this contribution ({self.contribution_id}) is already open: {self.pr_url}")
        elif self.status == "already_merged":
            lines.append(f"this contribution ({self.contribution_id}) is already on {self.repo}'s main branch")
        else:
            lines.append(f"opened pull request: {self.pr_url}")
        return "\n".join(lines)


def contribute(out: str = "vdata-out", repo: str | None = None, token: str | None = None, part=None,
               dry_run: bool = False, progress: ProgressArg = False, rules: Rules | None = None) -> ContributionResult:
    """Validate the dataset at `out` (or a part of it) and open one PR adding it to `repo`.
    `progress`: notes on each stage (see vdata_hub.progress)."""
    repo = resolve_repo(repo)
    reporter = Reporter(progress)
    table = select_part(upgrade_table(load_local_dataset(out)), part)  # older folders: no plan_key
    if table.num_rows == 0:
        raise ValidationFailed(f"nothing to contribute: {out} has no rows" + (f" matching `part` {part}" if part else ""))
    hf_api = hub.api(token)
    contributor = "" if dry_run else hub.check_write_token(hf_api, repo, token)
    reporter.note(f"checking {table.num_rows} rows against {repo} ...")
    clock = time.perf_counter()
    base = hub.main_sha(hf_api, repo, token)
    main = open_index(repo, base, token, hf_api)
    seconds = {"check_main": time.perf_counter() - clock}
    with tempfile.TemporaryDirectory(prefix="vdata-contribute-") as tmp:
        clock = time.perf_counter()
        writer = ShardWriter(Path(tmp), background=True)
        try:
            report = validate(table, main=main, rules=rules, sink=writer.write)
        finally:
            writer.close()
        seconds["validate_and_write"] = time.perf_counter() - clock
        if report.accepted == 0:
            raise ValidationFailed(_nothing_left(report))
        contribution_id = contribution_hash(report.accepted_hashes())
        result = ContributionResult(repo=repo, contribution_id=contribution_id, report=report, seconds=seconds,
                                    main_index=main)
        existing = find_contribution(hf_api, repo, contribution_id, token)
        if existing is not None:
            result.status, result.pr_url = existing
            return result
        shards, stats = writer.shards(contribution_id), writer.stats
        manifest = build_manifest(contribution_id, stats, report, contributor)
        manifest_path = layout.manifest_path(contribution_id)
        manifest_bytes = json_bytes(manifest)
        result.manifest = manifest
        result.files = {path: f"{rows} rows" for path, (_, rows) in shards.items()}
        result.files[manifest_path] = f"{len(manifest_bytes)} bytes"
        if dry_run:
            result.status = "dry_run"
            return result
        title, description = pr_text(repo, manifest, report)
        reporter.note(f"uploading {len(shards)} shard(s) and opening a pull request ...")
        clock = time.perf_counter()
        result.pr_url = open_pull_request(hf_api, repo, token, base, contribution_id, title, description,
                                          {**{path: str(local) for path, (local, _) in shards.items()},
                                           manifest_path: manifest_bytes})
        seconds["upload"] = time.perf_counter() - clock
    return result


def _nothing_left(report) -> str:
    reasons = ", ".join(f"{reason}: {count}" for reason, count in report.rejected.most_common())
    if set(report.rejected) == {"duplicate_of_main"}:
        return f"nothing new to contribute: all {report.total} rows are already on the repo's main branch"
    if set(report.rejected) <= DUPLICATE_REASONS and set(report.rejected) & {"duplicate_of_main", "near_duplicate_of_main"}:
        return (f"nothing new to contribute: all {report.total} rows are on the repo's main branch or (near) "
                f"duplicates of rows there or of each other ({reasons})")
    return f"no row passed validation ({reasons}); nothing was uploaded"


def select_part(table: pa.Table, part) -> pa.Table:
    """--part: a fraction (0.25), a count (500) or filters (bias_axis=gender,domain=health; `a|b` for
    alternatives). Fractions and counts take rows in the order of a hash of their plan key, so a
    larger part always contains a smaller one."""
    if part is None or part == "":
        return table
    if isinstance(part, str) and "=" in part:
        mask = None
        for condition in part.split(","):
            name, _, value = condition.partition("=")
            name = name.strip()
            if name not in table.column_names:
                raise VdataError(f"`part` {part}: unknown column {name!r}")
            values = pa.array([v.strip() for v in value.split("|")], pa.string())
            hit = pc.is_in(table.column(name).cast(pa.string()), value_set=values)
            mask = hit if mask is None else pc.and_(mask, hit)
        return table.filter(mask)
    count = _part_count(part, table.num_rows)
    order = np.argsort([hashlib.sha256(i.encode()).digest() for i in table.column("plan_key").to_pylist()],
                       kind="stable")
    return table.take(np.sort(order[:count]))


def _part_count(part, rows: int) -> int:
    """500 or "500": a count; 0.25 or "0.25": a fraction of the rows."""
    text = str(part).strip()
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if isinstance(part, bool) or number <= 0 or ("." not in text and number != int(number)):
        raise VdataError(f"`part` {part!r}: expected a fraction (0.25), a count (500) or a filter (bias_axis=gender)")
    if "." in text or "e" in text.lower():
        if number > 1:
            raise VdataError(f"`part` {part!r}: a fraction must be at most 1")
        return round(rows * number)
    return min(int(number), rows)


def contribution_hash(text_hashes: np.ndarray) -> str:
    """Contribution id: sha256 over the sorted text hashes of the contributed rows (16 hex digits)."""
    return hashlib.sha256(np.sort(text_hashes).astype("<i8").tobytes()).hexdigest()[:16]


def find_contribution(hf_api, repo: str, contribution_id: str, token: str | None):
    """("already_merged", None) or ("already_open", url) when this contribution exists, else None."""
    manifests = (layout.manifest_path(contribution_id), layout.legacy_manifest_path(contribution_id))
    if any(hub.file_exists(hf_api, repo, manifest, "main", token) for manifest in manifests):
        return "already_merged", None
    for discussion in hub.open_pull_requests(hf_api, repo, token):
        if any(hub.file_exists(hf_api, repo, m, f"refs/pr/{discussion.num}", token) for m in manifests):
            return "already_open", hub.pr_url(repo, discussion.num)
    return None


class ShardWriter:
    """One zstd Parquet file per bias axis, written as batches arrive (memory: at most
    ROW_GROUP_ROWS rows waiting, all axes together), with the counts the manifest needs. With `background`, `write` only queues
    the batch and a thread writes it (Parquet encoding and zstd release the GIL), so the caller
    goes on checking the next batches on the other core."""

    def __init__(self, folder: Path, background: bool = False):
        self.folder = folder
        self.writers, self.buffers, self.rows = {}, {}, Counter()
        self.stats = {name: Counter() for name in ("bias_axis", "domain", "task", "model")}
        self.stats.update(spec_sha=set(), generator_version=set(), input_tokens=0, output_tokens=0, cost_usd=0.0,
                          balance=balance.empty())
        self.queue = self.thread = self.error = None
        if background:
            import queue
            import threading

            self.queue = queue.Queue(maxsize=4)  # bounded: a slow disk holds validation back
            self.thread = threading.Thread(target=self._drain, name="vdata-shard-writer", daemon=True)
            self.thread.start()

    def _drain(self) -> None:
        while (batch := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self._write(batch)
                except BaseException as exc:  # noqa: BLE001 -- re-raised by close()
                    self.error = exc

    def write(self, batch: pa.RecordBatch) -> None:
        if self.queue is None:
            self._write(batch)
            return
        if self.error is not None:
            raise self.error
        self.queue.put(batch)

    def _write(self, batch: pa.RecordBatch) -> None:
        _update_stats(self.stats, batch)
        axes = batch.column(ARROW_SCHEMA.get_field_index("bias_axis"))
        values = pc.unique(axes).to_pylist()
        for axis in values:
            part = batch if len(values) == 1 else batch.filter(pc.equal(axes, axis))
            self.buffers.setdefault(axis, []).append(part)
            self.rows[axis] += part.num_rows
        # At most ROW_GROUP_ROWS rows wait in memory, all axes together: the largest buffer is
        # written as one row group (so with several axes, row groups are smaller).
        while sum(b.num_rows for parts in self.buffers.values() for b in parts) >= ROW_GROUP_ROWS:
            self._flush(max(self.buffers, key=lambda a: sum(b.num_rows for b in self.buffers[a])))

    def _flush(self, axis: str) -> None:
        if self.buffers.get(axis):
            if axis not in self.writers:
                self.writers[axis] = shard_format.open_writer(self.folder / f"{axis}.parquet")
            self.writers[axis].write_table(pa.Table.from_batches(self.buffers[axis]))
            self.buffers[axis] = []

    def close(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None
            if self.error is not None:
                raise self.error
        for axis in list(self.buffers):
            self._flush(axis)
        for writer in self.writers.values():
            writer.close()

    def shards(self, contribution_id: str) -> dict:
        """{path in repo: (local path, rows)}."""
        return {layout.shard_path(axis, contribution_id): (self.folder / f"{axis}.parquet", self.rows[axis])
                for axis in sorted(self.writers)}


def write_shards(batches, folder: Path, contribution_id: str) -> tuple[dict, dict]:
    """Write `batches` with a ShardWriter. Returns ({path in repo: (local path, rows)}, stats for
    the manifest)."""
    writer = ShardWriter(folder)
    for batch in batches:
        writer.write(batch)
    writer.close()
    return writer.shards(contribution_id), writer.stats


def _update_stats(stats: dict, batch: pa.RecordBatch) -> None:
    column = batch.column
    index = ARROW_SCHEMA.get_field_index
    for name in ("bias_axis", "domain", "task", "model"):
        for item in pc.value_counts(column(index(name))).to_pylist():
            stats[name][item["values"]] += item["counts"]
    stats["spec_sha"].update(pc.unique(column(index("spec_sha"))).to_pylist())
    stats["generator_version"].update(pc.unique(column(index("generator_version"))).to_pylist())
    stats["input_tokens"] += int(pc.sum(column(index("input_tokens"))).as_py() or 0)
    stats["output_tokens"] += int(pc.sum(column(index("output_tokens"))).as_py() or 0)
    stats["cost_usd"] += float(pc.sum(column(index("cost_usd"))).as_py() or 0.0)
    balance.merge(stats["balance"], balance.count_batch(batch))


def build_manifest(contribution_id: str, stats: dict, report, contributor: str) -> dict:
    """The contribution's public record: counts, models, tokens, cost, checks, and the balance
    counts of its rows (repo/balance.py), which the card sums. No paths, no secrets."""
    hashes = report.accepted_hashes()
    counts = balance.pack({**stats["balance"], "duplicates": int(len(hashes) - len(np.unique(hashes)))})
    return {
        "contribution_id": contribution_id,
        "rows": report.accepted,
        "rows_per_axis": dict(sorted(stats["bias_axis"].items())),
        "rows_per_domain": dict(sorted(stats["domain"].items())),
        "rows_per_task": dict(sorted(stats["task"].items())),
        "rows_per_model": dict(sorted(stats["model"].items())),
        "models": sorted(stats["model"]),
        "spec_sha": sorted(s for s in stats["spec_sha"] if s),
        "generator_versions": sorted(stats["generator_version"]),
        "input_tokens": stats["input_tokens"],
        "output_tokens": stats["output_tokens"],
        "cost_usd": round(stats["cost_usd"], 6),
        "license": DEFAULT_LICENSE,
        "contributor": contributor,
        "tool": f"vdata-hub {__version__}",
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "validation": report.as_dict(),
        "balance": counts,
    }


def pr_text(repo: str, manifest: dict, report) -> tuple[str, str]:
    """Title (first line) and description of the PR, from dataset_card/pr_description.md.j2."""
    from vdata_hub.repo.card import render_template

    text = render_template("pr_description.md.j2", repo=repo, m=manifest, report=report.as_dict())
    title, _, description = text.partition("\n")
    return title.lstrip("# ").strip(), description.strip() + "\n"


def open_pull_request(hf_api, repo: str, token: str | None, base: str, contribution_id: str, title: str,
                      description: str, files: dict) -> str:
    """One commit with every file, as a new PR. Retries on 429, and on 5xx after checking that the
    PR was not created anyway (the contribution id makes that check exact)."""
    from huggingface_hub import CommitOperationAdd

    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content) for path, content in files.items()]

    def commit():
        info = hf_api.create_commit(repo, operations, commit_message=title, commit_description=description,
                                    repo_type="dataset", revision="main", create_pr=True, parent_commit=base)
        return info.pr_url

    def already_open():
        found = find_contribution(hf_api, repo, contribution_id, token)
        return found[1] if found and found[0] == "already_open" else None

    with hub.errors(repo, token, "opening the pull request"):
        return hub.with_retries(commit, retry_5xx=True, before_retry=already_open)
