"""What is known about the rows already on main, for the duplicate checks of contribute and
review: today the text hash of every row, read column-only with range requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vdata_hub import hub
from vdata_hub.errors import HubError
from vdata_hub.repo import layout


@dataclass
class MainHashes:
    """Text hashes of every row on main and what reading them cost."""

    hashes: np.ndarray
    files: int
    bytes_read: int
    bytes_total: int


class _CountingFile:
    """A file-like wrapper that counts the bytes actually read (the fsspec file does no read-ahead)."""

    def __init__(self, f):
        self.f, self.bytes_read = f, 0

    def read(self, size=-1):
        data = self.f.read(size)
        self.bytes_read += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self.f, name)


def read_main_hashes(repo: str, token: str | None = None, revision: str = "main",
                     hf_api=None) -> MainHashes:
    """The `text_hash` column of every shard under data/ at `revision`, reading only that column
    (plus each file's footer) with exact HTTP range requests, never the texts."""
    import pyarrow.parquet as pq
    from huggingface_hub import HfFileSystem
    from huggingface_hub.errors import RemoteEntryNotFoundError

    hf_api = hf_api or hub.api(token)
    with hub.errors(repo, token, "reading main"):
        try:
            entries = [e for e in hf_api.list_repo_tree(repo, path_in_repo=layout.DATA_DIR, recursive=True,
                                                         repo_type="dataset", revision=revision)
                       if getattr(e, "size", None) is not None and layout.is_shard(e.path)]
        except RemoteEntryNotFoundError:
            entries = []
        fs = HfFileSystem(token=token, skip_instance_cache=True)
        parts, read, total = [], 0, 0
        for entry in entries:
            total += entry.size
            with fs.open(f"datasets/{repo}@{revision}/{entry.path}", "rb", cache_type="none") as raw:
                f = _CountingFile(raw)
                parquet = pq.ParquetFile(f, pre_buffer=False)
                if "text_hash" not in parquet.schema_arrow.names:
                    raise HubError(f"{entry.path} on {repo} has no text_hash column; it was not written by "
                                   "vdata contribute (ask a maintainer to re-shard it)")
                column = parquet.read(columns=["text_hash"]).column(0)
                parts.append(np.asarray(column.fill_null(0), np.int64))
                read += f.bytes_read
    hashes = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return MainHashes(hashes=hashes, files=len(entries), bytes_read=read, bytes_total=total)
