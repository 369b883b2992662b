"""``flask alisms schema``: the SQL it prints builds the same tables as ``db.create_all()``, and
``--missing`` brings an older database up to date (on each database CI runs the suite on)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_alisms import AliSMS, schema

from .conftest import Host

DROPPED_TABLES = ("alisms_daily_total", "alisms_failure_total", "alisms_budget_alert")


def _shape(host: Host) -> dict[str, Any]:
    """What the database says about each alisms table: columns, key and indexes."""
    with host.app.app_context():
        inspector = sa.inspect(host.db.engine)
        found = {}
        for name in sorted(inspector.get_table_names()):
            if not name.startswith("alisms_"):
                continue
            found[name] = (
                sorted((c["name"], bool(c["nullable"])) for c in inspector.get_columns(name)),
                inspector.get_pk_constraint(name)["constrained_columns"],
                sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(name)
                    if not i["name"].startswith("uq_")  # MariaDB lists unique constraints here
                ),
            )
        return found


def _run(host: Host, *args: str) -> str:
    result = host.app.test_cli_runner().invoke(args=["alisms", "schema", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _execute(host: Host, sql: str) -> None:
    statements = [part.strip() for part in sql.split(";") if part.strip()]
    with host.app.app_context(), host.db.engine.begin() as connection:
        for statement in statements:
            lines = statement.splitlines()
            body = "\n".join(line for line in lines if not line.startswith("--"))
            connection.exec_driver_sql(body)


def _drop(host: Host, *tables: str) -> None:
    with host.app.app_context():
        metadata = host.db.metadata
        metadata.drop_all(host.db.engine, tables=[metadata.tables[name] for name in tables])


def test_the_printed_sql_builds_what_create_all_builds(host: Host) -> None:
    expected = _shape(host)
    assert len(expected) == 10
    printed = _run(host)
    assert printed.count("CREATE TABLE") == 10
    assert "alisms_daily_total" in printed and "ix_alisms_send_log_biz_id" in printed
    assert "host_user" not in printed  # the host's own tables are the host's business

    _drop(host, *expected)
    assert _shape(host) == {}
    _execute(host, printed)
    assert _shape(host) == expected


def test_missing_adds_only_what_an_older_database_lacks(host: Host) -> None:
    expected = _shape(host)
    with host.app.app_context():
        # A database from before the totals, the alerts and the "ends with" filter.
        log = host.db.metadata.tables["alisms_send_log"]
        for index in ("ix_alisms_send_log_tail_created", "ix_alisms_send_log_category_id"):
            next(i for i in log.indexes if i.name == index).drop(host.db.engine)
        with host.db.engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE alisms_send_log DROP COLUMN phone_tail")
    _drop(host, *DROPPED_TABLES)
    assert _shape(host) != expected

    printed = _run(host, "--missing")
    for table in DROPPED_TABLES:
        assert f"CREATE TABLE {table} (" in printed
    assert "CREATE TABLE alisms_send_log" not in printed
    assert "ADD COLUMN phone_tail VARCHAR(4)" in printed
    assert printed.count("CREATE INDEX") == 2  # the two it lacks, none it has
    assert "--" not in printed  # no warning: the new column is nullable

    _execute(host, printed)
    assert _shape(host) == expected
    assert _run(host, "--missing").strip() == schema.UP_TO_DATE


def test_a_not_null_column_without_default_comes_with_a_warning(host: Host) -> None:
    with host.app.app_context(), host.db.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE alisms_daily_total DROP COLUMN billed")
    printed = _run(host, "--missing")
    warning, advice, statement = printed.strip().splitlines()
    assert warning.startswith("-- alisms_daily_total.billed is NOT NULL without a default")
    assert advice.startswith("-- add it as NULL")
    assert statement == "ALTER TABLE alisms_daily_total ADD COLUMN billed INTEGER NOT NULL;"


def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="schema test",
        SQLALCHEMY_DATABASE_URI="postgresql+psycopg2://alisms:pw-s3cret@127.0.0.1:1/none",
    )
    AliSMS(app, db=SQLAlchemy(app))
    result = app.test_cli_runner().invoke(args=["alisms", "schema", "--missing"])
    assert result.exit_code == 1
    assert "Could not read the database's tables (OperationalError)." in result.output
    assert "s3cret" not in result.output
    # Without --missing nothing is read, so the SQL still prints (in the URL's dialect).
    printed = app.test_cli_runner().invoke(args=["alisms", "schema"]).output
    assert "CREATE TABLE alisms_parameter (" in printed
    assert "id SERIAL NOT NULL" in printed
