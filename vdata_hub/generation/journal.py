"""The run's progress on disk, and the dataset built from it.

Inside OUT:
- `progress.jsonl`: one line per completed record, appended and flushed as each reply arrives
  (fsync'd at least every second), so `kill -9` loses only requests in flight. A line cut short
  by a kill is dropped on the next start. Resume skips every id found here.
- `failures.jsonl`: one line per record that failed after its retries (id, reason, attempts);
  compacted at the end of a run to the failures that are still failures.
- `data-*.arrow`, `dataset_info.json`, `state.json`: the dataset (`datasets.load_from_disk(OUT)`),
  rebuilt from progress.jsonl at the end of every run: the planned records only, once each.
- `spec.json` (the effective spec) and `run_summary.json` beside it, written atomically.

Everything streams: what grows with the number of records is the plan's ids in one sorted
array and a flag per id (PlannedIds, DoneIds), about 25 bytes a record.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from vdata_hub.errors import VdataError
from vdata_hub.generation.records import plan_key_of, upgrade_row

RECORDS_FILE = "progress.jsonl"
FAILURES_FILE = "failures.jsonl"
DATASET_FILES = ("dataset_info.json", "state.json")
DATA_FILE = "data-00000-of-00001.arrow"
SYNC_EVERY_S = 1.0
BATCH_ROWS = 1000
ID_CHARS = 24  # a record id: 24 hex characters (prompts.record_id)


class PlannedIds:
    """The ids a plan asks for, sorted in one array of 24-byte strings.

    A set of id strings costs ~130 bytes an id (the string and its slot), and resume used to
    hold two (planned and done); here an id costs 24 bytes and "done" one more (DoneIds).
    """

    def __init__(self, ids: Iterable[str]):
        import numpy as np

        def keys() -> Iterator[bytes]:
            for record_id in ids:
                key = _id_key(record_id)
                if key is None:
                    raise ValueError(f"not a record id of {ID_CHARS} characters: {record_id!r}")
                yield key

        self.sorted = np.unique(np.fromiter(keys(), dtype=f"S{ID_CHARS}"))

    def position(self, record_id) -> int:
        """Where `record_id` is in the sorted ids; -1 when the plan does not ask for it."""
        key = _id_key(record_id)
        if key is None:
            return -1
        position = int(self.sorted.searchsorted(key))
        return position if position < len(self.sorted) and self.sorted[position] == key else -1

    def __contains__(self, record_id) -> bool:
        return self.position(record_id) >= 0

    def __len__(self) -> int:
        return len(self.sorted)


class DoneIds:
    """A set of planned ids, kept as one flag per planned id: the records done, or seen."""

    def __init__(self, planned: PlannedIds):
        import numpy as np

        self.planned = planned
        self.flags = np.zeros(len(planned), dtype=bool)
        self.count = 0

    def add(self, record_id: str) -> None:
        position = self.planned.position(record_id)
        if position < 0:
            raise KeyError(f"{record_id!r} is not a planned record id")
        if not self.flags[position]:
            self.flags[position] = True
            self.count += 1

    def __contains__(self, record_id) -> bool:
        position = self.planned.position(record_id)
        return position >= 0 and bool(self.flags[position])

    def __len__(self) -> int:
        return self.count


def _id_key(record_id) -> bytes | None:
    """A record id as the bytes PlannedIds sorts; None for anything that is not an id."""
    if not isinstance(record_id, str) or len(record_id) != ID_CHARS or not record_id.isascii():
        return None
    return record_id.encode()


@dataclass
class Progress:
    """What earlier runs left in OUT, counted over the records the current plan asks for."""

    completed: DoneIds  # planned ids with a record
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


def write_json_atomic(path: Path, value) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _repair_tail(path: Path) -> None:
    """Drop a last line that a kill cut short (no newline at the end)."""
    if not path.exists():
        return
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        position = size
        while position > 0:
            step = min(65536, position)
            handle.seek(position - step)
            chunk = handle.read(step)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                handle.truncate(position - step + newline + 1)
                return
            position -= step
        handle.truncate(0)


def iter_jsonl(path: Path) -> Iterator[dict]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # only a torn last line can be bad, and it is repaired on open


def _features() -> dict:
    """The `datasets` features of ARROW_SCHEMA, in the form dataset_info.json stores them.

    Written here rather than by importing `datasets`: that import alone costs ~70 MB in the
    generating process. A test checks that load_from_disk reads back exactly
    Features.from_arrow_schema(ARROW_SCHEMA).
    """
    import pyarrow as pa

    from vdata_hub.generation.records import ARROW_SCHEMA

    dtypes = {pa.string(): "string", pa.int64(): "int64", pa.float64(): "float64", pa.bool_(): "bool"}

    def feature(arrow_type) -> dict:
        if pa.types.is_list(arrow_type):
            return {"feature": feature(arrow_type.value_type), "_type": "List"}
        return {"dtype": dtypes[arrow_type], "_type": "Value"}

    return {field.name: feature(field.type) for field in ARROW_SCHEMA}


def _dataset_schema():
    """ARROW_SCHEMA with the features in its metadata, as datasets' own writer stores them."""
    from vdata_hub.generation.records import ARROW_SCHEMA

    return ARROW_SCHEMA.with_metadata({"huggingface": json.dumps({"info": {"features": _features()}})})


