"""Where `contribute`'s CPU goes, for the rows of bench_contribute.py (no Hub, no upload).

    python bench/profile_contribute.py stages [--rows 200000]   validate + shard writing as contribute
                                                                runs them: CPU per stage (thread time)
    python bench/profile_contribute.py kernels [--rows 200000]  one thread, every batch: time per
                                                                pyarrow.compute function in check_batch
    python bench/profile_contribute.py writing [--rows 200000]  Parquet writing of the whole table with
                                                                zstd, snappy and pyarrow's defaults
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench_contribute import make_table  # noqa: E402
from vdata_hub.repo import contribute, dedup, row_checks, validation  # noqa: E402

KERNELS = ["ascii_split_whitespace", "ascii_lower", "ascii_trim", "dictionary_encode", "match_substring_regex",
           "utf8_length", "utf8_trim_whitespace", "utf8_slice_codeunits", "binary_length", "string_is_ascii",
           "list_parent_indices", "not_equal", "equal"]


def stages(table) -> None:
    cpu: dict = defaultdict(float)
    lock = threading.Lock()

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                with lock:
                    cpu[name] += time.thread_time() - start
        return wrapper

    row_checks.check_batch = timed("per-row checks", row_checks.check_batch)
    dedup.DuplicateDecisions.decide = timed("duplicate decisions", dedup.DuplicateDecisions.decide)
    contribute.ShardWriter._write = timed("shard writing", contribute.ShardWriter._write)
    with tempfile.TemporaryDirectory() as folder:
        wall, process = time.perf_counter(), time.process_time()
        writer = contribute.ShardWriter(Path(folder), background=True)
        validation.validate(table, sink=writer.write)
        writer.close()
        wall, process = time.perf_counter() - wall, time.process_time() - process
    print(f"validate and write {table.num_rows} rows: wall {wall:.2f} s, CPU {process:.2f} s; "
          + ", ".join(f"{name} {seconds:.2f} CPU-s" for name, seconds in cpu.items()))


def kernels(table) -> None:
    spent: dict = defaultdict(float)
    for name in KERNELS:
        def wrapper(*args, _function=getattr(pc, name), _name=name, **kwargs):
            start = time.perf_counter()
            try:
                return _function(*args, **kwargs)
            finally:
                label = f"{_name} {str(args[1])[:24]}" if _name == "match_substring_regex" else _name
                spent[label] += time.perf_counter() - start
        setattr(pc, name, wrapper)
    batches = table.to_batches(max_chunksize=validation.BATCH_ROWS)
    rules, blocklist, cache = row_checks.Rules(), row_checks.load_blocklist(None), {}
    row_checks.check_batch(batches[0], rules, blocklist, Counter(), cache, clean=True)  # warm-up
    spent.clear()
    start = time.perf_counter()
    for batch in batches:
        row_checks.check_batch(batch, rules, blocklist, Counter(), cache, clean=True)
    total = (time.perf_counter() - start) / len(batches) * 1000
    arrow = sum(spent.values()) / len(batches) * 1000
    print(f"check_batch, one thread: {total:.1f} ms per {validation.BATCH_ROWS} rows; Arrow kernels {arrow:.1f} ms, "
          f"numpy and Python {total - arrow:.1f} ms")
    for label, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {label:48s} {seconds / len(batches) * 1000:6.1f} ms")


def writing(table) -> None:
    dictionary = [name for name in table.schema.names if name not in contribute.NO_DICTIONARY]
    options = {"zstd (contribute)": {"compression": "zstd", "use_dictionary": dictionary},
               "snappy": {"compression": "snappy", "use_dictionary": dictionary},
               "pyarrow defaults (push_to_hub)": {}}
    with tempfile.TemporaryDirectory() as folder:
        for name, kwargs in options.items():
            path = Path(folder) / "shard.parquet"
            start = time.process_time()
            pq.write_table(table, path, row_group_size=contribute.ROW_GROUP_ROWS, **kwargs)
            print(f"{name:32s} {time.process_time() - start:.2f} CPU-s, {path.stat().st_size / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["stages", "kernels", "writing"])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    table = make_table(args.rows, seed=1)
    {"stages": stages, "kernels": kernels, "writing": writing}[args.what](table)


if __name__ == "__main__":
    main()
