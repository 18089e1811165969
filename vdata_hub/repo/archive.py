"""`vdata archive`: move chosen shards of main to an archive dataset repo, never losing a row.

The original design: "parts of the dataset could be archived to lower costs if it grows too
large". A move, in this order, each step done only if not done already, so that a rerun after an
interruption at any point finishes it:

1. choose the shards (`--before DATE`: shards whose contributions are all older; `--axis`; or
   `--contributions`; criteria combine), from main at one commit;
2. one commit on the archive repo (created if needed): the shards, byte for byte, a copy of the
   move's record and the archive's card; files left there by an interrupted move that main does
   not record are removed in the same commit;
3. check, before touching main: each archived file has the same sha256 as main's, and the ids
   and text hashes of its rows (read back from the archive repo) are those of main's file;
4. a tag on main at the commit before the move (`load_dataset(REPO, revision=TAG)` still returns
   the rows as they were);
5. one commit on main: the shards deleted, the move's record (archive/<date>-<digest>.json) and
   the refreshed card added.

A row is therefore always in main, in the archive, or in both; never in neither. Manifests stay
on main, so the card still counts every contribution and says which rows live where; `vdata pull
--include-archive` and `vdata stats REPO --include-archive` read the archived rows too.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from datetime import date as Date, datetime, timezone
from pathlib import Path


from vdata_hub import __version__, hub
from vdata_hub.config import resolve_repo
from vdata_hub.errors import HubError, VdataError
from vdata_hub.progress import ProgressArg, Reporter
from vdata_hub.repo import layout
from vdata_hub.repo.compact import KEY_COLUMNS, Downloads, row_keys, same_rows, written_segments
from vdata_hub.repo.snapshot import RepoFile, Snapshot, json_bytes, read_json, snapshot

TITLE = "Archive"


@dataclass
class ArchiveResult:
    """What `archive` did; `summary()` is what the CLI prints."""

    repo: str
    archive_repo: str
    status: str = "nothing"  # nothing | dry_run | archived
    shards: dict = field(default_factory=dict)  # path -> rows
    tag: str | None = None
    record_path: str | None = None
    archive_commit: str | None = None
    main_commit: str | None = None
    steps: list = field(default_factory=list)  # what this run did (a rerun skips what was done)

    @property
    def rows(self) -> int:
        return sum(self.shards.values())

    def summary(self) -> str:
        if self.status == "nothing":
            return f"nothing to archive: no shard of {self.repo}'s main matches"
        if self.status == "dry_run":
            return (f"dry run: would move {len(self.shards)} shard(s) of {self.repo} to {self.archive_repo}: "
                    + ", ".join(self.shards))
        return (f"moved {len(self.shards)} shard(s) ({self.rows:,} rows) from {self.repo} to {self.archive_repo}; "
                f"{self.repo} tagged {self.tag} before the move ({'; '.join(self.steps)})")


def archive(repo: str | None = None, to: str | None = None, before: str | None = None, axis: str | None = None,
            contributions=None, dry_run: bool = False, token: str | None = None,
            progress: ProgressArg = False) -> ArchiveResult:
    """Move the chosen shards of `repo`'s main to the archive repo `to` (see the module docstring).
    `progress`: a note per step (see vdata_hub.progress)."""
    repo = resolve_repo(repo)
    reporter = Reporter(progress)
    if not to:
        raise VdataError("`to`: name the archive dataset repo, e.g. my-org/vdata-archive")
    if to == repo:
        raise VdataError("`to` must be another repo than `repo`")
    contribution_ids = _contribution_list(contributions)
    cutoff = _cutoff(before)
    if cutoff is None and axis is None and not contribution_ids:
        raise VdataError("choose what to archive: `before` (a date), `axis` and/or `contributions` (ids)")
    hf_api = hub.api(token)
    if not dry_run:
        hub.check_write_token(hf_api, repo, token)
    snap = snapshot(hf_api, repo, "main", token)
    records = read_json(hf_api, snap, snap.compaction_records() + snap.archive_records(), token)
    chosen = choose(hf_api, snap, records, cutoff, axis, contribution_ids, token)
    result = ArchiveResult(repo=repo, archive_repo=to)
    if not chosen:
        return result
    result.shards = {path: None for path in chosen}
    if dry_run:
        result.status = "dry_run"
        return result
    reporter.note(f"reading the ids and text hashes of {len(chosen)} shard(s) of {repo} ...")
    keys = {path: remote_keys(repo, snap.commit, path, token) for path in sorted(chosen)}
    result.shards = {path: found.num_rows for path, found in keys.items()}
    move_id = _move_id(snap, chosen, to)
    result.tag, result.record_path = f"archive-{move_id}", layout.archive_record_path(*move_id.split("-"))
    record = move_record(snap, chosen, result.shards, to, result.tag, before, axis, contribution_ids)
    earlier = [records[path] for path in snap.archive_records()]
    result.archive_commit = copy_to_archive(hf_api, snap, to, chosen, record, result, earlier, token, reporter)
    verify(hf_api, snap, to, result.archive_commit, keys, token)
    tag_main(hf_api, snap, result, token)
    record["archive_commit"] = result.archive_commit
    result.main_commit = remove_from_main(hf_api, snap, chosen, record, result, token)
    result.status = "archived"
    return result


def _contribution_list(contributions) -> list[str]:
    if not contributions:
        return []
    items = contributions.split(",") if isinstance(contributions, str) else list(contributions)
    ids = [str(item).strip() for item in items if str(item).strip()]
    import re

    bad = [i for i in ids if not re.fullmatch(layout.CONTRIBUTION_ID_PATTERN, i)]
    if bad:
        raise VdataError(f"`contributions`: not contribution ids (16 hex digits): {', '.join(bad)}")
    return ids


def _cutoff(before) -> str | None:
    """--before as YYYYMMDD."""
    if before is None:
        return None
    try:
        return Date.fromisoformat(str(before)).strftime("%Y%m%d")
    except ValueError:
        raise VdataError(f"`before` {before!r}: expected a date, YYYY-MM-DD") from None


def choose(hf_api, snap: Snapshot, records: dict, cutoff: str | None, axis: str | None, contribution_ids: list,
           token: str | None) -> dict:
    """{shard path: [[contribution id, rows, date], ...]} of main's shards matching every criterion."""
    segments = written_segments(records)
    manifests = snap.manifests()
    contributed = {path: layout.contributed_shard(path)[1] for path in snap.shards() if layout.contributed_shard(path)}
    needed = sorted({cid for cid in contributed.values() if cid in manifests})
    dated = read_json(hf_api, snap, [manifests[cid] for cid in needed], token)
    by_id = {layout.manifest_id(path): manifest for path, manifest in dated.items()}
    wanted = set(contribution_ids)
    chosen = {}
    for path in snap.shards():
        if axis is not None and layout.shard_axis(path) != axis:
            continue
        if path in contributed:
            cid = contributed[path]
            manifest = by_id.get(cid, {})
            created = str(manifest.get("created_at", ""))[:10].replace("-", "")
            rows = manifest.get("rows_per_axis", {}).get(layout.shard_axis(path))
            parts = [[cid, rows, created]]
        else:
            parts = segments.get(path) or [["", None, (layout.compacted_shard(path) or ("", "", ""))[2]]]
        if cutoff is not None and not all(date and date < cutoff for _, _, date in parts):
            continue
        if wanted:
            inside = {cid for cid, _, _ in parts}
            if not inside & wanted:
                continue
            if not inside <= wanted:
                others = ", ".join(sorted(inside - wanted))
                raise VdataError(f"{path} also holds rows of contribution(s) {others}: archive them together, "
                                 "or choose by `before`/`axis`")
        chosen[path] = [list(part) for part in parts]
    return chosen


