"""Reading the public dataset back: `pull` plans the export, sql_guard refuses anything but one
read-only query, sandbox runs it in a locked-down DuckDB over the Hub's shards (read through
shard_reader's range requests), export writes the file.
"""
