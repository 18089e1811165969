"""The Hub emulator through `datasets` (push_to_hub, load_dataset with README configs, PR revisions,
streaming) and through DuckDB reading hf:// Parquet via HfFileSystem."""

import io
import uuid

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, HfFileSystem

README = """---
configs:
- config_name: default
  data_files: data/*/*.parquet
- config_name: gender
  data_files: data/gender/*.parquet
- config_name: age
  data_files: data/age/*.parquet
---
# Test dataset
"""


def unique(name):
    return f"org/{name}-{uuid.uuid4().hex[:8]}"


def parquet_bytes(**columns):
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def rows(dataset):
    return sorted(zip(*dataset.to_dict().values()))


def test_push_to_hub_configs_pull_request_and_load(hub):
    repo_id = unique("pushed")
    datasets.Dataset.from_dict({"a": [1, 2, 3], "b": ["x", "y", "z"]}).push_to_hub(repo_id, token=hub.token)
    datasets.Dataset.from_dict({"a": [7], "b": ["o"]}).push_to_hub(repo_id, "other", token=hub.token)
    proposal = datasets.Dataset.from_dict({"a": [9], "b": ["q"]}).push_to_hub(
        repo_id, token=hub.token, create_pr=True)
    assert proposal.pr_revision == "refs/pr/1"

    card = HfApi(token=hub.token).dataset_info(repo_id).card_data
    assert [c["config_name"] for c in card["configs"]] == ["default", "other"]
    assert rows(datasets.load_dataset(repo_id, token=hub.token)["train"]) == [(1, "x"), (2, "y"), (3, "z")]
    assert rows(datasets.load_dataset(repo_id, "other", token=hub.token, split="train")) == [(7, "o")]
    assert rows(datasets.load_dataset(repo_id, token=hub.token, revision="refs/pr/1", split="train")) == [(9, "q")]
    streamed = datasets.load_dataset(repo_id, token=hub.token, split="train", streaming=True)
    assert [(r["a"], r["b"]) for r in streamed] == [(1, "x"), (2, "y"), (3, "z")]

    HfApi(token=hub.token).merge_pull_request(repo_id, 1, repo_type="dataset")
    assert rows(datasets.load_dataset(repo_id, token=hub.token, split="train")) == [(9, "q")]


def test_dataset_dict_push_and_load(hub):
    repo_id = unique("dict")
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"t": ["a", "b"]}),
                                   "test": datasets.Dataset.from_dict({"t": ["c"]})})
    splits.push_to_hub(repo_id, token=hub.token, private=True)
    # Before any load: once cached, hf_hub_download serves the cached README when the HEAD fails.
    with pytest.raises(datasets.exceptions.DatasetNotFoundError):
        datasets.load_dataset(repo_id, token=hub.bob_token)  # private: invisible to bob
    loaded = datasets.load_dataset(repo_id, token=hub.token)
    assert {name: split["t"] for name, split in loaded.items()} == {"train": ["a", "b"], "test": ["c"]}


def upload_layout(hub, repo_id, create_pr=False):
    """The project's Hub layout: per-axis Parquet shards and a README whose configs glob them."""
    operations = [
        CommitOperationAdd("README.md", README.encode()),
        CommitOperationAdd("data/gender/c1.parquet", parquet_bytes(id=["g1", "g2"], axis=["gender"] * 2)),
        CommitOperationAdd("data/age/c2.parquet", parquet_bytes(id=["a1"], axis=["age"])),
    ]
    return HfApi(token=hub.token).create_commit(repo_id, operations, commit_message="contribution",
                                                repo_type="dataset", create_pr=create_pr)


def test_readme_configs_and_duckdb_over_hffs(hub):
    repo_id = unique("layout")
    api = HfApi(token=hub.token)
    api.create_repo(repo_id, repo_type="dataset")
    upload_layout(hub, repo_id)
    assert sorted(datasets.load_dataset(repo_id, token=hub.token, split="train")["id"]) == ["a1", "g1", "g2"]
    assert datasets.load_dataset(repo_id, "gender", token=hub.token, split="train")["id"] == ["g1", "g2"]
    assert datasets.get_dataset_config_names(repo_id, token=hub.token) == ["default", "gender", "age"]

    import duckdb

    con = duckdb.connect()
    con.register_filesystem(HfFileSystem(token=hub.token, skip_instance_cache=True))
    query = f"SELECT axis, count(*) FROM read_parquet('hf://datasets/{repo_id}/data/*/*.parquet') GROUP BY 1 ORDER BY 1"
    assert con.sql(query).fetchall() == [("age", 1), ("gender", 2)]


def test_load_from_pull_request_revision(hub):
    repo_id = unique("prload")
    HfApi(token=hub.token).create_repo(repo_id, repo_type="dataset")
    pr = upload_layout(hub, repo_id, create_pr=True)
    loaded = datasets.load_dataset(repo_id, "age", token=hub.token, revision=pr.pr_revision, split="train")
    assert loaded["id"] == ["a1"]
    fs = HfFileSystem(token=hub.token, skip_instance_cache=True)
    assert fs.glob(f"datasets/{repo_id}@{pr.pr_revision}/data/*/*.parquet") == [
        f"datasets/{repo_id}@{pr.pr_revision}/data/age/c2.parquet",
        f"datasets/{repo_id}@{pr.pr_revision}/data/gender/c1.parquet"]
    assert fs.glob(f"datasets/{repo_id}/data/*/*.parquet") == []
