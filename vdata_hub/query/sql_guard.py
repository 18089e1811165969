"""The read-only SQL guard for `pull --sql`: parse user SQL with sqlglot (DuckDB dialect) and
accept only one query over the dataset's views.

This is the first of two walls. The second is the locked DuckDB connection in `pull.py` (no file
access beyond the dataset's Parquet files, configuration locked, memory, threads and time capped),
so a statement that slips past the parser still cannot read a local file or write anything.
What runs is the SQL regenerated from the checked syntax tree, without comments, so the text
DuckDB executes is exactly what was checked here.
"""

from __future__ import annotations

import logging

from vdata_hub.errors import SQLRefused

MAX_SQL_CHARS = 20_000

# Functions that read files, run other SQL, reveal settings or the environment, or reach another
# system. Table functions are refused wherever they appear in FROM; these names are refused anywhere.
REFUSED_FUNCTIONS = {
    "getenv", "current_setting", "glob", "sniff_csv", "query", "query_table", "which_secret",
    "from_substrait", "from_substrait_json", "get_substrait", "get_substrait_json",
    "json_execute_serialized_sql", "parquet_scan", "parquet_metadata", "parquet_schema",
    "parquet_file_metadata", "parquet_kv_metadata", "parquet_bloom_probe", "iceberg_scan",
    "delta_scan", "st_read", "st_readosm", "st_read_meta", "arrow_scan", "arrow_scan_dumb",
    "python_map_function", "load_extension", "install_extension", "checkpoint", "force_checkpoint",
    "enable_logging", "disable_logging", "truncate_duckdb_logs", "setvariable", "set_variable",
    "dbgen", "dsdgen", "tpch", "tpcds", "summary", "test_all_types", "sql_auto_complete",
}
REFUSED_PREFIXES = (
    "read_", "duckdb_", "pragma_", "parquet_", "sqlite_", "postgres_", "mysql_", "iceberg_", "delta_",
    "http_", "https_", "s3_", "azure_", "gcs_", "hf_", "icu_", "ducklake_", "excel_", "spatial_",
)
QUERY_TYPES = ("Select", "Union", "Intersect", "Except", "Values", "Subquery")
# Statement and clause nodes that may not appear anywhere in a query.
REFUSED_NODES = (
    "Copy", "Attach", "Detach", "Install", "Set", "Pragma", "Command", "Create", "Drop", "Insert",
    "Update", "Delete", "Merge", "Alter", "Use", "Transaction", "Commit", "Rollback", "Describe",
    "Summarize", "Show", "Into", "LoadData", "Export", "Analyze", "Kill", "Grant", "Revoke",
    "TruncateTable", "Cache", "Uncache", "Refresh", "Placeholder", "Parameter", "SessionParameter",
)


def check_query(sql: str, views: list[str] | None) -> str:
    """Refuse anything but one read-only query over `views`; return the SQL to run.

    With `views=None` (before the dataset's views are known, so before any network call) every
    check runs except the one that the tables read are views of the dataset.
    Raises SQLRefused with one line saying what was refused and why.
    """
    import sqlglot
    from sqlglot import exp

    if not isinstance(sql, str) or not sql.strip():
        raise SQLRefused("empty SQL: write one SELECT over " + _view_list(views))
    if len(sql) > MAX_SQL_CHARS:
        raise SQLRefused(f"SQL of {len(sql)} characters refused: at most {MAX_SQL_CHARS} are accepted")
    statements = _parse(sql, sqlglot)
    if not statements:
        raise SQLRefused("empty SQL (only comments or `;`): write one SELECT over " + _view_list(views))
    if len(statements) != 1:
        raise SQLRefused(f"{len(statements)} statements refused: pull runs exactly one query, without `;` between statements")
    tree = statements[0]
    if type(tree).__name__ not in QUERY_TYPES:
        raise SQLRefused(f"{_node_label(tree)} statement refused: only queries (SELECT, WITH, UNION, INTERSECT, "
                         "EXCEPT, VALUES) are allowed")
    _check_nodes(tree, exp)
    _check_tables(tree, views, exp)
    return tree.sql(dialect="duckdb", comments=False)


def tables_in(checked_sql: str) -> set[str]:
    """Lower-case names of the tables a checked query reads, so only those views are opened."""
    import sqlglot
    from sqlglot import exp

    return {table.name.lower() for table in sqlglot.parse_one(checked_sql, dialect="duckdb").find_all(exp.Table)}


def has_limit(checked_sql: str) -> bool:
    """Whether the outermost query stops after a number of rows (LIMIT)."""
    import sqlglot

    return sqlglot.parse_one(checked_sql, dialect="duckdb").args.get("limit") is not None


def _parse(sql: str, sqlglot) -> list:
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    try:
        statements = sqlglot.parse(sql, dialect="duckdb")
    except sqlglot.errors.SqlglotError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise SQLRefused(f"SQL not understood ({first_line[:200]}); write one SELECT query") from None
    except RecursionError:
        raise SQLRefused("SQL refused: nested too deeply to check; simplify the query") from None
    # A comment after the last `;` parses as an empty `Semicolon` statement: not a statement to run.
    return [statement for statement in statements
            if statement is not None and type(statement).__name__ != "Semicolon"]


def _check_nodes(tree, exp) -> None:
    for node in tree.walk():
        kind = type(node).__name__
        if kind in REFUSED_NODES:
            raise SQLRefused(f"{_node_label(node)} refused inside the query: pull only reads the dataset's views")
        if isinstance(node, exp.Func):
            name = _function_name(node, exp)
            if name in REFUSED_FUNCTIONS or name.startswith(REFUSED_PREFIXES):
                raise SQLRefused(f"function {name}() refused: it reads files, runs other SQL or reaches outside "
                                 "the dataset")


def _check_tables(tree, views: list[str] | None, exp) -> None:
    allowed = {view.lower() for view in views or []}
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            name = _function_name(table.this, exp) if isinstance(table.this, exp.Func) else table.this.sql("duckdb")
            raise SQLRefused(f"table function {name}() refused in FROM: read the dataset through its views "
                             f"({_view_list(views)})")
        if table.args.get("db") or table.args.get("catalog"):
            raise SQLRefused(f"qualified table {table.sql('duckdb')} refused: use the bare view names "
                             f"({_view_list(views)})")
        name = table.name.lower()
        if views is not None and name not in allowed and name not in cte_names:
            raise SQLRefused(f"table {table.name!r} refused: not one of the dataset's views ({_view_list(views)})")


def _function_name(node, exp) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _node_label(node) -> str:
    kind = type(node).__name__
    if kind == "Command":
        return str(node.this).split()[0].upper() if node.this else "command"
    return kind.upper()


def _view_list(views: list[str]) -> str:
    return ", ".join(views) if views else "vdata"
