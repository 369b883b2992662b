"""The SQL that creates the extension's tables, or adds what an older database lacks.

The host owns its schema: ``db.create_all()`` or Alembic autogenerate pick the tables up from
``db.metadata``. Sites that write their migrations by hand, or review what autogenerate wrote,
get the statements for their own database from ``flask alisms schema``; with ``--missing``
only the tables, columns and indexes the database lacks, so an upgrade is one reviewed script
instead of a search through the changelog. The statements come from the models themselves,
compiled by SQLAlchemy for the database's dialect, so they cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

from .models import Models

#: Said instead of SQL when ``--missing`` finds nothing to add (a comment in every dialect).
UP_TO_DATE = "-- Every alisms table, column and index is present: nothing to add."


def tables(models: Models) -> list[sa.Table]:
    """The extension's tables, parents before the tables that refer to them."""
    mine = {
        model.__table__
        for field in dataclasses.fields(models)
        if (model := getattr(models, field.name)) is not None
    }
    first = next(iter(mine))
    return [table for table in first.metadata.sorted_tables if table in mine]


def statements(models: Models, bind_for: Any, *, missing: bool = False) -> list[str]:
    """DDL statements, each ending in ``;``, for the database ``bind_for(table)`` returns.

    With ``missing``, the database is inspected and only what it lacks is returned: whole
    tables with their indexes, then columns and indexes added to the tables it has. Unique
    constraints of an existing table are not compared (every one dates from its table's
    first version).
    """
    found: list[str] = []
    inspectors: dict[Any, Any] = {}  # one per database: it caches what it has read
    for table in tables(models):
        engine = bind_for(table)
        dialect = engine.dialect
        if missing and engine not in inspectors:
            inspectors[engine] = sa.inspect(engine)
        inspector = inspectors.get(engine)
        if inspector is None or not inspector.has_table(table.name):
            found.append(_sql(CreateTable(table), dialect))
            found.extend(_sql(CreateIndex(index), dialect) for index in _indexes(table))
            continue
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in columns:
                found.append(_add_column(table, column, dialect))
        indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        found.extend(
            _sql(CreateIndex(index), dialect)
            for index in _indexes(table)
            if index.name not in indexes
        )
    return found


def _indexes(table: sa.Table) -> list[sa.Index]:
    return sorted(table.indexes, key=lambda index: str(index.name))


def _add_column(table: sa.Table, column: sa.Column[Any], dialect: Any) -> str:
    preparer = dialect.identifier_preparer
    spec = str(CreateColumn(column).compile(dialect=dialect)).strip()
    sql = f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {spec};"
    if not column.nullable and column.server_default is None:
        # Columns added since a table's first version are nullable; should one ever not be,
        # say so rather than hand over a statement that fails without a word.
        sql = (
            f"-- {table.name}.{column.name} is NOT NULL without a default: this fails on a table"
            " with rows (on SQLite always);\n-- add it as NULL, fill it, then make it NOT NULL."
            f"\n{sql}"
        )
    return sql


def _sql(element: Any, dialect: Any) -> str:
    text = str(element.compile(dialect=dialect)).strip()
    return "\n".join(line.rstrip() for line in text.splitlines()) + ";"
