"""Range reads of one Hub Parquet shard for DuckDB, in as few round trips as the bytes allow.

DuckDB reads a Parquet file through fsspec one small piece at a time: the 8-byte tail, the
footer, then per column chunk a page header and a page body. Over HTTP, each piece read on its
own is a round trip, and a fixed read-ahead block fetches bytes of columns the query never reads.
A ShardReader instead

- fetches the file's tail (footer included) in the background as soon as the pull knows the
  file is needed, so the footers of a view's shards arrive in parallel, while DuckDB starts;
- learns from the footer where each column chunk lies, and answers a read by fetching up to
  WINDOW_BYTES of that column chunk (never much past its end), so a page header and its body,
  or a whole small column chunk, come in one request;
- keeps AHEAD_BYTES of the column chunk being read fetched or in flight past the read, in
  background requests, so the link stays busy while DuckDB decodes instead of a round trip
  per page being waited for.

A query thus fetches the footers, the column chunks it reads, and at most about AHEAD_BYTES
past the point where it stops. The reader is thread-safe: DuckDB may read one file from
several threads. `hub_filesystem` gives DuckDB the pinned shards of a revision through ShardReaders.
"""

from __future__ import annotations

import bisect
import io
import struct
import threading
from concurrent.futures import Future
from datetime import datetime, timezone

TAIL_BYTES = 32 * 1024  # the footer of a shard of a few row groups fits; a larger one costs one more request
WINDOW_BYTES = 512 * 1024  # one request; half a compressed page of text (pages are 1 MB before compression)
AHEAD_BYTES = 1024 * 1024  # fetched or in flight past a read, to keep the link busy while DuckDB decodes
CHUNK_SLACK_BYTES = 1024  # fetched past a small column chunk's end: DuckDB's page-header reads overrun it
BLOCK_BYTES = 256 * 1024  # read size where the footer gives no column chunk (e.g. not Parquet)


class ShardReader:
    """The bytes of one remote file of known size, fetched by `fetch(start, end)` on demand.

    `executor` runs the background fetches (tail and read-ahead).
    """

    def __init__(self, size: int, fetch, executor):
        self.size = size
        self._fetch = fetch
        self._executor = executor
        self._lock = threading.Lock()
        self._segments: dict[int, tuple[int, Future]] = {}  # start -> (end, future of its bytes)
        self._chunk_starts: list[int] = []
        self._chunk_ends: list[int] = []

    def prefetch_tail(self) -> None:
        """Start fetching the footer in the background (once)."""
        start = max(0, self.size - TAIL_BYTES)
        with self._lock:
            if start in self._segments or not self.size:
                return
            future = self._add_segment(start, self.size)
        self._executor.submit(self._fill_tail, start, future)

    def read(self, start: int, length: int) -> bytes:
        end = self.size if length < 0 else min(self.size, start + length)
        pieces, position = [], start
        while position < end:
            segment_start, segment_end, data = self._bytes_at(position, end)
            pieces.append(data[position - segment_start:min(end, segment_end) - segment_start])
            position = min(end, segment_end)
        self._read_ahead(start, end)
        return b"".join(pieces)

    def _bytes_at(self, position: int, end: int) -> tuple[int, int, bytes]:
        """The segment holding `position`: waited for if in flight, fetched here if missing."""
        while True:
            with self._lock:
                found = self._segment_at(position)
                if found is None:
                    stop = self._fetch_stop(position, end)
                    future = self._add_segment(position, stop)
                    found = (position, stop, future)
                    fetch_here = True
                else:
                    fetch_here = False
            segment_start, segment_end, future = found
            if fetch_here:
                self._fill(segment_start, segment_end, future)
            try:
                return segment_start, segment_end, future.result()
            except Exception:
                with self._lock:
                    if self._segments.get(segment_start, (None, None))[1] is future:
                        del self._segments[segment_start]
                if fetch_here:
                    raise
                # A failed background fetch: fetch it again here, where the error can reach DuckDB.

    def _segment_at(self, position: int):
        for start, (end, future) in self._segments.items():
            if start <= position < end:
                return start, end, future
        return None

    def _fetch_stop(self, position: int, end: int) -> int:
        """Where a fetch from `position` stops: the window, cut at the column chunk's end and at
        the next segment already fetched or in flight."""
        chunk_end = self._chunk_end(position)
        if chunk_end is None:
            stop = max(end, min(self.size, position + BLOCK_BYTES))
        else:
            stop = max(end, min(chunk_end, position + WINDOW_BYTES))
            if stop >= chunk_end:  # DuckDB reads page headers into a fixed buffer that may overrun the chunk
                stop = max(stop, min(self.size, chunk_end + CHUNK_SLACK_BYTES))
        following = [start for start in self._segments if position < start < stop]
        return min(following, default=stop)

    def _chunk_end(self, position: int) -> int | None:
        index = bisect.bisect_right(self._chunk_starts, position) - 1
        if index >= 0 and position < self._chunk_ends[index]:
            return self._chunk_ends[index]
        return None

    def _add_segment(self, start: int, end: int) -> Future:
        future = Future()
        self._segments[start] = (end, future)
        return future

    def _fill(self, start: int, end: int, future: Future) -> None:
        try:
            future.set_result(self._fetch(start, end))
        except BaseException as exc:
            future.set_exception(exc)

    def _fill_tail(self, start: int, future: Future) -> None:
        """Fetch the tail and learn the column chunks from its footer before the readers waiting
        on the tail go on (their next reads are cut at chunk ends); a footer longer than the tail
        is read after, since reading it waits on the tail's own segment."""
        try:
            tail = self._fetch(start, self.size)
        except BaseException as exc:
            future.set_exception(exc)
            return
        footer_in_tail = len(tail) >= 8 and struct.unpack("<I", tail[-8:-4])[0] + 8 <= len(tail)
        if footer_in_tail:
            self._learn_chunks(tail)
        future.set_result(tail)
        if not footer_in_tail:
            self._learn_chunks(tail)

    def _learn_chunks(self, tail: bytes) -> None:
        """Column chunk ranges from the footer, when the tail holds all of it."""
        if len(tail) < 8 or tail[-4:] != b"PAR1":
            return
        footer_length = struct.unpack("<I", tail[-8:-4])[0]
        if footer_length + 8 > len(tail):
            tail = self.read(self.size - footer_length - 8, footer_length + 8)
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            metadata = pq.read_metadata(pa.BufferReader(b"PAR1" + tail[-footer_length - 8:]))
        except Exception:  # not a footer pyarrow reads: DuckDB will say what is wrong with the file
            return
        ranges = []
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for column in range(row_group.num_columns):
                chunk = row_group.column(column)
                offsets = [chunk.data_page_offset]
                if chunk.has_dictionary_page and chunk.dictionary_page_offset:
                    offsets.append(chunk.dictionary_page_offset)
                ranges.append((min(offsets), min(offsets) + chunk.total_compressed_size))
        ranges.sort()
        with self._lock:
            self._chunk_starts = [start for start, _ in ranges]
            self._chunk_ends = [end for _, end in ranges]

    def _read_ahead(self, start: int, end: int) -> None:
        """After a read inside a column chunk: drop what it has passed, and start fetching the
        chunk's next windows until AHEAD_BYTES past the read are fetched or in flight."""
        started = []
        with self._lock:
            chunk_end = self._chunk_end(start)
            if chunk_end is None or end >= chunk_end:
                return
            chunk_start = self._chunk_starts[bisect.bisect_right(self._chunk_starts, start) - 1]
            for segment_start, (segment_end, future) in list(self._segments.items()):
                if chunk_start <= segment_start and segment_end <= start and future.done():
                    del self._segments[segment_start]
            covered = end
            while covered < chunk_end and covered - end < AHEAD_BYTES:
                if (segment := self._segment_at(covered)) is not None:
                    covered = segment[1]
                    continue
                stop = self._fetch_stop(covered, covered + 1)
                started.append((covered, stop, self._add_segment(covered, stop)))
                covered = stop
        for segment_start, segment_end, future in started:
            self._executor.submit(self._fill, segment_start, segment_end, future)


