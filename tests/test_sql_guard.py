"""The parser wall of `pull --sql`: hostile statements are refused with a one-line reason, and
ordinary analytical queries pass unchanged in meaning."""

import pytest

from vdata_hub.errors import SQLRefused
from vdata_hub.query.sql_guard import MAX_SQL_CHARS, check_query

VIEWS = ["vdata", "gender", "race-ethnicity"]

# (statement, a word the refusal must contain so the user sees what was refused)
HOSTILE = [
    # stacked statements and comments hiding a second statement
    ("SELECT * FROM vdata; DROP TABLE vdata", "2 statements"),
    ("SELECT 1; COPY (SELECT 1) TO '/tmp/x.csv'", "2 statements"),
    ("SELECT 1 /* */; ATTACH '/tmp/x.db'", "2 statements"),
    ("SELECT 1 -- harmless\n; INSTALL httpfs", "2 statements"),
    ("SELECT 1;\n/* hidden */ SELECT * FROM read_text('/etc/passwd')", "2 statements"),
    ("SELECT '--'; SELECT 2", "2 statements"),
    # file readers, in FROM, subqueries, CTEs, joins, lateral, set operations
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "read_csv_auto"),
    ("SELECT * FROM read_parquet('/tmp/other.parquet')", "read_parquet"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text"),
    ("SELECT * FROM read_blob('/etc/passwd')", "read_blob"),
    ("SELECT * FROM read_json('/etc/passwd')", "read_json"),
    ("SELECT * FROM read_json_auto('x.json')", "read_json_auto"),
    ("SELECT * FROM read_ndjson_objects('x.json')", "read_ndjson_objects"),
    ("SELECT * FROM parquet_scan('/tmp/x.parquet')", "parquet_scan"),
    ("SELECT * FROM parquet_metadata('hf://datasets/org/vdata/data/a/b.parquet')", "parquet_metadata"),
    ("SELECT * FROM glob('/home/*')", "glob"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "sniff_csv"),
    ("SELECT * FROM vdata WHERE text IN (SELECT content FROM read_text('/etc/passwd'))", "read_text"),
    ("WITH f AS (SELECT * FROM read_text('/etc/passwd')) SELECT * FROM f", "read_text"),
    ("SELECT * FROM vdata, LATERAL (SELECT * FROM read_blob('/etc/shadow'))", "read_blob"),
    ("SELECT text FROM vdata UNION ALL SELECT content FROM read_text('/etc/passwd')", "read_text"),
    ("SELECT * FROM vdata JOIN read_csv('/etc/passwd') AS p ON true", "read_csv"),
    ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),
    ("FROM 'secrets.csv'", "secrets.csv"),
    ('SELECT * FROM "/etc/passwd"', "/etc/passwd"),
    ("SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')", "query"),
    ("SELECT * FROM query_table('vdata')", "query_table"),
    ("SELECT * FROM range(10)", "table function"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings"),
    ("SELECT * FROM pragma_version()", "pragma_version"),
    ("SELECT * FROM json_execute_serialized_sql('{}')", "json_execute_serialized_sql"),
    # functions reaching outside, anywhere in the query
    ("SELECT getenv('HF_TOKEN')", "getenv"),
    ("SELECT 'HF_TOKEN'.getenv()", "getenv"),
    ("SELECT text FROM vdata WHERE id = current_setting('home_directory')", "current_setting"),
    ('SELECT "getenv"(\'HOME\')', "getenv"),
    ("SELECT duckdb_secrets()", "duckdb_secrets"),
    ("SELECT which_secret('s3://x', 's3')", "which_secret"),
    # writing, attaching, extensions, settings
    ("COPY (SELECT * FROM vdata) TO '/tmp/out.csv'", "COPY"),
    ("COPY vdata FROM '/etc/passwd'", "COPY"),
    ("EXPORT DATABASE '/tmp/dump'", "not understood"),
    ("ATTACH '/tmp/evil.db' AS evil", "ATTACH"),
    ("DETACH evil", "DETACH"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD httpfs", "LOAD"),
    ("SET enable_external_access = true", "SET"),
    ("SET lock_configuration = false", "SET"),
    ("RESET memory_limit", "RESET"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("CALL pragma_version()", "CALL"),
    ("USE evil", "USE"),
    ("CHECKPOINT", "refused"),
    ("BEGIN TRANSACTION", "TRANSACTION"),
    # DDL and DML
    ("CREATE TABLE t AS SELECT * FROM vdata", "CREATE"),
    ("CREATE MACRO leak() AS TABLE SELECT * FROM read_text('/etc/passwd')", "refused"),
    ("CREATE OR REPLACE VIEW vdata AS SELECT 1", "CREATE"),
    ("DROP VIEW vdata", "DROP"),
    ("INSERT INTO vdata VALUES (1)", "INSERT"),
    ("UPDATE vdata SET text = ''", "UPDATE"),
    ("DELETE FROM vdata", "DELETE"),
    ("ALTER VIEW vdata RENAME TO x", "ALTER"),
    ("SELECT * INTO newtable FROM vdata", "INTO"),
    ("DESCRIBE vdata", "DESCRIBE"),
    ("SUMMARIZE vdata", "SUMMARIZE"),
    ("SHOW TABLES", "SHOW"),
    # case and whitespace tricks
    ("sElEcT * fRoM ReAd_CsV('/etc/passwd')", "read_csv"),
    ("SELECT\t*\nFROM\r\n   READ_TEXT  (\n'/etc/passwd'\n)", "read_text"),
    ("  \n\t;SELECT 1;\n\n  copy (select 1) to 'x.csv'  ", "2 statements"),
    ("SELECT/**/*/**/FROM/**/read_text('/etc/passwd')", "read_text"),
    # names outside the dataset's views
    ("SELECT * FROM main.vdata", "qualified"),
    ("SELECT * FROM system.main.duckdb_tables", "qualified"),
    ("SELECT * FROM information_schema.tables", "qualified"),
    ("SELECT * FROM duckdb_tables", "duckdb_tables"),
    ("SELECT * FROM sqlite_master", "sqlite_master"),
    ("SELECT * FROM other_table", "other_table"),
    # string tricks: the dangerous text is only inside a string, or a string hides a statement
    ("SELECT * FROM vdata WHERE text = ''; DROP VIEW vdata; --'", "2 statements"),
    ("SELECT * FROM vdata WHERE text = $$x$$; COPY vdata TO 'x'", "2 statements"),
    ("SELECT * FROM read_text(E'\\x2fetc\\x2fpasswd')", "read_text"),
    ("SELECT * FROM read_text('/etc/' || 'passwd')", "read_text"),
    # unparseable, empty or oversized input
    ("SELECT * FROM vdata WHERE", "not understood"),
    ("", "empty"),
    ("-- only a comment", "empty"),
    (";;", "empty"),
    ("SELECT 1 AS x" + " UNION ALL SELECT 1" * 2000, "characters"),
    ("SELECT " + "(" * 3000 + "1" + ")" * 3000, "refused"),
    # parameters and placeholders
    ("SELECT * FROM vdata WHERE id = $1", "refused"),
    ("SELECT * FROM vdata WHERE id = ?", "refused"),
]


@pytest.mark.parametrize("sql, reason", HOSTILE, ids=[f"hostile{i:02d}" for i in range(len(HOSTILE))])
def test_hostile_statement_is_refused_with_a_reason(sql, reason):
    with pytest.raises(SQLRefused) as refused:
        check_query(sql, VIEWS)
    message = str(refused.value)
    assert reason.lower() in message.lower()
    assert "\n" not in message and len(message) < 400


def test_there_are_at_least_forty_hostile_statements():
    assert len(HOSTILE) >= 40


def test_very_long_query_limit_is_the_documented_one():
    query = "SELECT text FROM vdata WHERE " + " OR ".join(["domain = 'healthcare'"] * 2000)
    assert len(query) > MAX_SQL_CHARS
    with pytest.raises(SQLRefused, match="at most"):
        check_query(query, VIEWS)


ACCEPTED = [
    "SELECT text FROM vdata WHERE domain = 'healthcare' LIMIT 10",
    "select count(*) from GENDER",
    'SELECT * FROM "race-ethnicity"',
    "FROM gender SELECT id, text",
    "SELECT domain, count(*) AS n FROM vdata GROUP BY ALL ORDER BY n DESC",
    "WITH g AS (SELECT * FROM gender) SELECT g.id FROM g JOIN vdata v ON v.id = g.id",
    "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT n FROM t",
    "SELECT text FROM vdata UNION SELECT text FROM gender EXCEPT SELECT text FROM \"race-ethnicity\"",
    "SELECT id, unnest(flags) AS flag FROM vdata",
    "SELECT * FROM vdata WHERE text ILIKE '%read_csv(%' AND text <> 'getenv(''HOME'')'",
    "SELECT json_extract_string(variables, '$.group') AS g, lower(text) FROM vdata",
    "SELECT * FROM vdata QUALIFY row_number() OVER (PARTITION BY domain ORDER BY id) <= 2",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT 1; -- trailing comment",
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_ordinary_queries_pass_and_come_back_without_comments(sql):
    checked = check_query(sql, VIEWS)
    assert "--" not in checked and ";" not in checked
    assert check_query(checked, VIEWS) == checked


def test_strings_that_look_dangerous_are_kept_as_data():
    checked = check_query("SELECT * FROM vdata WHERE text = '; DROP VIEW vdata; --'", VIEWS)
    assert "'; DROP VIEW vdata; --'" in checked
