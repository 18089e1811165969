"""`vdata pull`: export rows of the Hub dataset, or the result of one read-only SQL query, to a
JSON Lines, text, CSV or Parquet file.

This module plans a pull: it pins the revision to a commit, lists its shards, builds the views
and the query. Queries run in DuckDB directly over the Hub's Parquet shards (shard_reader's
filesystem), so a selective query fetches only the footers, row groups and columns it needs. User
SQL passes `sql_guard.check_query` first, then runs in `sandbox`'s locked-down connection;
`export` writes the result.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vdata_hub import hub
from vdata_hub.config import resolve_repo
from vdata_hub.errors import HubError, VdataError
from vdata_hub.generation.records import RECORD_FIELDS
from vdata_hub.query.export import parse_size, resolve_format
from vdata_hub.query.sandbox import (DEFAULT_MAX_SIZE, DEFAULT_MEMORY_LIMIT, DEFAULT_THREADS, DEFAULT_TIMEOUT_S,
                                     lock_down, new_connection, quote_identifier, run_to_file)
from vdata_hub.query.shard_reader import hub_filesystem
from vdata_hub.query.sql_guard import check_query, has_limit, tables_in
from vdata_hub.repo import layout

ALL_ROWS_VIEW = "vdata"

EXAMPLE_QUERY = """-- vdata pull: write ONE read-only query below, save and quit; the result goes to {out}.
-- Lines starting with -- are comments. Leave only comments to cancel.
-- Tables: {views}
--   vdata holds every row; each other table holds one bias axis.
-- Columns: {columns}
--
-- Example: healthcare texts of the gender axis
SELECT id, domain, "group", text
FROM {example_view}
WHERE domain = 'healthcare'
LIMIT 100
"""


@dataclass
class PullResult:
    out: str
    format: str
    rows: int
    repo: str
    commit: str

    def summary(self) -> str:
        return f"wrote {self.rows} rows ({self.format}) to {self.out} from {self.repo}@{self.commit[:12]}"


@dataclass
class DatasetLayout:
    """The Parquet shards of one repo revision, pinned to its commit: {path in repo: size}; with
    `archives`, the layouts of the archive repos holding rows this revision moved out."""

    repo: str
    commit: str
    shard_sizes: dict[str, int]
    archives: list = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"hf://datasets/{self.repo}@{self.commit}/{path}"

    def parts(self) -> list["DatasetLayout"]:
        return [self, *self.archives]

    def views(self) -> dict[str, list[str]]:
        """View name -> hf:// file URLs: `vdata` over every shard, plus one view per axis (main's
        shards, then the archives')."""
        views = {ALL_ROWS_VIEW: [part.url(path) for part in self.parts() for path in part.shard_sizes]}
        for part in self.parts():
            for axis, paths in layout.shards_by_axis(part.shard_sizes).items():
                if axis != ALL_ROWS_VIEW:
                    views.setdefault(axis, []).extend(part.url(path) for path in paths)
        return views


def pull(out, format=None, repo=None, revision=None, config=None, limit=None, sql=None, progress=False, *,
         token=None, timeout=DEFAULT_TIMEOUT_S, memory_limit=DEFAULT_MEMORY_LIMIT, threads=None,
         max_size=DEFAULT_MAX_SIZE, include_archive=False) -> PullResult:
    """Write the selected rows (or the query's result) to OUT atomically; return what was written.

    `include_archive` adds the rows the revision moved to archive repos (`vdata archive`) to every view.

    `max_size` (bytes, or "500MB", "2GB"; 0 or None: no limit) caps the result, in memory and in
    the file: a larger one stops with an error and leaves no file.
    `sql=True` opens $EDITOR on an example query and runs what was saved. `progress`: a bar of
    the rows written (see vdata_hub.progress).
    `threads=None` scans with one thread when the query ends in a LIMIT (parallel scans would
    fetch row groups past the limit) and with DEFAULT_THREADS otherwise.
    """
    out_path = Path(out)
    output_format = resolve_format(out_path, format)
    limit = _check_limit(limit)
    max_bytes = parse_size(max_size)
    if sql is not None and config is not None:
        raise VdataError("`config` and `sql` together: name the axis view in the query instead "
                         f"(SELECT ... FROM {config})")
    if isinstance(sql, str):
        check_query(sql, None)  # what will be refused is refused before any network call
    repo = resolve_repo(repo)
    connecting = _in_background(new_connection, memory_limit)  # overlaps the Hub calls below
    with hub.errors(repo, token, "pulling", revision):
        try:
            layout, query, views = _plan(out_path, repo, revision, config, limit, sql, token, include_archive)
            if threads is None:
                threads = 1 if has_limit(query) else DEFAULT_THREADS
            filesystem = hub_filesystem(layout, token)
        except BaseException:
            _close_when_connected(connecting)
            raise
        try:
            filesystem.prefetch_footers(path for files in views.values() for path in files)
            connection = lock_down(connecting.result(), views, filesystem=filesystem, threads=threads)
            try:
                rows = run_to_file(connection, query, out_path, output_format, timeout=timeout, progress=progress,
                                   total=limit, max_bytes=max_bytes)
            finally:
                connection.close()
        finally:
            filesystem.close()
    return PullResult(out=str(out_path), format=output_format, rows=rows, repo=repo, commit=layout.commit)