def _move_id(snap: Snapshot, chosen: dict, archive_repo: str) -> str:
    """<newest contribution date>-<digest of the shards and the archive repo>: the same move, the same id."""
    digest = hashlib.sha256(json.dumps([archive_repo, sorted((p, snap.files[p].oid) for p in chosen)]).encode())
    newest = max((date for parts in chosen.values() for _, _, date in parts if date),
                 default=datetime.now(timezone.utc).strftime("%Y%m%d"))
    return f"{newest}-{digest.hexdigest()[:12]}"


def move_record(snap: Snapshot, chosen: dict, rows: dict, archive_repo: str, tag: str, before, axis,
                contribution_ids) -> dict:
    per_axis: dict = {}
    for path, count in rows.items():
        per_axis[layout.shard_axis(path)] = per_axis.get(layout.shard_axis(path), 0) + (count or 0)
    return {
        "kind": "vdata-archive", "tool": f"vdata-hub {__version__}", "source_repo": snap.repo,
        "archive_repo": archive_repo, "tag": tag, "main_before": snap.commit,
        "moved_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "selection": {"before": before, "axis": axis, "contributions": contribution_ids},
        "rows": sum(count or 0 for count in rows.values()), "rows_per_axis": dict(sorted(per_axis.items())),
        "shards": {path: {"rows": rows[path], "bytes": snap.files[path].size, "sha256": snap.files[path].oid,
                          "segments": chosen[path]} for path in sorted(chosen)},
    }


