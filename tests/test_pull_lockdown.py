"""Defence in depth for `pull --sql`: statements run straight on the locked DuckDB connection,
bypassing the parser, still cannot read a local file, write anything or unlock the connection.
Also: the writers, the time and memory caps, and atomic output, over local Parquet shards."""

import csv
import json
import os
import random

import duckdb
import pyarrow.parquet as pq
import pytest

from vdata_hub.errors import SQLRefused, VdataError
from vdata_hub.query.export import unescape_text
from vdata_hub.query.sandbox import open_locked_connection, run_to_file
from vdata_hub.generation.records import RECORD_FIELDS, Record, records_to_table
from vdata_hub.generation.spec import canonical_json

CANARY = "CANARY-7f3a9c-not-in-the-dataset"
DOMAINS = ["healthcare", "education", "finance"]


def make_rows(count: int, axis: str, start: int = 0) -> list[dict]:
    """Rows with the canonical schema; texts carry quotes, commas, newlines and backslashes."""
    return [Record(
        id=f"{axis}-{i:06d}", text=f'{axis} text {i}, "quoted"\nsecond line \\ {DOMAINS[i % 3]}',
        prompt=f"prompt {i}", system_prompt="system", template="story", template_sha="0" * 64,
        variables=canonical_json({"group": f"g{i % 2}"}), bias_axis=axis, domain=DOMAINS[i % 3], task="story",
        group=f"g{i % 2}", model="openai/fake-model", params=canonical_json({"temperature": 0.7}), input_tokens=10,
        output_tokens=20 + i, cost_usd=0.0001, finish_reason="stop", created_at="2026-01-01T00:00:00Z",
        flags=["short"] if i % 5 == 0 else [],
    ).to_dict() for i in range(start, start + count)]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Local shards, a canary file beside them, and the working directory inside the sandbox."""
    data = tmp_path / "data"
    for axis, count in (("gender", 30), ("age", 20)):
        (data / axis).mkdir(parents=True)
        pq.write_table(records_to_table(make_rows(count, axis)), data / axis / "c1.parquet")
    canary = tmp_path / "canary.txt"
    canary.write_text(CANARY + "\n")
    (tmp_path / "canary.csv").write_text(f"secret\n{CANARY}\n")
    monkeypatch.chdir(tmp_path)
    views = {"vdata": [str(data / "gender" / "c1.parquet"), str(data / "age" / "c1.parquet")],
             "gender": [str(data / "gender" / "c1.parquet")], "age": [str(data / "age" / "c1.parquet")]}
    return tmp_path, views


def all_files(root) -> set:
    return {os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names}


def test_locked_connection_still_reads_its_views(sandbox):
    _, views = sandbox
    connection = open_locked_connection(views, memory_limit="256MB", threads=1)
    assert connection.execute("SELECT count(*) FROM vdata").fetchone()[0] == 50
    assert connection.execute("SELECT count(*) FROM gender g JOIN vdata v USING (id)").fetchone()[0] == 30
    settings = dict(connection.execute("SELECT name, value FROM duckdb_settings() WHERE name IN "
                                       "('enable_external_access', 'lock_configuration', 'threads')").fetchall())
    assert settings == {"enable_external_access": "false", "lock_configuration": "true", "threads": "1"}


BYPASS = [
    "SELECT * FROM read_text('{root}/canary.txt')",
    "SELECT * FROM read_blob('{root}/canary.txt')",
    "SELECT * FROM read_csv('{root}/canary.csv')",
    "SELECT * FROM read_csv_auto('{root}/canary.csv')",
    "SELECT * FROM '{root}/canary.csv'",
    "SELECT * FROM sniff_csv('{root}/canary.csv')",
    "SELECT * FROM glob('{root}/*')",
    "SELECT * FROM read_text('{root}/data/gender/../../canary.txt')",
    "SELECT * FROM read_parquet('{root}/data/*/*.parquet')",
    "COPY (SELECT * FROM vdata) TO '{root}/stolen.csv'",
    "COPY (SELECT 1) TO '{root}/stolen.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{root}/dump'",
    "ATTACH '{root}/evil.db' AS evil",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "SET allowed_directories = ['{root}']",
    "SET memory_limit = '100GB'",
    "SET temp_directory = '{root}/spill'",
    "RESET enable_external_access",
    "PRAGMA threads = 64",
    "SELECT * FROM secret_frame",
]


@pytest.mark.parametrize("statement", BYPASS)
def test_locked_duckdb_refuses_what_the_parser_would_have_refused(sandbox, statement):
    root, views = sandbox
    secret_frame = pq.read_table(root / "data" / "gender" / "c1.parquet")  # noqa: F841 (replacement scan bait)
    before = all_files(root)
    connection = open_locked_connection(views, memory_limit="256MB", threads=1)
    with pytest.raises(duckdb.Error) as refused:
        connection.execute(statement.format(root=root)).fetchall()
    assert CANARY not in str(refused.value)
    assert all_files(root) == before
    assert connection.execute("SELECT current_setting('enable_external_access')").fetchone()[0] is False


def test_a_query_that_runs_forever_is_stopped_and_leaves_no_file(sandbox):
    root, views = sandbox
    before = all_files(root)
    connection = open_locked_connection(views, memory_limit="256MB", threads=1)
    forever = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t"
    with pytest.raises(SQLRefused, match="stopped after 1 s"):
        run_to_file(connection, forever, root / "out.jsonl", "json", timeout=1)
    streaming = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT n, repeat('x', 99) FROM t"
    with pytest.raises(SQLRefused, match="stopped after"):
        run_to_file(connection, streaming, root / "out.jsonl", "json", timeout=1)
    cross = "SELECT count(*) FROM vdata a, vdata b, vdata c, vdata d, vdata e, vdata f"
    with pytest.raises(SQLRefused, match="stopped after"):
        run_to_file(connection, cross, root / "out.jsonl", "json", timeout=1)
    assert all_files(root) == before


def test_a_query_that_eats_memory_hits_the_limit_and_writes_nothing(sandbox):
    root, views = sandbox
    before = all_files(root)
    connection = open_locked_connection(views, memory_limit="128MB", threads=1)
    hungry = "SELECT list(repeat(text, 10000)) FROM vdata, range(2000)"
    with pytest.raises(SQLRefused, match="memory limit"):
        run_to_file(connection, hungry, root / "out.parquet", "parquet", timeout=60)
    assert all_files(root) == before


def test_a_failing_query_keeps_the_previous_output_intact(sandbox):
    root, views = sandbox
    out = root / "rows.jsonl"
    out.write_text("previous\n")
    connection = open_locked_connection(views, memory_limit="256MB", threads=1)
    with pytest.raises(VdataError, match="query failed"):
        run_to_file(connection, "SELECT no_such_column FROM vdata", out, "json")
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []


def test_each_format_round_trips(sandbox):
    root, views = sandbox
    connection = open_locked_connection(views, memory_limit="256MB", threads=1)
    query = "SELECT * FROM gender ORDER BY id"
    expected = records_to_table(make_rows(30, "gender")).to_pylist()

    assert run_to_file(connection, query, root / "o.jsonl", "json") == 30
    assert [json.loads(line) for line in (root / "o.jsonl").read_text().splitlines()] == expected

    run_to_file(connection, query, root / "o.parquet", "parquet")
    assert pq.read_table(root / "o.parquet").to_pylist() == expected

    run_to_file(connection, query, root / "o.csv", "csv")
    raw = (root / "o.csv").read_bytes()
    assert raw.count(b"\r\n") >= 31 and b'"gender text 0, ""quoted""\nsecond line' in raw
    with open(root / "o.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == RECORD_FIELDS
    assert [row["text"] for row in table] == [row["text"] for row in expected]
    assert table[0]["flags"] == '["short"]' and table[0]["augmented"] == "false"

    run_to_file(connection, query, root / "o.txt", "text")
    lines = (root / "o.txt").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 31
    assert [unescape_text(line) for line in lines[:-1]] == [row["text"] for row in expected]
    assert "\\\\ healthcare" in lines[0] and "\\nsecond line" in lines[0]


def test_text_format_escaping_is_reversible():
    rng = random.Random(5)
    for _ in range(200):
        text = "".join(rng.choice("ab\\n\r\n\t\"'") for _ in range(rng.randint(0, 12)))
        from vdata_hub.query.export import escape_text
        escaped = escape_text(text)
        assert "\n" not in escaped and "\r" not in escaped
        assert unescape_text(escaped) == text


def test_text_format_needs_a_text_column(sandbox):
    root, views = sandbox
    connection = open_locked_connection(views, memory_limit="256MB", threads=1)
    with pytest.raises(VdataError, match="text output needs"):
        run_to_file(connection, "SELECT id, domain FROM vdata", root / "o.txt", "text")
    run_to_file(connection, "SELECT id FROM vdata ORDER BY id LIMIT 2", root / "ids.txt", "text")
    assert (root / "ids.txt").read_text() == "age-000000\nage-000001\n"
    assert not (root / "o.txt").exists()