def _plan(out_path: Path, repo, revision, config, limit, sql, token, include_archive=False):
    """The pinned layout, the checked query, and the views it reads."""
    layout = dataset_layout(repo, revision, token, include_archive)
    views = layout.views()
    if sql is True:
        sql = edit_query(out_path, list(views))
    if sql is not None:
        query = check_query(str(sql), list(views))
    else:
        query = _config_query(config, views)
    if limit is not None:
        query = f"SELECT * FROM ({query}) AS pulled LIMIT {limit}"
    # Only the views the query reads: each view costs a footer read when it is created.
    needed = tables_in(query)
    return layout, query, {name: files for name, files in views.items() if name.lower() in needed}


def _in_background(function, *args):
    """Start function(*args) in a thread; return its Future."""
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vdata-pull")
    future = executor.submit(function, *args)
    executor.shutdown(wait=False)
    return future


def _close_when_connected(connecting) -> None:
    if connecting.exception() is None:
        connecting.result().close()


def _check_limit(limit):
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise VdataError(f"`limit` must be a whole number of rows >= 0, not {limit!r}")
    return limit


def _config_query(config, views: dict[str, list[str]]) -> str:
    if config in (None, "default", ALL_ROWS_VIEW):
        return f"SELECT * FROM {ALL_ROWS_VIEW}"
    if config not in views:
        axes = ", ".join(name for name in views if name != ALL_ROWS_VIEW)
        raise VdataError(f"unknown config {config!r}: this revision has {axes}")
    return f"SELECT * FROM {quote_identifier(config)}"


def dataset_layout(repo: str, revision: str | None, token, include_archive: bool = False) -> DatasetLayout:
    """Pin the revision to its commit and list its shards (repo.layout's data files).

    One API call: the repo info at the revision carries its commit and, with `files_metadata`,
    every file's size, both from the same snapshot. `include_archive`: also the shards its archive
    records say were moved to archive repos, each archive pinned to its current commit.
    """
    with hub.errors(repo, token, "reading the repo", revision):
        info = hub.dataset_info(hub.api(token), repo, revision, files_metadata=True)
    shard_sizes = {sibling.rfilename: sibling.size for sibling in info.siblings or []
                   if layout.is_shard(sibling.rfilename) and sibling.size}
    result = DatasetLayout(repo=repo, commit=info.sha, shard_sizes=dict(sorted(shard_sizes.items())))
    if include_archive:
        result.archives = _archive_layouts(repo, info, token)
    if not any(part.shard_sizes for part in result.parts()):
        raise HubError(f"{repo}@{revision or 'main'} has no Parquet shards under data/<axis>/: nothing to pull")
    return result


def _archive_layouts(repo: str, info, token) -> list[DatasetLayout]:
    """Layouts of the archive repos, limited to the shards the archive records of `info` name."""
    import json

    from huggingface_hub import HfApi

    from vdata_hub.hub import errors

    api = HfApi(token=token)
    moved: dict[str, set] = {}
    with errors(repo, token, "reading the archive records"):
        for sibling in info.siblings or []:
            if layout.is_archive_record(sibling.rfilename):
                local = api.hf_hub_download(repo, sibling.rfilename, repo_type="dataset", revision=info.sha)
                record = json.loads(Path(local).read_text(encoding="utf-8"))
                moved.setdefault(record["archive_repo"], set()).update(record["shards"])
    layouts = []
    for archive_repo, paths in sorted(moved.items()):
        with hub.errors(archive_repo, token, "reading the archive repo"):
            archived = hub.dataset_info(api, archive_repo, None, files_metadata=True)
        sizes = {s.rfilename: s.size for s in archived.siblings or [] if s.rfilename in paths and s.size}
        layouts.append(DatasetLayout(repo=archive_repo, commit=archived.sha, shard_sizes=dict(sorted(sizes.items()))))
    return layouts


def edit_query(out_path: Path, views: list[str]) -> str:
    """Open $VISUAL/$EDITOR (vi when unset) on an example query; return what was saved."""
    example = EXAMPLE_QUERY.format(out=out_path, views=", ".join(views), columns=", ".join(RECORD_FIELDS),
                                   example_view=quote_identifier(views[1] if len(views) > 1 else views[0]))
    handle, path = tempfile.mkstemp(prefix="vdata-pull-", suffix=".sql")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as query_file:
            query_file.write(example)
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        try:
            status = subprocess.call([*shlex.split(editor), path])
        except OSError as exc:
            raise VdataError(f"could not start the editor {editor!r} ({exc.strerror}); set $EDITOR or pass "
                             "the query as `sql`") from None
        if status != 0:
            raise VdataError(f"the editor {editor!r} exited with status {status}; nothing pulled")
        saved = Path(path).read_text(encoding="utf-8")
    finally:
        os.unlink(path)
    if not "\n".join(line for line in saved.splitlines() if not line.strip().startswith("--")).strip():
        raise VdataError("the saved query was empty; nothing pulled")
    return saved


