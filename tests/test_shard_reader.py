"""ShardReader: the range reads `pull` serves DuckDB from, over an in-memory "remote" Parquet file
whose fetches are counted. Every read must return the file's exact bytes, whatever the order,
the threads or the failures; a selective read must fetch little more than what it reads."""

import io
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq
import pytest

from tests.test_pull_lockdown import make_rows
from vdata_hub.generation.records import records_to_table
from vdata_hub.query.shard_reader import ShardFile, ShardReader


class Remote:
    """The bytes of one file, fetched by range; counts requests and bytes; can fail on demand."""

    def __init__(self, data: bytes):
        self.data, self.requests, self.bytes, self.failures = data, [], 0, 0
        self.lock = threading.Lock()

    def fetch(self, start: int, end: int) -> bytes:
        with self.lock:
            if self.failures:
                self.failures -= 1
                raise OSError("injected failure")
            self.requests.append((start, end))
            self.bytes += end - start
        return self.data[start:end]


@pytest.fixture(scope="module")
def parquet_bytes() -> bytes:
    rows = make_rows(3000, "gender")
    for number, row in enumerate(rows):
        row["text"] = f"{number:05d} " + "".join(random.Random(number).choices("abcdefgh ", k=1500))
    buffer = io.BytesIO()
    pq.write_table(records_to_table(rows), buffer, row_group_size=1000, data_page_size=64 * 1024)
    return buffer.getvalue()


@pytest.fixture
def executor():
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


def test_random_reads_from_several_threads_return_the_exact_bytes(parquet_bytes, executor):
    remote = Remote(parquet_bytes)
    reader = ShardReader(len(parquet_bytes), remote.fetch, executor)
    reader.prefetch_tail()

    def read_some(seed):
        rng = random.Random(seed)
        for _ in range(200):
            start = rng.randrange(len(parquet_bytes))
            length = rng.choice([1, 8, 256, 5000, 300_000])
            assert reader.read(start, length) == parquet_bytes[start:start + length]

    threads = [threading.Thread(target=read_some, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reader.read(0, -1) == parquet_bytes
    assert reader.read(len(parquet_bytes) - 3, 100) == parquet_bytes[-3:]
    assert reader.read(len(parquet_bytes) + 10, 5) == b""


def test_reading_one_column_fetches_that_column_and_the_footer(parquet_bytes, executor):
    remote = Remote(parquet_bytes)
    reader = ShardReader(len(parquet_bytes), remote.fetch, executor)
    reader.prefetch_tail()
    table = pq.read_table(ShardFile(reader), columns=["domain"])
    executor.shutdown(wait=True)
    assert table.column("domain").to_pylist() == pq.read_table(io.BytesIO(parquet_bytes)).column("domain").to_pylist()
    assert remote.bytes < len(parquet_bytes) / 10
    # The footer is fetched once: no request re-reads the tail.
    tail_start = remote.requests[0][0]
    assert not any(start >= tail_start for start, _ in remote.requests[1:])


def test_a_failed_fetch_reaches_the_reader_and_a_retry_succeeds(parquet_bytes, executor):
    remote = Remote(parquet_bytes)
    reader = ShardReader(len(parquet_bytes), remote.fetch, executor)
    remote.failures = 1
    with pytest.raises(OSError, match="injected"):
        reader.read(100, 10)
    assert reader.read(100, 10) == parquet_bytes[100:110]


def test_a_failed_background_fetch_is_fetched_again_by_the_reader(parquet_bytes, executor):
    remote = Remote(parquet_bytes)
    reader = ShardReader(len(parquet_bytes), remote.fetch, executor)
    remote.failures = 1
    reader.prefetch_tail()  # fails in the background
    assert reader.read(len(parquet_bytes) - 8, 8) == parquet_bytes[-8:]
