"""Writers of a query's result: JSON Lines, text (one record per line, escaped), CSV and
Parquet, each streaming Arrow batches to a file, counting rows for the progress bar and keeping
the result under a size limit (`max_size`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from vdata_hub.errors import VdataError

FORMAT_BY_EXTENSION = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".txt": "text",
                       ".csv": "csv", ".parquet": "parquet"}
FORMATS = ("json", "text", "csv", "parquet")


def resolve_format(out_path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise VdataError(f"unknown `format` {fmt!r}: use json, text, csv or parquet")
        return fmt
    suffix = out_path.suffix.lower()
    if suffix not in FORMAT_BY_EXTENSION:
        raise VdataError(f"cannot tell the format of {out_path.name!r} from its extension: "
                         "pass `format` (json, text, csv or parquet), or name it .jsonl, .txt, .csv or .parquet")
    return FORMAT_BY_EXTENSION[suffix]


class SizeLimit:
    """The most bytes a result may take: each batch is checked in memory before it is converted
    (so a 2 GB value never reaches Python) and the file after each batch is written. None: no limit."""

    def __init__(self, max_bytes: int | None):
        self.max_bytes = max_bytes

    def batches(self, reader, columns: list | None = None):
        """The reader's batches, refusing one whose written columns alone exceed the limit."""
        for batch in reader:
            if self.max_bytes is not None:
                size = sum(batch.column(name).nbytes for name in columns) if columns else batch.nbytes
                if size > self.max_bytes:
                    raise self.exceeded()
            yield batch

    def check(self, written: int) -> None:
        if self.max_bytes is not None and written > self.max_bytes:
            raise self.exceeded()

    def exceeded(self) -> VdataError:
        return VdataError(f"the result is larger than {format_size(self.max_bytes)} (`max_size`); nothing was "
                          "written: narrow the query (WHERE, LIMIT, fewer columns) or raise `max_size`")


def parse_size(value) -> int | None:
    """Bytes from 1000000, "500MB", "1.5GB", "2GiB"; None for no limit (None, 0, "none")."""
    if value is None or isinstance(value, bool):
        return None if value is None else _size_error(value)
    text = str(value).strip().replace(" ", "").upper()
    if text in ("0", "NONE", ""):
        return None
    number, unit = text.rstrip("KMGTIB"), text[len(text.rstrip("KMGTIB")):]
    try:
        amount = float(number)
    except ValueError:
        return _size_error(value)
    if unit not in SIZE_UNITS or amount <= 0:
        return _size_error(value)
    return int(amount * SIZE_UNITS[unit])


SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _size_error(value):
    raise VdataError(f"`max_size` {value!r}: expected bytes (1000000) or a size such as 500MB, 2GB or 1GiB; "
                     "0 for no limit")


def format_size(size: int) -> str:
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} bytes"


def _write_json(reader, path: str, progress, limit: SizeLimit) -> int:
    rows = 0
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for batch in limit.batches(reader):
            for row in batch.to_pylist():
                handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            limit.check(handle.tell())
            rows += batch.num_rows
            progress.update(batch.num_rows)
    return rows


def _write_csv(reader, path: str, progress, limit: SizeLimit) -> int:
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(reader.schema.names)
        for batch in limit.batches(reader):
            writer.writerows([_csv_value(value) for value in row.values()] for row in batch.to_pylist())
            limit.check(handle.tell())
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


def _write_text(reader, path: str, progress, limit: SizeLimit) -> int:
    names = reader.schema.names
    if "text" in names:
        column = "text"
    elif len(names) == 1:
        column = names[0]
    else:
        raise VdataError(f"text output needs a `text` column or a single column; the query returns {', '.join(names)}")
    rows = 0
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for batch in limit.batches(reader, [column]):
            for value in batch.column(column).to_pylist():
                handle.write(escape_text("" if value is None else str(value)) + "\n")
            limit.check(handle.tell())
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


def _write_parquet(reader, path: str, progress, limit: SizeLimit) -> int:
    import os

    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(path, reader.schema) as writer:
        for batch in limit.batches(reader):
            writer.write_batch(batch)
            limit.check(os.path.getsize(path))
            rows += batch.num_rows
            progress.update(batch.num_rows)
    return rows


WRITERS = {"json": _write_json, "csv": _write_csv, "text": _write_text, "parquet": _write_parquet}
