"""The DuckDB sandbox that user SQL runs in: an in-memory connection whose views are created
first, then locked down (only the dataset's own files readable, nothing writable, configuration
locked, memory, threads and time capped). User SQL has already passed sql_guard.check_query; the
lock-down is the second wall. Results stream to a file through export's writers.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

from vdata_hub.errors import SQLRefused, VdataError
from vdata_hub.query.export import WRITERS, SizeLimit

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_LIMIT = "2GB"
DEFAULT_MAX_SIZE = "1GB"  # the most a result may take, in memory and in the file (a runaway query stops)
DEFAULT_THREADS = 2  # remote reads go through Python (fsspec): more threads read ahead more, barely faster
ROWS_PER_BATCH = 8192


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
            file_list = ", ".join(quote_literal(path) for path in files)
            connection.execute(f"CREATE VIEW {quote_identifier(name)} AS SELECT * FROM read_parquet([{file_list}])")
        allowed = sorted({path for files in views.values() for path in files})
        connection.execute(f"SET allowed_paths = [{', '.join(quote_literal(path) for path in allowed)}]")
        connection.execute("SET allowed_directories = []")
        connection.execute("SET enable_external_access = false")
        connection.execute("SET allow_persistent_secrets = false")
        connection.execute("SET lock_configuration = true")
    except Exception:
        connection.close()
        raise
    return connection


def run_to_file(connection, query: str, out_path: Path, output_format: str, *, timeout=DEFAULT_TIMEOUT_S,
                progress=False, total=None, max_bytes: int | None = None) -> int:
    """Run `query` and write its rows to out_path through a temp file in the same folder.

    The rename happens only after the last row is written, so a failed, refused, timed-out or
    too large (over `max_bytes`) query leaves no partial output. The timeout covers the query and
    the writing.
    """
    import duckdb

    from vdata_hub.progress import Reporter

    out_path.parent.mkdir(parents=True, exist_ok=True)
    temp_name = str(out_path.parent / f".{out_path.name}.{uuid.uuid4().hex[:12]}.part")
    timer = threading.Timer(float(timeout), connection.interrupt)
    timer.daemon = True
    bar = Reporter(progress).bar(total=total, unit=" rows", delay=1.0, desc="pull")
    try:
        timer.start()
        reader = connection.sql(query).to_arrow_reader(ROWS_PER_BATCH)
        rows = WRITERS[output_format](reader, temp_name, bar, SizeLimit(max_bytes))
        timer.cancel()
        os.replace(temp_name, out_path)
        return rows
    except (duckdb.Error, OSError) as exc:
        # Errors raised while Arrow pulls batches arrive as OSError carrying DuckDB's message.
        raise _query_error(exc, timeout, connection) from None
    finally:
        timer.cancel()
        bar.close()
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def _query_error(exc: Exception, timeout, connection) -> Exception:
    """A one-line user error for a failed query; OS errors that are not DuckDB's are re-raised."""
    import duckdb

    message = _first_line(exc)
    if isinstance(exc, duckdb.InterruptException) or message.startswith("INTERRUPT Error"):
        return SQLRefused(f"query stopped after {timeout:g} s (the time limit): narrow it with WHERE or LIMIT, "
                          "or raise `timeout`")
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


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
