"""Wrong guesses racing from several processes never get more than ``max_attempts``
comparisons against one code (issue 12, point 8).

Eight processes start together (a barrier) and each submits three wrong guesses against one
live code that allows five tries. In each process the digest comparison is wrapped to count
the comparisons and to take a few milliseconds, so that checks really are in flight together,
as they are on a busy site with several workers. The code store under test is the one the suite
is configured for: the database (SQLite by default, PostgreSQL or MariaDB with
``ALISMS_TEST_DATABASE_URL``) or Redis (``ALISMS_TEST_CODE_STORAGE``), where the comparison
happens inside a Lua script and only the verdicts can be counted.
"""

from __future__ import annotations

import hmac
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from .conftest import CODE_STORAGE, DATABASE_URL, PHONE

PROCESSES = 8
GUESSES = 3
MAX_ATTEMPTS = 5
PURPOSE = "register"
RIGHT = "a" * 64


def _store(database_url: str) -> tuple[Any, Any, Any]:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from flask_alisms.flows.codes import create_code_store
    from flask_alisms.models import build_models

    app = Flask("attempts_race")
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db = SQLAlchemy()
    db.init_app(app)
    models = build_models(db)
    return app, db, create_code_store(CODE_STORAGE, db, models)


def _guess(database_url: str, barrier: Any, index: int, results: Any) -> None:
    """One racing process: wait for the others, then send GUESSES wrong digests."""
    compared = 0
    original = hmac.compare_digest

    def slow_compare(a: Any, b: Any) -> bool:
        nonlocal compared
        compared += 1
        time.sleep(0.02)
        return original(a, b)

    hmac.compare_digest = slow_compare  # this process only
    app, _, store = _store(database_url)
    verdicts = []
    with app.app_context():
        barrier.wait()
        for n in range(GUESSES):
            verdicts.append(store.check(PHONE, PURPOSE, f"{index:02d}{n:02d}".ljust(64, "b")).value)
    results.put((compared, verdicts))


def test_racing_wrong_guesses_never_compare_more_than_max_attempts(tmp_path: Path) -> None:
    database_url = DATABASE_URL or f"sqlite:///{tmp_path}/race.db"
    app, db, store = _store(database_url)
    with app.app_context():
        db.metadata.create_all(db.engine)
        store.save(PHONE, PURPOSE, RIGHT, ttl=300, attempts=MAX_ATTEMPTS)
        db.engine.dispose()  # no pooled connection crosses the fork
    try:
        context = multiprocessing.get_context("fork")
        barrier = context.Barrier(PROCESSES)
        results = context.Queue()
        processes = [
            context.Process(target=_guess, args=(database_url, barrier, i, results))
            for i in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
        verdicts = [v for _, vs in outcomes for v in vs]
        comparisons = sum(c for c, _ in outcomes)
        assert len(verdicts) == PROCESSES * GUESSES
        assert verdicts.count("wrong") == MAX_ATTEMPTS
        assert verdicts.count("invalid") == PROCESSES * GUESSES - MAX_ATTEMPTS
        if CODE_STORAGE == "database":
            assert comparisons == MAX_ATTEMPTS
        # The tries are gone: even the right code is refused now.
        with app.app_context():
            assert store.check(PHONE, PURPOSE, RIGHT).value == "invalid"
    finally:
        with app.app_context():
            db.session.remove()
            if CODE_STORAGE == "database":
                db.metadata.drop_all(db.engine)
            else:
                import redis

                redis.Redis.from_url(CODE_STORAGE).delete(f"alisms:code:{PURPOSE}:{PHONE}")
            db.engine.dispose()


@pytest.mark.parametrize("attempts", [1, 2])
def test_the_right_code_on_the_last_try_is_accepted_once(tmp_path: Path, attempts: int) -> None:
    """Taking the try first does not cost the honest user the last one."""
    app, db, store = _store(DATABASE_URL or f"sqlite:///{tmp_path}/last.db")
    with app.app_context():
        db.metadata.create_all(db.engine)
        try:
            store.save(PHONE, PURPOSE, RIGHT, ttl=300, attempts=attempts)
            for _ in range(attempts - 1):
                assert store.check(PHONE, PURPOSE, "c" * 64).value == "wrong"
            assert store.check(PHONE, PURPOSE, RIGHT).value == "accepted"
            assert store.check(PHONE, PURPOSE, RIGHT).value == "invalid"
        finally:
            db.session.remove()
            if CODE_STORAGE == "database":
                db.metadata.drop_all(db.engine)
            db.engine.dispose()


def test_an_expired_code_takes_no_try_and_is_not_compared(tmp_path: Path) -> None:
    if CODE_STORAGE != "database":
        pytest.skip("Redis expires the key itself")
    app, db, store = _store(DATABASE_URL or f"sqlite:///{tmp_path}/expired.db")
    model = store._model
    with app.app_context():
        db.metadata.create_all(db.engine)
        try:
            store.save(PHONE, PURPOSE, RIGHT, ttl=300, attempts=3)
            db.session.execute(sa.update(model).values(expires_at=model.created_at))
            db.session.commit()
            assert store.check(PHONE, PURPOSE, RIGHT).value == "invalid"
            left = db.session.scalar(sa.select(model.attempts_left))
            assert left == 3
        finally:
            db.session.remove()
            db.metadata.drop_all(db.engine)
            db.engine.dispose()
