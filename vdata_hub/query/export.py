"""Writers of a query's result: JSON Lines, text (one record per line, escaped), CSV and
Parquet, each streaming Arrow batches to a file and counting rows for the progress bar.
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
            raise VdataError(f"unknown format {fmt!r}: use -j (json), -t (text), -c (csv) or -p (parquet)")
        return fmt
    suffix = out_path.suffix.lower()
    if suffix not in FORMAT_BY_EXTENSION:
        raise VdataError(f"cannot tell the format of {out_path.name!r} from its extension: "
                         "pass -j, -t, -c or -p, or name it .jsonl, .txt, .csv or .parquet")
    return FORMAT_BY_EXTENSION[suffix]


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
