"""The `sql_query` custom tool of examples/custom_tools: a read-only SQL SELECT over a small
analytics warehouse (warehouse.csv loaded into an in-memory SQLite table `orders`).

Declared in tools.yaml as `run: {python: "warehouse.py:sql_query"}`; the environment calls
`sql_query(**arguments)` and shows the returned text to the model."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

CSV = Path(__file__).with_name("warehouse.csv")


def _database() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE orders (region TEXT, quarter TEXT, product TEXT, revenue_eur REAL)")
    with CSV.open(newline="") as handle:
        rows = [tuple(r.values()) for r in csv.DictReader(handle)]
    db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", rows)
    db.execute("PRAGMA query_only = ON")
    return db


def sql_query(sql: str) -> str:
    """The rows of one SELECT, as a text table (an error message for anything else)."""
    if not sql.strip().lower().startswith("select"):
        return "Error: only SELECT statements are allowed"
    db = _database()
    try:
        cursor = db.execute(sql)
    except sqlite3.Error as error:
        return f"SQL error: {error}"
    header = [column[0] for column in cursor.description]
    rows = cursor.fetchmany(50)
    lines = [" | ".join(header)] + [" | ".join(map(str, row)) for row in rows]
    return "\n".join(lines)