def _archive_snapshot(hf_api, archive_repo: str, token: str | None) -> Snapshot | None:
    with hub.errors(archive_repo, token, "looking for the archive repo"):
        if not hf_api.repo_exists(archive_repo, repo_type="dataset"):
            return None
    return snapshot(hf_api, archive_repo, "main", token)


def copy_to_archive(hf_api, snap: Snapshot, archive_repo: str, chosen: dict, record: dict, result: ArchiveResult,
                    earlier: list, token: str | None, reporter: Reporter) -> str:
    """Step 2: one commit on the archive repo making its data exactly what main's records say it
    holds plus this move; returns the archive commit holding the shards (no commit when it does
    already)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    from vdata_hub.resources import CARD_DIR

    target = _archive_snapshot(hf_api, archive_repo, token)
    if target is None:
        with hub.errors(archive_repo, token, "creating the archive repo"):
            hf_api.create_repo(archive_repo, repo_type="dataset", exist_ok=True)
        target = snapshot(hf_api, archive_repo, "main", token)
        result.steps.append(f"created {archive_repo}")
    theirs = read_json(hf_api, target, target.archive_records(), token)
    if result.record_path in theirs:  # an interrupted run committed this move there: keep its record
        record.update({key: theirs[result.record_path][key] for key in ("moved_at",)})
    on_main = {r["tag"] for r in earlier}
    unfinished = [path for path, r in theirs.items() if r.get("source_repo") == snap.repo
                  and r.get("tag") not in on_main and path != result.record_path]
    kept = {p for path, r in theirs.items() if path not in unfinished for p in r.get("shards", {})}
    orphans = sorted({p for path in unfinished for p in theirs[path].get("shards", {})} - kept - set(chosen))
    missing = [path for path in sorted(chosen) if target.files.get(path, RepoFile(0, "")).oid != snap.files[path].oid]
    records = [r for path, r in sorted(theirs.items()) if path not in unfinished and path != result.record_path]
    card = archive_card(archive_repo, snap.repo, records + [record],
                        sorted((set(target.shards()) - set(orphans)) | set(chosen)))
    record_bytes = json_bytes(record)
    if not missing and not orphans and not unfinished and result.record_path in theirs:
        result.steps.append("the archive already held the shards")
        return target.commit
    operations = []
    if ".gitattributes" not in target.files:
        operations.append(CommitOperationAdd(".gitattributes", (CARD_DIR / "gitattributes.txt").read_bytes()))
    with tempfile.TemporaryDirectory(prefix="vdata-archive-") as tmp:
        if missing:
            reporter.note(f"copying {len(missing)} shard(s) to {archive_repo} ...")
            operations += _upload_copies(hf_api, snap, archive_repo, missing, Path(tmp), token)
        operations += [CommitOperationAdd(result.record_path, record_bytes),
                       CommitOperationAdd(layout.CARD_FILE, card.encode()),
                       *[CommitOperationDelete(path) for path in orphans + unfinished]]
        title = f"{TITLE}: {len(chosen)} shard(s) ({record['rows']:,} rows) from {snap.repo}"

        def commit():
            return hf_api.create_commit(archive_repo, operations, commit_message=title, repo_type="dataset",
                                        parent_commit=target.commit or None)

        def landed():
            now = snapshot(hf_api, archive_repo, "main", token)
            done = all(now.files.get(p, RepoFile(0, "")).oid == snap.files[p].oid for p in chosen)
            return now.commit if done and result.record_path in now.files else None

        with hub.errors(archive_repo, token, "committing to the archive repo"):
            outcome = hub.with_retries(commit, retry_5xx=True, before_retry=landed)
    result.steps.append(f"copied {len(missing)} shard(s) to {archive_repo}")
    return outcome.oid if hasattr(outcome, "oid") else outcome


def _upload_copies(hf_api, snap: Snapshot, archive_repo: str, paths: list, folder: Path, token: str | None) -> list:
    """Download main's files and upload them to the archive (one at a time on disk)."""
    from huggingface_hub import CommitOperationAdd

    additions = []
    downloads = Downloads(hf_api, snap, paths, folder)
    try:
        for number, path in enumerate(paths):
            with hub.errors(snap.repo, token, f"reading {path}"):
                fetched = downloads.get(number)
            addition = CommitOperationAdd(path, fetched if isinstance(fetched, bytes) else str(fetched))
            with hub.errors(archive_repo, token, "uploading to the archive repo"):
                hub.with_retries(lambda: hf_api.preupload_lfs_files(archive_repo, [addition], repo_type="dataset"),
                                 retry_5xx=True)
            downloads.done(fetched)
            additions.append(addition)
    finally:
        downloads.close()
    return additions


