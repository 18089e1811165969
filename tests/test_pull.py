"""`vdata pull` against the Hub emulator: exports, SQL over the shards, revisions, refusals.

Each test publishes its own dataset repo with the Hub layout (data/<axis>/<contribution>.parquet
and a README whose configs name the axes), then pulls through the real HfFileSystem and DuckDB.
"""

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections import Counter

import pyarrow.parquet as pq
import pytest
import yaml

from tests.test_pull_lockdown import CANARY, all_files, make_rows
from vdata_hub.errors import HubError, SQLRefused, VdataError
from vdata_hub.query.export import unescape_text
from vdata_hub.query.pull import dataset_layout, pull
from vdata_hub.query.sandbox import open_locked_connection
from vdata_hub.query.shard_reader import hub_filesystem
from vdata_hub.generation.records import records_to_table

GENDER = [make_rows(40, "gender", 0), make_rows(25, "gender", 40), make_rows(15, "gender", 65)]  # 3 shards
AGE = [make_rows(30, "age", 0)]


def card(axes) -> str:
    configs = [{"config_name": "default", "default": True, "data_files": [{"split": "train", "path": "data/*/*.parquet"}]}]
    configs += [{"config_name": axis, "data_files": [{"split": "train", "path": f"data/{axis}/*.parquet"}]}
                for axis in axes]
    return "---\n" + yaml.safe_dump({"configs": configs}, sort_keys=False) + "---\n# test dataset\n"


def shard_operations(shards: dict) -> list:
    from huggingface_hub import CommitOperationAdd

    operations = []
    for axis, row_lists in shards.items():
        for number, rows in enumerate(row_lists):
            buffer = io.BytesIO()
            pq.write_table(records_to_table(rows), buffer, row_group_size=16)
            operations.append(CommitOperationAdd(f"data/{axis}/c{number}.parquet", buffer.getvalue()))
    return operations