def _empty_batch(schema):
    import pyarrow as pa

    return pa.record_batch([pa.array([], type=field.type) for field in schema], schema=schema)


def _write_dataset_metadata(folder: Path, data_file: str) -> None:
    """state.json and dataset_info.json for `datasets.load_from_disk`, with the keys and values
    Dataset.save_to_disk writes for an unformatted dataset of one Arrow file."""
    import hashlib

    stat = (folder / data_file).stat()
    state = {
        "_data_files": [{"filename": data_file}],
        "_fingerprint": hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    info = {"citation": "", "description": "", "features": _features(), "homepage": "", "license": ""}
    write_json_atomic(folder / "state.json", state)
    write_json_atomic(folder / "dataset_info.json", info)


class Journal:
    """Append-only, durable progress of one OUT folder; one writer at a time (a lock file)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.records_path = self.out / RECORDS_FILE
        self.failures_path = self.out / FAILURES_FILE
        self._records = None
        self._failures = None
        self._lock = None
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def open(self) -> "Journal":
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.out / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise VdataError(f"{self.out}: another run is writing to this folder; "
                             "wait for it or use another OUT") from None
        for path in (self.records_path, self.failures_path):
            _repair_tail(path)
        self._records = open(self.records_path, "a", encoding="utf-8")
        self._failures = open(self.failures_path, "a", encoding="utf-8")
        return self

    def load(self, planned_ids: PlannedIds) -> Progress:
        """Ids already done and what they cost, counting only records the plan still asks for."""
        progress = Progress(completed=DoneIds(planned_ids))
        for row in iter_jsonl(self.records_path):
            plan_key = plan_key_of(row)
            if row.get("augmented") or plan_key not in planned_ids or plan_key in progress.completed:
                continue
            progress.completed.add(plan_key)
            progress.input_tokens += int(row.get("input_tokens", 0))
            progress.output_tokens += int(row.get("output_tokens", 0))
            progress.cost_usd += float(row.get("cost_usd", 0.0))
        return progress

    def add_record(self, row: dict) -> None:
        self._append(self._records, row)

    def add_failure(self, failure: dict) -> None:
        self._append(self._failures, failure)

    def _append(self, handle, row: dict) -> None:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()  # in the OS's hands now: a killed process loses nothing written
        self._unsynced += 1
        if time.monotonic() - self._last_sync >= SYNC_EVERY_S:
            self.sync()

    def sync(self) -> None:
        """fsync both files, so a power cut loses at most about a second of records."""
        for handle in (self._records, self._failures):
            if handle is not None and not handle.closed:
                handle.flush()
                os.fsync(handle.fileno())
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._records is None:
            return
        self.sync()
        for handle in (self._records, self._failures, self._lock):
            handle.close()
        self._records = self._failures = self._lock = None

    def build_dataset(self, planned_ids: PlannedIds, keep_augmented: bool) -> tuple[int, int]:
        """Rebuild the Arrow dataset in OUT from progress.jsonl; (records, augmented rows).

        Rows stream into the dataset's Arrow file in batches, and `datasets` only opens the
        finished file: building a 100k-row dataset holds one batch at a time (save_to_disk
        would read every page of the data back through a memory map).
        """
        build = self.out / ".build"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir()
        counts = self._write_arrow(build / DATA_FILE, self._rows_to_keep(planned_ids, keep_augmented))
        _write_dataset_metadata(build, DATA_FILE)
        self._replace_dataset(build)
        shutil.rmtree(build, ignore_errors=True)
        return counts

    @staticmethod
    def _write_arrow(path: Path, rows: Iterator[dict]) -> tuple[int, int]:
        import pyarrow as pa

        from vdata_hub.generation.records import records_to_table

        counts = [0, 0]
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, _dataset_schema()) as writer:
            batch = []
            for row in rows:
                counts[1 if row.get("augmented") else 0] += 1
                batch.append(row)
                if len(batch) >= BATCH_ROWS:
                    writer.write_table(records_to_table(batch))
                    batch.clear()
            if batch:
                writer.write_table(records_to_table(batch))
            if counts == [0, 0]:  # `datasets` cannot open a stream without a batch
                writer.write_batch(_empty_batch(_dataset_schema()))
        return counts[0], counts[1]

    def _rows_to_keep(self, planned_ids: PlannedIds, keep_augmented: bool) -> Iterator[dict]:
        """Each planned record once, and the variants written right after a record (as `generate`
        writes them) when that record is planned. Rows of older runs are upgraded to plan_key."""
        seen_records = DoneIds(planned_ids)
        seen_augmented = set()  # plan keys of counterfactual variants: filled only when they are kept
        source = None  # the last record read, as kept (None: not kept)
        for row in iter_jsonl(self.records_path):
            plan_key = plan_key_of(row)
            if row.get("augmented"):
                wanted, seen = keep_augmented and source is not None, seen_augmented
            else:
                wanted, seen = plan_key in planned_ids, seen_records
                source = None
                if wanted and plan_key not in seen and str(row.get("text", "")).strip():
                    row = source = upgrade_row(row)
            if not wanted or plan_key in seen or not str(row.get("text", "")).strip():
                continue
            seen.add(plan_key)
            if row.get("augmented") and "plan_key" not in row:  # older runs linked variants by plan key
                row = {**row, "plan_key": plan_key, "id": "", "source_id": source["id"]}
            yield row

    def _replace_dataset(self, built: Path) -> None:
        for old in list(self.out.glob("data-*.arrow")) + [self.out / name for name in DATASET_FILES]:
            old.unlink(missing_ok=True)
        for name in (DATA_FILE,) + DATASET_FILES:  # the data first: state.json names it
            os.replace(built / name, self.out / name)

    def compact_failures(self, planned_ids: PlannedIds, completed: DoneIds) -> int:
        """Keep the latest failure of each planned record that is still not done; their count."""
        latest = {}
        for failure in iter_jsonl(self.failures_path):
            plan_key = failure.get("id")  # a failure names the planned record by its plan key
            if plan_key in planned_ids and plan_key not in completed:
                latest[plan_key] = failure
        tmp = self.failures_path.with_name(f".{FAILURES_FILE}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            for failure in latest.values():
                handle.write(json.dumps(failure, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if self._failures is not None:
            self._failures.close()
        os.replace(tmp, self.failures_path)
        if self._failures is not None:
            self._failures = open(self.failures_path, "a", encoding="utf-8")
        return len(latest)