def remote_keys(repo: str, commit: str, path: str, token: str | None):
    """row_keys of one shard, read with range requests (its footer, and the id and text_hash columns)."""
    import pyarrow.parquet as pq
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem(token=token, skip_instance_cache=True)
    with hub.errors(repo, token, f"reading {path}"):
        with fs.open(f"datasets/{repo}@{commit}/{path}", "rb", cache_type="none") as handle:
            return row_keys(pq.ParquetFile(handle, pre_buffer=False).read(columns=KEY_COLUMNS))


def verify(hf_api, snap: Snapshot, archive_repo: str, archive_commit: str, keys: dict, token: str | None) -> None:
    """Step 3: the archive commit holds every chosen file with main's sha256, and the same rows
    (ids and text hashes read back from the archive, against `keys` read from main)."""
    archived = snapshot(hf_api, archive_repo, archive_commit, token)
    with hub.errors(archive_repo, token, "checking the archive"):
        for path in sorted(keys):
            if archived.files.get(path, RepoFile(0, "")).oid != snap.files[path].oid:
                raise HubError(f"{archive_repo} does not hold {path} as on {snap.repo}; main was not changed, "
                               "run the same `vdata archive` again")
            if not same_rows([keys[path]], [remote_keys(archive_repo, archived.commit, path, token)]):
                raise HubError(f"{path}: the rows in {archive_repo} differ from {snap.repo}'s; main was not changed")


