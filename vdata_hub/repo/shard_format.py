"""How every Parquet shard of a vdata repo is written, by `contribute` and by `compact` alike.

- zstd; dictionary encoding only for the low-cardinality provenance columns;
- a page index, so readers (the dataset viewer, DuckDB, `vdata pull`) can skip pages;
- content-defined chunking of pages where the installed pyarrow has it (pyarrow >= 21): a page ends
  where its content says, not at a fixed size, so the same rows written into another file make the
  same pages, and a compacted shard re-uploads little more than what changed to a deduplicating
  store (the Hub's Xet storage); contributed and compacted shards must use the same settings for
  that to work;
- row groups of at most ROW_GROUP_BYTES of Arrow data (the dataset viewer reads a row group at
  once and refuses ones much larger than a few hundred MB).
"""

from __future__ import annotations

import inspect
from functools import lru_cache

from vdata_hub.generation.records import ARROW_SCHEMA

COMPRESSION = "zstd"
NO_DICTIONARY = {"id", "plan_key", "text", "prompt", "text_hash", "created_at", "variables"}
ROW_GROUP_BYTES = 100 * 2**20


@lru_cache(maxsize=1)
def content_defined_chunking() -> bool:
    """Whether the installed pyarrow writes Parquet with content-defined chunking."""
    import pyarrow.parquet as pq

    return "use_content_defined_chunking" in inspect.signature(pq.ParquetWriter.__init__).parameters or \
        "use_content_defined_chunking" in inspect.signature(pq.write_table).parameters


def writer_options(schema=ARROW_SCHEMA) -> dict:
    options = {"compression": COMPRESSION, "write_page_index": True,
               "use_dictionary": [name for name in schema.names if name not in NO_DICTIONARY]}
    if content_defined_chunking():
        options["use_content_defined_chunking"] = True
    return options


def open_writer(path, schema=ARROW_SCHEMA, metadata: dict | None = None):
    """A ParquetWriter with the shard settings; `metadata`: key-value pairs for the file's footer."""
    import pyarrow.parquet as pq

    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
    return pq.ParquetWriter(str(path), schema, **writer_options(schema))
