"""Verification codes: made with a CSPRNG, kept only as keyed digests, single use, few tries.

Two stores share one contract so that several app processes see the same codes: the host's
database (default) and Redis (``ALISMS_CODE_STORAGE = "redis://..."``, also Redis Cluster as
``redis+cluster://host:port,host:port`` and Sentinel as ``redis+sentinel://host:port/service``).
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
import hmac
import secrets
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ..models import Models, connection_for, transaction, utcnow


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    WRONG = "wrong"  # a live code exists and this is not it; one try was spent
    INVALID = "invalid"  # no live code: never sent, expired, used or burnt


def generate_code(length: int) -> str:
    """A uniformly random numeric code of ``length`` digits (leading zeros kept)."""
    return f"{secrets.randbelow(10**length):0{length}d}"


class CodeStore(abc.ABC):
    """Where the one live code per phone and purpose lives until used, burnt or expired."""

    @abc.abstractmethod
    def save(self, phone: str, purpose: str, digest: str, *, ttl: int, attempts: int) -> None:
        """Keep ``digest`` as the live code, replacing (invalidating) any older one."""

    @abc.abstractmethod
    def check(self, phone: str, purpose: str, digest: str) -> Verdict:
        """Consume the code when ``digest`` matches; spend one try otherwise."""

    @abc.abstractmethod
    def purge(self, older_than: dt.datetime) -> int:
        """Remove dead codes created before ``older_than``; returns how many."""


_REPLACED = ("digest", "created_at", "expires_at", "attempts_left")


def _build_upsert(dialect: str, table: sa.Table) -> sa.Executable | None:
    """INSERT ... ON CONFLICT / ON DUPLICATE KEY UPDATE where the dialect has it.

    Built once per store with the values left as parameters: constructing the statement
    costs about as much CPU as running it. ``inline()``: nobody reads the new row's id, so
    PostgreSQL is not asked to send it back (``RETURNING``).
    """
    if dialect in ("postgresql", "sqlite"):
        module = postgresql if dialect == "postgresql" else sqlite
        insert = module.insert(table).inline()
        return insert.on_conflict_do_update(
            index_elements=["phone", "purpose"],
            set_={name: insert.excluded[name] for name in _REPLACED},
        )
    if dialect in ("mysql", "mariadb"):
        my_insert = mysql.insert(table).inline()
        return my_insert.on_duplicate_key_update({n: my_insert.inserted[n] for n in _REPLACED})
    return None


class DatabaseCodeStore(CodeStore):
    """Codes in the host's database; conditional UPDATE/DELETE keep concurrent checks honest."""

    def __init__(self, db: SQLAlchemy, models: Models) -> None:
        self._db = db
        self._model = models.VerificationCode
        self._upserts: dict[str, sa.Executable | None] = {}

    def save(self, phone: str, purpose: str, digest: str, *, ttl: int, attempts: int) -> None:
        """One upsert and one commit of the host's session.

        The commit also carries whatever the caller added to the session before (the send log
        row of this send), so a send costs one transaction. Racing saves for one phone cannot
        fail: the database resolves them, and the last one wins, so only the newest code is live.
        """
        model, session = self._model, self._db.session
        now = utcnow()
        fields = {
            "digest": digest,
            "created_at": now,
            "expires_at": now + dt.timedelta(seconds=ttl),
            "attempts_left": attempts,
        }
        with transaction(session):
            connection = connection_for(session, model)
            dialect = connection.dialect.name
            if dialect not in self._upserts:
                self._upserts[dialect] = _build_upsert(dialect, model.__table__)
            upsert = self._upserts[dialect]
            if upsert is not None:
                connection.execute(upsert, {"phone": phone, "purpose": purpose, **fields})
                return
            # Another database: update in place, else insert; a racing insert that wins makes
            # ours fail inside a savepoint only, and the update then finds its row.
            match = (model.phone == phone, model.purpose == purpose)
            updated: Any = session.execute(sa.update(model).where(*match).values(**fields))
            if updated.rowcount:
                return
            try:
                with session.begin_nested():
                    session.execute(sa.insert(model).values(phone=phone, purpose=purpose, **fields))
            except IntegrityError:
                session.execute(sa.update(model).where(*match).values(**fields))

    def check(self, phone: str, purpose: str, digest: str) -> Verdict:
        """Take one try with a conditional UPDATE first, then compare.

        The decrement is the ticket for a comparison: of checks racing on one code, only as
        many as there are tries left get a row back, so a code is never compared more than
        ``attempts`` times, whatever the number of processes. The UPDATE also locks the row
        (PostgreSQL, InnoDB; SQLite locks the file) until the commit, so the digest read next
        is the one the try was taken on.
        """
        model, session = self._model, self._db.session
        match = (model.phone == phone, model.purpose == purpose)
        with transaction(session):
            taken: Any = session.execute(
                sa.update(model)
                .where(*match, model.attempts_left > 0, model.expires_at > utcnow())
                .values(attempts_left=model.attempts_left - 1)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:
                return Verdict.INVALID
            row = session.execute(sa.select(model.id, model.digest).where(*match)).first()
            if row is None or not hmac.compare_digest(row.digest, digest):
                return Verdict.WRONG if row is not None else Verdict.INVALID
            session.execute(sa.delete(model).where(model.id == row.id))
            return Verdict.ACCEPTED

    def purge(self, older_than: dt.datetime) -> int:
        model, session = self._model, self._db.session
        with transaction(session):
            result: Any = session.execute(
                sa.delete(model).where(
                    sa.or_(model.created_at < older_than, model.expires_at < utcnow())
                )
            )
        return int(result.rowcount or 0)


# KEYS[1]: the code's hash; ARGV: digest, tries, seconds to live. One round trip, atomic.
_SAVE_SCRIPT = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'left', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
"""

# KEYS[1]: the code's hash; ARGV[1]: the submitted digest. 1 = accepted, 2 = wrong, 0 = invalid.
_CHECK_SCRIPT = """
local stored = redis.call('HGET', KEYS[1], 'digest')
if not stored then return 0 end
-- The try is taken before the comparison, inside the script: Redis runs one script at a
-- time, so no more than the tries left are ever compared.
if redis.call('HINCRBY', KEYS[1], 'left', -1) < 0 then return 0 end
if stored == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 2
"""


def redis_client(url: str) -> Any:
    """A Redis client for ``url``: ``redis://`` (and ``rediss://``, ``unix://``) as redis-py
    reads it, ``redis+cluster://[user:password@]host:port,host:port`` (a cluster, found from
    any of its nodes) or ``redis+sentinel://[user:password@]host:port,host:port/service``
    (the service's current master), the forms the ``limits`` storages accept.
    """
    import redis

    parts = urlsplit(url)
    if parts.scheme not in ("redis+cluster", "redis+sentinel"):
        return redis.Redis.from_url(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    user, _, password = auth.partition(":")
    given = (("username", user), ("password", password))
    credentials: dict[str, Any] = {name: unquote(value) for name, value in given if value}
    nodes = []
    for location in hosts.split(","):
        host, colon, port = location.rpartition(":")
        nodes.append((host, int(port)) if colon else (location, 6379))
    if parts.scheme == "redis+cluster":
        from redis.cluster import ClusterNode, RedisCluster

        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], **credentials)
    from redis.sentinel import Sentinel

    service = parts.path.strip("/")
    if not service:
        raise ValueError(f"{url!r} names no Sentinel service (redis+sentinel://host:port/name)")
    return Sentinel(nodes, sentinel_kwargs=credentials, **credentials).master_for(service)


class RedisCodeStore(CodeStore):
    """Codes in Redis, expiring on their own; a Lua script makes each check atomic.

    The script compares digests (HMACs the client cannot steer), so its ordinary string
    comparison leaks nothing about the code. A key holds the phone as Redis Cluster's hash
    tag: whatever one script touches for one phone lives in one slot, while different phones
    spread over the cluster.
    """

    def __init__(self, url: str, *, prefix: str = "alisms:code:") -> None:
        self._redis = redis_client(url)
        self._prefix = prefix
        self._save = self._redis.register_script(_SAVE_SCRIPT)
        self._check = self._redis.register_script(_CHECK_SCRIPT)

    def _key(self, phone: str, purpose: str) -> str:
        return f"{self._prefix}{{{phone}}}:{purpose}"

    def save(self, phone: str, purpose: str, digest: str, *, ttl: int, attempts: int) -> None:
        self._save(keys=[self._key(phone, purpose)], args=[digest, attempts, ttl])

    def check(self, phone: str, purpose: str, digest: str) -> Verdict:
        outcome = int(self._check(keys=[self._key(phone, purpose)], args=[digest]))
        return {1: Verdict.ACCEPTED, 2: Verdict.WRONG}.get(outcome, Verdict.INVALID)

    def purge(self, older_than: dt.datetime) -> int:
        return 0  # Redis expires codes by itself.


def create_code_store(setting: str, db: SQLAlchemy, models: Models) -> CodeStore:
    if setting == "database":
        return DatabaseCodeStore(db, models)
    return RedisCodeStore(setting)
