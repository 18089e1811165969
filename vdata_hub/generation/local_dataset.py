"""The dataset `generate` writes in OUT, read back: the one loader for contribute, stats and
eval (memory-mapped Arrow, never read into memory as a whole)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from vdata_hub.errors import VdataError
from vdata_hub.generation.records import ARROW_SCHEMA


def load_local_dataset(out) -> pa.Table:
    """The Arrow table of the dataset folder at `out` (what `datasets.load_from_disk` reads)."""
    from datasets import Dataset, DatasetDict, load_from_disk

    path = Path(out)
    if not path.is_dir():
        raise VdataError(f"{out}: no such folder; pass the folder `vdata generate` wrote")
    state = path / "state.json"
    if state.is_file() and not json.loads(state.read_text(encoding="utf-8")).get("_data_files", [None]):
        return ARROW_SCHEMA.empty_table()  # datasets cannot load a saved dataset without shards
    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError, IndexError) as exc:
        raise VdataError(f"{out}: not a dataset folder written by `vdata generate` ({exc.__class__.__name__})") from None
    if isinstance(dataset, DatasetDict):
        if len(dataset) != 1:
            raise VdataError(f"{out}: holds several splits ({', '.join(dataset)}); pass one split's folder")
        dataset = next(iter(dataset.values()))
    assert isinstance(dataset, Dataset)
    if dataset._indices is not None:
        dataset = dataset.flatten_indices()
    if "text" not in dataset.column_names:
        raise VdataError(f"{out}: the dataset has no `text` column; is it a folder written by `vdata generate`?")
    return dataset.data.table
