"""`vdata pull`: export rows of the Hub dataset, or the result of one read-only SQL query, to a
JSON Lines, text, CSV or Parquet file.

Queries run in DuckDB directly over the Hub's Parquet shards (an HfFileSystem registered in
DuckDB, reading through shard_reader.ShardReader), so a selective query fetches only the footers,
row groups and columns it needs instead of the whole dataset. User SQL passes
`sql_guard.check_query` first; then it runs on a connection locked down after the views exist:
only the dataset's own files are readable, nothing is writable, configuration is locked, and
memory, threads and time are capped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vdata_hub.config import resolve_repo
from vdata_hub.errors import HubError, SQLRefused, VdataError
from vdata_hub.records import RECORD_FIELDS
from vdata_hub.sql_guard import check_query, has_limit, tables_in

FORMAT_BY_EXTENSION = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".txt": "text",
                       ".csv": "csv", ".parquet": "parquet"}
FORMATS = ("json", "text", "csv", "parquet")
ALL_ROWS_VIEW = "vdata"
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_LIMIT = "2GB"
DEFAULT_THREADS = 2  # remote reads go through Python (fsspec): more threads read ahead more, barely faster
READ_BLOCK_BYTES = 256 * 1024  # files other than the pinned shards (DuckDB's lock-down refuses them anyway)
READ_THREADS = 4  # background range reads: footers of a view's shards at once, read-ahead
PINNED_MTIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
ROWS_PER_BATCH = 8192

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
    """The Parquet shards of one repo revision, pinned to its commit: {path in repo: size}."""

    repo: str
    commit: str
    shard_sizes: dict[str, int]

    def url(self, path: str) -> str:
        return f"hf://datasets/{self.repo}@{self.commit}/{path}"

    def views(self) -> dict[str, list[str]]:
        """View name -> hf:// file URLs: `vdata` over every shard, plus one view per axis."""
        views = {ALL_ROWS_VIEW: [self.url(path) for path in self.shard_sizes]}
        for path in self.shard_sizes:
            axis = path.split("/")[1]
            if axis != ALL_ROWS_VIEW:
                views.setdefault(axis, []).append(self.url(path))
        return views


def pull(out, format=None, repo=None, revision=None, config=None, limit=None, sql=None, quiet=False, *,
         token=None, timeout=DEFAULT_TIMEOUT_S, memory_limit=DEFAULT_MEMORY_LIMIT, threads=None) -> PullResult:
    """Write the selected rows (or the query's result) to OUT atomically; return what was written.

    `sql=True` (a bare `--sql`) opens $EDITOR on an example query and runs what was saved.
    `threads=None` scans with one thread when the query ends in a LIMIT (parallel scans would
    fetch row groups past the limit) and with DEFAULT_THREADS otherwise.
    """
    out_path = Path(out)
    output_format = resolve_format(out_path, format)
    limit = _check_limit(limit)
    if sql is not None and config is not None:
        raise VdataError("--config and --sql together: name the axis view in the query instead "
                         f"(SELECT ... FROM {config})")
    repo = resolve_repo(repo)
    connecting = _in_background(new_connection, memory_limit)  # overlaps the Hub calls below
    try:
        layout, query, views = _plan(out_path, repo, revision, config, limit, sql, token)
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
            rows = run_to_file(connection, query, out_path, output_format, timeout=timeout, quiet=quiet,
                               total=limit)
        finally:
            connection.close()
    finally:
        filesystem.close()
    return PullResult(out=str(out_path), format=output_format, rows=rows, repo=repo, commit=layout.commit)


def _plan(out_path: Path, repo, revision, config, limit, sql, token):
    """The pinned layout, the checked query, and the views it reads."""
    layout = dataset_layout(repo, revision, token)
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