def tag_main(hf_api, snap: Snapshot, result: ArchiveResult, token: str | None) -> None:
    """Step 4: tag main's commit before the move (kept if an earlier run made it)."""
    with hub.errors(snap.repo, token, "tagging main before the move"):
        tags = {ref.name for ref in hf_api.list_repo_refs(snap.repo, repo_type="dataset").tags}
        if result.tag not in tags:
            hf_api.create_tag(snap.repo, tag=result.tag, revision=snap.commit, repo_type="dataset",
                              tag_message=f"{snap.repo} before moving {len(result.shards)} shard(s) to "
                                          f"{result.archive_repo}", exist_ok=True)
            result.steps.append(f"tagged {result.tag}")


def remove_from_main(hf_api, snap: Snapshot, chosen: dict, record: dict, result: ArchiveResult,
                     token: str | None) -> str:
    """Step 5: one commit on main deleting the shards and adding the record and the refreshed card."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    from vdata_hub.repo.card import card_inputs, card_text

    inputs = card_inputs(hf_api, snap, token)
    inputs.archives.append(record)
    after = Snapshot(repo=snap.repo, commit=snap.commit,
                     files={p: f for p, f in snap.files.items() if p not in chosen})
    inputs.axes = sorted(after.shards_by_axis())
    card = card_text(hf_api, after, token, inputs)
    operations = [CommitOperationAdd(result.record_path, json_bytes(record)),
                  CommitOperationAdd(layout.CARD_FILE, card.encode()),
                  *[CommitOperationDelete(path) for path in sorted(chosen)]]
    title = f"{TITLE}: moved {len(chosen)} shard(s) ({record['rows']:,} rows) to {result.archive_repo}"

    def commit():
        return hf_api.create_commit(snap.repo, operations, commit_message=title, repo_type="dataset",
                                    revision="main", parent_commit=snap.commit)

    def landed():
        if hub.file_exists(hf_api, snap.repo, result.record_path, "main", token):
            return hf_api.repo_info(snap.repo, repo_type="dataset").sha
        return None

    try:
        with hub.errors(snap.repo, token, "removing the archived shards from main"):
            outcome = hub.with_retries(commit, retry_5xx=True, before_retry=landed)
    except HubError as exc:
        if "(412" in str(exc):
            raise HubError(f"main of {snap.repo} changed during the move; run the same `vdata archive` again "
                           "(the archive already holds the shards)") from None
        raise
    result.steps.append("removed the shards from main")
    return outcome.oid if hasattr(outcome, "oid") else outcome


def archive_card(archive_repo: str, source_repo: str, records: list, paths: list) -> str:
    """The archive repo's card: what it holds, from where, and how to load it."""
    from vdata_hub.repo.card import check_card, render_template

    axes = sorted(layout.shards_by_axis(paths))
    text = render_template("archive_card.md.j2", repo=archive_repo, source=source_repo, records=records,
                           axes=axes, config_default=layout.config_pattern(),
                           config_patterns={axis: layout.config_pattern(axis) for axis in axes},
                           rows=sum(r["rows"] for r in records))
    check_card(text)
    return text


def archive_records(repo: str, revision: str | None, token: str | None) -> list[dict]:
    """The archive records of `repo` at `revision` (empty when it never moved anything)."""
    hf_api = hub.api(token)
    snap = snapshot(hf_api, repo, revision or "main", token)
    return list(read_json(hf_api, snap, snap.archive_records(), token).values())


def archived_shards(repo: str, revision: str | None, token: str | None) -> list[tuple[str, str, str]]:
    """[(archive repo, its commit, shard path)] of every row `repo` moved to archive repos, for
    readers that include the archive (stats, pull)."""
    sources = []
    for archive_repo, paths in _archived_paths(archive_records(repo, revision, token)).items():
        commit = hub.main_sha(hub.api(token), archive_repo, token)
        sources += [(archive_repo, commit, path) for path in sorted(paths)]
    return sources


def _archived_paths(records: list[dict]) -> dict[str, set]:
    found: dict[str, set] = {}
    for record in records:
        found.setdefault(record["archive_repo"], set()).update(record["shards"])
    return found