def publish(hub, shards: dict) -> str:
    """A new dataset repo holding `shards` ({axis: [rows of shard 1, rows of shard 2, ...]})."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    repo = f"org/pull-{uuid.uuid4().hex[:10]}"
    api.create_repo(repo, repo_type="dataset")
    operations = shard_operations(shards) + [CommitOperationAdd("README.md", card(shards).encode())]
    api.create_commit(repo, operations=operations, commit_message="shards", repo_type="dataset")
    return repo


@pytest.fixture(scope="module")
def dataset(hub):
    return publish(hub, {"gender": GENDER, "age": AGE})


def flat(shards) -> list[dict]:
    return [row for rows in shards for row in records_to_table(rows).to_pylist()]


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_config_and_limit_pull_one_axis_as_json_lines(hub, dataset, tmp_path):
    result = pull(tmp_path / "rows.jsonl", repo=dataset, config="age", limit=7, token=hub.token)
    rows = read_jsonl(tmp_path / "rows.jsonl")
    assert result.rows == 7 and result.format == "json" and len(rows) == 7
    assert {row["bias_axis"] for row in rows} == {"age"}
    assert all(row in flat(AGE) for row in rows)


def test_a_query_over_several_shards_sees_every_row(hub, dataset, tmp_path):
    pull(tmp_path / "all.parquet", repo=dataset, sql="SELECT * FROM vdata ORDER BY id", token=hub.token)
    assert pq.read_table(tmp_path / "all.parquet").to_pylist() == sorted(flat(AGE) + flat(GENDER), key=lambda r: r["id"])
    pull(tmp_path / "gender.csv", repo=dataset, config="gender", token=hub.token)
    with open(tmp_path / "gender.csv", newline="", encoding="utf-8") as handle:
        assert sorted(row["id"] for row in csv.DictReader(handle)) == sorted(r["id"] for r in flat(GENDER))


def test_filter_to_csv(hub, dataset, tmp_path):
    sql = "SELECT id, text, flags FROM gender WHERE domain = 'healthcare' AND output_tokens > 50 ORDER BY id"
    pull(tmp_path / "f.csv", repo=dataset, sql=sql, token=hub.token)
    with open(tmp_path / "f.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = [r for r in flat(GENDER) if r["domain"] == "healthcare" and r["output_tokens"] > 50]
    assert [(row["id"], row["text"], json.loads(row["flags"])) for row in rows] == \
        [(r["id"], r["text"], r["flags"]) for r in sorted(expected, key=lambda r: r["id"])]
    limited = pull(tmp_path / "l.csv", repo=dataset, sql=sql, limit=2, token=hub.token)
    with open(tmp_path / "l.csv", newline="", encoding="utf-8") as handle:
        assert limited.rows == 2 and [row["id"] for row in csv.DictReader(handle)] == [row["id"] for row in rows[:2]]


def test_aggregate_to_parquet(hub, dataset, tmp_path):
    sql = "SELECT bias_axis, domain, count(*) AS n, sum(output_tokens) AS tokens FROM vdata GROUP BY ALL ORDER BY ALL"
    pull(tmp_path / "agg.out", format="parquet", repo=dataset, sql=sql, token=hub.token)
    got = pq.read_table(tmp_path / "agg.out").to_pylist()
    counts, tokens = Counter(), Counter()
    for row in flat(AGE) + flat(GENDER):
        counts[(row["bias_axis"], row["domain"])] += 1
        tokens[(row["bias_axis"], row["domain"])] += row["output_tokens"]
    assert got == [{"bias_axis": a, "domain": d, "n": counts[(a, d)], "tokens": tokens[(a, d)]} for a, d in sorted(counts)]


def test_join_between_configs_to_text(hub, dataset, tmp_path):
    sql = ('SELECT g.text FROM gender g JOIN "age" a ON g.output_tokens = a.output_tokens '
           "WHERE g.domain = a.domain ORDER BY g.id")
    result = pull(tmp_path / "joined.txt", repo=dataset, sql=sql, token=hub.token)
    ages = {(r["output_tokens"], r["domain"]) for r in flat(AGE)}
    expected = [r["text"] for r in sorted(flat(GENDER), key=lambda r: r["id"]) if (r["output_tokens"], r["domain"]) in ages]
    lines = (tmp_path / "joined.txt").read_text(encoding="utf-8").splitlines()
    assert result.rows == len(expected) > 0
    assert [unescape_text(line) for line in lines] == expected


def test_empty_result_writes_an_empty_file_in_every_format(hub, dataset, tmp_path):
    sql = "SELECT id, text FROM vdata WHERE domain = 'no such domain'"
    for name in ("e.jsonl", "e.txt", "e.csv", "e.parquet"):
        assert pull(tmp_path / name, repo=dataset, sql=sql, token=hub.token).rows == 0
    assert (tmp_path / "e.jsonl").read_text() == "" and (tmp_path / "e.txt").read_text() == ""
    assert (tmp_path / "e.csv").read_bytes() == b"id,text\r\n"
    assert pq.read_table(tmp_path / "e.parquet").column_names == ["id", "text"]


def test_a_pull_request_revision(hub, dataset, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    repo = publish(hub, {"age": AGE})
    new_rows = [make_rows(12, "religion")]
    commit = api.create_commit(repo, operations=shard_operations({"religion": new_rows}), repo_type="dataset",
                               commit_message="contribution", create_pr=True)
    revision = f"refs/pr/{commit.pr_num}"
    pulled = pull(tmp_path / "pr.jsonl", repo=repo, revision=revision, config="religion", token=hub.token)
    assert pulled.rows == 12 and pulled.commit == commit.oid
    assert sorted(read_jsonl(tmp_path / "pr.jsonl"), key=lambda r: r["id"]) == flat(new_rows)
    pull(tmp_path / "n.csv", repo=repo, revision=revision, sql="SELECT count(*) AS n FROM vdata", token=hub.token)
    assert (tmp_path / "n.csv").read_text().splitlines() == ["n", str(12 + 30)]
    with pytest.raises(VdataError, match="unknown config 'religion'"):
        pull(tmp_path / "main.jsonl", repo=repo, config="religion", token=hub.token)


def test_clear_errors_for_bad_selections(hub, dataset, tmp_path):
    with pytest.raises(HubError, match="revision 'nope' not found"):
        pull(tmp_path / "x.jsonl", repo=dataset, revision="nope", token=hub.token)
    with pytest.raises(HubError, match="not found"):
        pull(tmp_path / "x.jsonl", repo="org/no-such-repo", token=hub.token)
    with pytest.raises(VdataError, match="`config` and `sql` together"):
        pull(tmp_path / "x.jsonl", repo=dataset, config="age", sql="SELECT 1", token=hub.token)
    with pytest.raises(VdataError, match="extension"):
        pull(tmp_path / "x.data", repo=dataset, token=hub.token)
    with pytest.raises(VdataError, match="query failed"):
        pull(tmp_path / "x.jsonl", repo=dataset, sql="SELECT missing_column FROM vdata", token=hub.token)
    assert list(tmp_path.iterdir()) == []


HOSTILE_THROUGH_PULL = [
    "SELECT content AS text FROM read_text('{canary}')",
    "SELECT * FROM vdata WHERE text IN (SELECT content FROM read_text('{canary}'))",
    "WITH c AS (SELECT * FROM read_csv('{canary}')) SELECT * FROM c",
    "SELECT * FROM '{canary}'",
    "SELECT 1; COPY (SELECT * FROM vdata) TO '{root}/stolen.csv'",
    "COPY (SELECT * FROM vdata) TO '{root}/stolen.csv'",
    "ATTACH '{root}/evil.db'",
    "SELECT * FROM read_parquet('hf://datasets/{other}/data/age/c0.parquet')",
    "SELECT * FROM glob('{root}/*')",
    "SELECT getenv('HF_TOKEN')",
]


@pytest.mark.parametrize("statement", HOSTILE_THROUGH_PULL)
def test_hostile_sql_through_pull_reads_and_writes_nothing(hub, dataset, tmp_path, statement):
    canary = tmp_path / "canary.csv"
    canary.write_text(f"secret\n{CANARY}\n")
    before = all_files(tmp_path)
    sql = statement.format(canary=canary, root=tmp_path, other=dataset)
    with pytest.raises(SQLRefused, match="refused"):
        pull(tmp_path / "out.jsonl", repo=dataset, sql=sql, token=hub.token)
    assert all_files(tmp_path) == before


def test_locked_hub_connection_refuses_other_repos_and_local_files(hub, dataset, tmp_path):
    """Defence in depth over the Hub: bypass the parser; DuckDB itself refuses."""
    import duckdb

    other = publish(hub, {"age": [make_rows(3, "secret-axis")]})
    canary = tmp_path / "canary.txt"
    canary.write_text(CANARY)
    layout = dataset_layout(dataset, None, hub.token)
    connection = open_locked_connection(layout.views(), filesystem=hub_filesystem(layout, hub.token),
                                        memory_limit="256MB", threads=1)
    assert connection.execute("SELECT count(*) FROM vdata").fetchone()[0] == 110
    hub.clear_requests()
    for statement in (f"SELECT * FROM read_parquet('hf://datasets/{other}/data/age/c0.parquet')",
                      f"SELECT * FROM read_text('hf://datasets/{other}/README.md')",
                      f"SELECT * FROM read_text('hf://datasets/{dataset}/README.md')",
                      f"SELECT * FROM glob('hf://datasets/{other}/**')",
                      f"SELECT * FROM read_text('{canary}')",
                      f"COPY (SELECT * FROM vdata) TO '{tmp_path}/stolen.csv'",
                      f"COPY (SELECT * FROM vdata) TO 'hf://datasets/{dataset}/stolen.csv'"):
        with pytest.raises(duckdb.Error) as refused:
            connection.execute(statement).fetchall()
        assert CANARY not in str(refused.value)
    assert not any(other in request["path"] or "README" in request["path"] or "stolen" in request["path"]
                   for request in hub.requests())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary.txt"]


def test_a_query_past_the_time_limit_leaves_no_output(hub, dataset, tmp_path):
    sql = "SELECT count(*) FROM vdata a, vdata b, vdata c, vdata d, vdata e"
    with pytest.raises(SQLRefused, match="stopped after 1 s"):
        pull(tmp_path / "slow.jsonl", repo=dataset, sql=sql, timeout=1, token=hub.token)
    assert list(tmp_path.iterdir()) == []


def editor_script(tmp_path, query: str) -> str:
    """An $EDITOR command that checks the example it is given, then saves `query` over it."""
    script = tmp_path / "editor.py"
    script.write_text("import sys\npath = sys.argv[1]\nexample = open(path).read()\n"
                      "assert 'FROM' in example and 'vdata' in example and example.startswith('--')\n"
                      f"open(path, 'w').write({query!r})\n")
    return f"{sys.executable} {script}"


def test_bare_sql_opens_the_editor_and_runs_what_was_saved(hub, dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", editor_script(tmp_path, "-- mine\nSELECT id FROM age ORDER BY id LIMIT 3\n"))
    pull(tmp_path / "ed.jsonl", repo=dataset, sql=True, token=hub.token)
    assert read_jsonl(tmp_path / "ed.jsonl") == [{"id": f"age-00000{i}"} for i in range(3)]
    monkeypatch.setenv("EDITOR", editor_script(tmp_path, "-- changed my mind\n"))
    with pytest.raises(VdataError, match="empty"):
        pull(tmp_path / "none.jsonl", repo=dataset, sql=True, token=hub.token)
    assert not (tmp_path / "none.jsonl").exists()


def run_cli(*args, token):
    env = {**os.environ, "HF_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "vdata_hub", "pull", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_short_flags_and_refusal_exit_code(hub, dataset, tmp_path):
    done = run_cli(str(tmp_path / "rows.out"), "-j", "--repo", dataset, "--sql",
                   "SELECT id FROM gender ORDER BY id LIMIT 2", token=hub.token)
    assert done.returncode == 0, done.stderr
    assert read_jsonl(tmp_path / "rows.out") == [{"id": "gender-000000"}, {"id": "gender-000001"}]
    refused = run_cli(str(tmp_path / "x.csv"), "--repo", dataset, "--sql",
                      "SELECT * FROM read_text('/etc/passwd')", token=hub.token)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("error: function read_text() refused")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("fmt", ["jsonl", "txt", "csv", "parquet"])
def test_result_larger_than_max_size_stops_and_leaves_no_file(hub, dataset, tmp_path, fmt):
    out = tmp_path / f"big.{fmt}"
    too_big = run_cli(str(out), "--repo", dataset, "--sql", "SELECT repeat('x', 3000000) AS text FROM vdata LIMIT 3",
                      "--max-size", "2MB", token=hub.token)
    assert too_big.returncode == 1, too_big.stderr
    assert too_big.stderr.splitlines()[-1] == (
        "error: the result is larger than 2 MB (--max-size); nothing was written: narrow the query "
        "(WHERE, LIMIT, fewer columns) or raise --max-size")
    assert list(tmp_path.iterdir()) == []
    many = run_cli(str(out), "--repo", dataset, "--sql", "SELECT text FROM vdata", "--max-size", "1KB",
                   token=hub.token)  # each batch is small; the file passes the limit as it grows
    assert many.returncode == 1 and "larger than 1 KB" in many.stderr and list(tmp_path.iterdir()) == []
    fits = run_cli(str(out), "--repo", dataset, "--sql", "SELECT text FROM vdata", "--max-size", "10MB",
                   token=hub.token)
    assert fits.returncode == 0, fits.stderr
    assert out.exists()


@pytest.mark.slow
def test_the_default_limit_stops_a_two_gigabyte_result(hub, dataset, tmp_path):
    out = tmp_path / "out.jsonl"
    done = run_cli(str(out), "--repo", dataset, "--sql", "SELECT repeat('x', 2000000000)", token=hub.token)
    assert done.returncode == 1 and "larger than 1 GB (--max-size)" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_max_size_values(tmp_path):
    from vdata_hub.query.export import parse_size

    assert [parse_size(v) for v in (None, 0, "0", "none", 1500, "500MB", "1.5GB", "2GiB", "10 kb")] == [
        None, None, None, None, 1500, 500 * 10**6, 1_500_000_000, 2 * 2**30, 10_000]
    for bad in ("lots", "-1GB", "5XB", True):
        with pytest.raises(VdataError, match="`max_size`"):
            parse_size(bad)