def resolve_format(out_path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise VdataError(f"unknown format {fmt!r}: use -j (json), -t (text), -c (csv) or -p (parquet)")
        return fmt
    suffix = out_path.suffix.lower()
    if suffix not in FORMAT_BY_EXTENSION:
        raise VdataError(f"cannot tell the format of {out_path.name!r} from its extension: "
                         "pass -j, -t, -c or -p, or name it .jsonl, .txt, .csv or .parquet")
    return FORMAT_BY_EXTENSION[suffix]


def _check_limit(limit):
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise VdataError(f"--limit must be a whole number of rows >= 0, not {limit!r}")
    return limit


def _config_query(config, views: dict[str, list[str]]) -> str:
    if config in (None, "default", ALL_ROWS_VIEW):
        return f"SELECT * FROM {ALL_ROWS_VIEW}"
    if config not in views:
        axes = ", ".join(name for name in views if name != ALL_ROWS_VIEW)
        raise VdataError(f"unknown config {config!r}: this revision has {axes}")
    return f"SELECT * FROM {_quote_identifier(config)}"


def dataset_layout(repo: str, revision: str | None, token) -> DatasetLayout:
    """Pin the revision to its commit and list its shards, data/<axis>/<contribution>.parquet.

    One API call: the repo info at the revision carries its commit and, with `files_metadata`,
    every file's size, both from the same snapshot.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(token=token)
    try:
        info = api.dataset_info(repo, revision=revision, files_metadata=True)
    except RevisionNotFoundError:
        raise HubError(f"revision {revision!r} not found in {repo}: use a branch, tag, commit or refs/pr/N") from None
    except RepositoryNotFoundError:
        raise HubError(f"dataset {repo} not found, or your token cannot read it (set HF_TOKEN or --repo)") from None
    shard_sizes = {sibling.rfilename: sibling.size for sibling in info.siblings or []
                   if sibling.rfilename.startswith("data/") and sibling.rfilename.count("/") == 2
                   and sibling.rfilename.endswith(".parquet") and sibling.size}
    if not shard_sizes:
        raise HubError(f"{repo}@{revision or 'main'} has no Parquet shards under data/<axis>/: nothing to pull")
    return DatasetLayout(repo=repo, commit=info.sha, shard_sizes=dict(sorted(shard_sizes.items())))


def open_locked_connection(views: dict[str, list[str]], *, filesystem=None,
                           memory_limit=DEFAULT_MEMORY_LIMIT, threads=DEFAULT_THREADS):
    """An in-memory DuckDB connection with one view per entry of `views`, then locked down.

    After locking, only the views' own files are readable (allowed_paths), no other file or URL can
    be read or written, extensions cannot be installed or loaded, nothing spills to disk, and no
    setting can be changed back. `filesystem` (an fsspec filesystem such as HfFileSystem) serves
    the views' URLs; without it the views read local paths.
    """
    return lock_down(new_connection(memory_limit), views, filesystem=filesystem, threads=threads)


def new_connection(memory_limit=DEFAULT_MEMORY_LIMIT):
    """A fresh in-memory DuckDB database, not yet locked: pass it to lock_down before any query.

    Creating one takes tens of milliseconds of native code that releases the GIL, so `pull`
    starts it in a thread while it talks to the Hub.
    """
    import duckdb

    return duckdb.connect(":memory:", config={
        "threads": DEFAULT_THREADS, "memory_limit": str(memory_limit), "temp_directory": "",
        "autoinstall_known_extensions": False, "autoload_known_extensions": False,
        "python_enable_replacements": False, "allow_community_extensions": False,
    })


def lock_down(connection, views: dict[str, list[str]], *, filesystem=None, threads=DEFAULT_THREADS):
    """Create the views on a connection from new_connection, then lock it (see
    open_locked_connection); the connection is closed if that fails."""
    try:
        connection.execute(f"SET threads = {int(threads)}")
        # Read pages as the scan needs them rather than whole row groups ahead, parse each footer
        # once, and skip DuckDB's file cache (it fetched small shards whole): all three cut the
        # bytes a selective query fetches from the Hub (see docs/benchmarks.md).
        connection.execute("SET disable_parquet_prefetching = true")
        connection.execute("SET parquet_metadata_cache = true")
        connection.execute("SET enable_external_file_cache = false")
        if filesystem is not None:
            connection.register_filesystem(filesystem)
        for name, files in views.items():
            file_list = ", ".join(_quote_literal(path) for path in files)
            connection.execute(f"CREATE VIEW {_quote_identifier(name)} AS SELECT * FROM read_parquet([{file_list}])")
        allowed = sorted({path for files in views.values() for path in files})
        connection.execute(f"SET allowed_paths = [{', '.join(_quote_literal(path) for path in allowed)}]")
        connection.execute("SET allowed_directories = []")
        connection.execute("SET enable_external_access = false")
        connection.execute("SET allow_persistent_secrets = false")
        connection.execute("SET lock_configuration = true")
    except Exception:
        connection.close()
        raise
    return connection


def hub_filesystem(layout: DatasetLayout, token):
    """An HfFileSystem for the pinned shards that reads them through ShardReaders (footers in
    parallel, column-chunk-sized range reads, read-ahead: see shard_reader.py) and answers glob,
    size and modification time from the listing already fetched (files addressed by commit never
    change), so DuckDB's file checks cost no API call. `prefetch_footers(urls)` starts the
    footer reads; `close()` waits for reads in flight and stops the reading threads."""
    from concurrent.futures import ThreadPoolExecutor

    from huggingface_hub import HfFileSystem, constants, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

    from vdata_hub.shard_reader import ShardFile, ShardReader

    executor = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="vdata-pull-read")
    headers = build_hf_headers(token=token)

    def fetcher(path: str):
        url = hf_hub_url(layout.repo, path, repo_type="dataset", revision=layout.commit, endpoint=constants.ENDPOINT)

        def fetch(start: int, end: int) -> bytes:
            response = http_backoff("GET", url, headers={**headers, "range": f"bytes={start}-{end - 1}"},
                                    timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)
            hf_raise_for_status(response)
            return response.content
        return fetch

    readers = {layout.url(path)[len("hf://"):]: ShardReader(size, fetcher(path), executor)
               for path, size in layout.shard_sizes.items()}

    def pinned(path) -> str | None:
        """The path's name when it is one of the pinned shards, else None."""
        name = str(path).removeprefix("hf://")
        return name if name in readers else None

    class PinnedHfFileSystem(HfFileSystem):
        def info(self, path, refresh=False, revision=None, **kwargs):
            if name := pinned(path):
                return {"name": name, "size": readers[name].size, "type": "file"}
            return super().info(path, refresh=refresh, revision=revision, **kwargs)

        def modified(self, path, **kwargs):
            if pinned(path):
                return PINNED_MTIME
            return super().modified(path, **kwargs)

        def glob(self, path, maxdepth=None, **kwargs):
            if name := pinned(path):
                return [name]
            return super().glob(path, maxdepth=maxdepth, **kwargs)

        def _open(self, path, mode="rb", block_size=None, revision=None, **kwargs):
            if mode == "rb" and revision is None and (name := pinned(path)):
                return ShardFile(readers[name])
            return super()._open(path, mode=mode, block_size=block_size, revision=revision, **kwargs)

        def prefetch_footers(self, urls):
            for name in filter(None, map(pinned, urls)):
                readers[name].prefetch_tail()

        def close(self):
            executor.shutdown(wait=True, cancel_futures=True)

    return PinnedHfFileSystem(endpoint=constants.ENDPOINT, token=token, skip_instance_cache=True,
                              block_size=READ_BLOCK_BYTES)


def run_to_file(connection, query: str, out_path: Path, output_format: str, *, timeout=DEFAULT_TIMEOUT_S,
                quiet=False, total=None) -> int:
    """Run `query` and write its rows to out_path through a temp file in the same folder.

    The rename happens only after the last row is written, so a failed, refused or timed-out
    query leaves no partial output. The timeout covers the query and the writing.
    """
    import duckdb
    from tqdm import tqdm

    out_path.parent.mkdir(parents=True, exist_ok=True)
    temp_name = str(out_path.parent / f".{out_path.name}.{uuid.uuid4().hex[:12]}.part")
    timer = threading.Timer(float(timeout), connection.interrupt)
    timer.daemon = True
    progress = tqdm(total=total, unit=" rows", disable=quiet, delay=1.0, file=sys.stderr, desc="pull")
    try:
        timer.start()
        reader = connection.sql(query).to_arrow_reader(ROWS_PER_BATCH)
        rows = WRITERS[output_format](reader, temp_name, progress)
        timer.cancel()
        os.replace(temp_name, out_path)
        return rows
    except (duckdb.Error, OSError) as exc:
        # Errors raised while Arrow pulls batches arrive as OSError carrying DuckDB's message.
        raise _query_error(exc, timeout, connection) from None
    finally:
        timer.cancel()
        progress.close()
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def _query_error(exc: Exception, timeout, connection) -> Exception:
    """A one-line user error for a failed query; OS errors that are not DuckDB's are re-raised."""
    import duckdb

    message = _first_line(exc)
    if isinstance(exc, duckdb.InterruptException) or message.startswith("INTERRUPT Error"):
        return SQLRefused(f"query stopped after {timeout:g} s (the time limit): narrow it with WHERE or LIMIT, "
                          "or raise --timeout")
    if isinstance(exc, duckdb.OutOfMemoryException) or message.startswith("Out of Memory Error"):
        return SQLRefused(f"query needs more than the {connection_memory(connection)} memory limit: "
                          "select fewer columns or rows")
    if isinstance(exc, duckdb.PermissionException) or message.startswith("Permission Error"):
        return SQLRefused(f"refused by DuckDB's lock-down: {message}")
    if isinstance(exc, duckdb.Error) or " Error: " in message:
        return VdataError(f"query failed: {message}")
    return exc


def connection_memory(connection) -> str:
    try:
        return connection.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    except Exception:
        return "configured"


def _write_json(reader, path: str, progress) -> int:
    rows = 0
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for batch in reader:
            for row in batch.to_pylist():
                handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            rows += batch.num_rows
            progress.update(batch.num_rows)
    return rows


def _write_csv(reader, path: str, progress) -> int:
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(reader.schema.names)
        for batch in reader:
            writer.writerows([_csv_value(value) for value in row.values()] for row in batch.to_pylist())
            rows += batch.num_rows
            progress.update(batch.num_rows)
    return rows


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def _write_text(reader, path: str, progress) -> int:
    names = reader.schema.names
    if "text" in names:
        column = "text"
    elif len(names) == 1:
        column = names[0]
    else:
        raise VdataError(f"text output needs a `text` column or a single column; the query returns {', '.join(names)}")
    rows = 0
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for batch in reader:
            for value in batch.column(column).to_pylist():
                handle.write(escape_text("" if value is None else str(value)) + "\n")
            rows += batch.num_rows
            progress.update(batch.num_rows)
    return rows


def escape_text(text: str) -> str:
    """One record per line: backslash -> \\\\, newline -> \\n, carriage return -> \\r."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def unescape_text(line: str) -> str:
    """The inverse of escape_text, for readers of text pulls."""
    out, chars = io.StringIO(), iter(line)
    for char in chars:
        if char != "\\":
            out.write(char)
            continue
        following = next(chars, "")
        out.write({"n": "\n", "r": "\r", "\\": "\\"}.get(following, "\\" + following))
    return out.getvalue()


def _write_parquet(reader, path: str, progress) -> int:
    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(path, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
            progress.update(batch.num_rows)
    return rows


WRITERS = {"json": _write_json, "csv": _write_csv, "text": _write_text, "parquet": _write_parquet}


def edit_query(out_path: Path, views: list[str]) -> str:
    """Open $VISUAL/$EDITOR (vi when unset) on an example query; return what was saved."""
    example = EXAMPLE_QUERY.format(out=out_path, views=", ".join(views), columns=", ".join(RECORD_FIELDS),
                                   example_view=_quote_identifier(views[1] if len(views) > 1 else views[0]))
    handle, path = tempfile.mkstemp(prefix="vdata-pull-", suffix=".sql")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as query_file:
            query_file.write(example)
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        try:
            status = subprocess.call([*shlex.split(editor), path])
        except OSError as exc:
            raise VdataError(f"could not start the editor {editor!r} ({exc.strerror}); set $EDITOR or pass "
                             "the query: --sql \"SELECT ...\"") from None
        if status != 0:
            raise VdataError(f"the editor {editor!r} exited with status {status}; nothing pulled")
        saved = Path(path).read_text(encoding="utf-8")
    finally:
        os.unlink(path)
    if not "\n".join(line for line in saved.splitlines() if not line.strip().startswith("--")).strip():
        raise VdataError("the saved query was empty; nothing pulled")
    return saved


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