class ShardFile(io.RawIOBase):
    """A read-only file handle over a ShardReader: the position is the handle's own."""

    def __init__(self, reader):
        super().__init__()
        self.reader, self.size, self.position = reader, reader.size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self):
        return self.position

    def read(self, size=-1):
        data = self.reader.read(self.position, -1 if size is None else size)
        self.position += len(data)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


READ_BLOCK_BYTES = 256 * 1024  # files other than the pinned shards (DuckDB's lock-down refuses them anyway)
READ_THREADS = 4  # background range reads: footers of a view's shards at once, read-ahead
PINNED_MTIME = datetime(2000, 1, 1, tzinfo=timezone.utc)


def hub_filesystem(layout, token):
    """An HfFileSystem for the pinned shards of `layout` (pull.DatasetLayout) that reads them through
    ShardReaders (footers in parallel, column-chunk-sized range reads, read-ahead) and answers glob,
    size and modification time from the listing already fetched (files addressed by commit never
    change), so DuckDB's file checks cost no API call. `prefetch_footers(urls)` starts the
    footer reads; `close()` waits for reads in flight and stops the reading threads."""
    from concurrent.futures import ThreadPoolExecutor

    from huggingface_hub import HfFileSystem, constants, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

    from vdata_hub.query.shard_reader import ShardFile, ShardReader

    executor = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="vdata-pull-read")
    headers = build_hf_headers(token=token)

    def fetcher(part, path: str):
        url = hf_hub_url(part.repo, path, repo_type="dataset", revision=part.commit, endpoint=constants.ENDPOINT)

        def fetch(start: int, end: int) -> bytes:
            response = http_backoff("GET", url, headers={**headers, "range": f"bytes={start}-{end - 1}"},
                                    timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)
            hf_raise_for_status(response)
            return response.content
        return fetch

    parts = layout.parts() if hasattr(layout, "parts") else [layout]  # with the archive repos' shards
    readers = {part.url(path)[len("hf://"):]: ShardReader(size, fetcher(part, path), executor)
               for part in parts for path, size in part.shard_sizes.items()}

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
