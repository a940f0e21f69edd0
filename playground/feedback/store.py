"""Durable, idempotent vote storage with SQLAlchemy Core: the same code for SQLite and PostgreSQL.

- One transaction per vote; `record` returns only after COMMIT, so an acknowledged vote survives a crash.
  SQLite runs with a rollback journal (not WAL, see below) and `synchronous=FULL` (the commit is fsynced: a
  power loss cannot drop it) and a busy timeout; write transactions start with `BEGIN IMMEDIATE`, so
  concurrent writers queue on the lock instead of failing. PostgreSQL commits are durable by default.
- Idempotency: each vote carries a client-chosen key (UNIQUE). The insert is `ON CONFLICT DO NOTHING`; when
  the key exists the stored row's content hash is compared: equal → the earlier row is returned with
  created=False (a retry or double click), different → FeedbackError (a key reused for another vote).
- Schema versions: `schema_version` holds one row per applied migration; `MIGRATIONS[i]` upgrades version
  i to i + 1. `migrate()` runs at open, under a write lock (SQLite) or an advisory lock (PostgreSQL), and is
  a no-op when the database is current.
- Thread-safe: every call checks a connection out of the engine's pool.
- Faults fail the call, never the process: in WAL mode SQLite maps its `-shm` file into memory, and once that
  file cannot be written (made immutable) the next access to the mapping killed the process with SIGBUS
  (exit 135). So: a rollback journal (no memory map), and every call first checks that the database file
  (and any `-wal`/`-shm` left by WAL) can be written (`os.access`, no file opened: closing a descriptor would
  drop SQLite's locks), refusing with FeedbackUnavailable. A full disk is named as such.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from playground.feedback.vote import (
    OUTCOMES,
    SOURCES,
    FeedbackError,
    FeedbackUnavailable,
    StoredVote,
    Vote,
    fingerprint,
    to_plain,
    validate_vote,
)
from playground.settings.votes import FeedbackSettings

SQLITE_BUSY_TIMEOUT_S = 30.0  # a writer waits this long for the SQLite write lock before giving up
CONNECT_TIMEOUT_S = 5  # PostgreSQL: an unreachable server is reported after this many seconds
_PG_MIGRATION_LOCK = 0x766F746573  # pg_advisory_xact_lock key ("votes")
_JSON_COLUMNS = ("conversation", "settings_a", "settings_b", "judge_scores")


def _votes_v1(metadata: MetaData) -> Table:
    """The `votes` table as created by migration 1."""
    return Table(
        "votes", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("idempotency_key", String(200), nullable=False),
        Column("content_hash", String(64), nullable=False),  # fingerprint(vote): detects a reused key
        Column("created_at", DateTime(timezone=True), nullable=False),  # UTC
        Column("session_hash", String(64), nullable=False),  # HMAC-SHA256(salt, session id); never IP/UA
        Column("base_model", Text, nullable=False),
        Column("adapter", Text, nullable=False),
        Column("adapter_hash", Text, nullable=False),
        Column("prompt", Text, nullable=False),
        Column("conversation", Text, nullable=False),  # JSON list of {role, content}
        Column("answer_a", Text, nullable=False),
        Column("answer_b", Text, nullable=False),
        Column("tokens_a", Integer, nullable=False),
        Column("tokens_b", Integer, nullable=False),
        Column("settings_a", Text, nullable=False),  # JSON: lambda, mode, temperature, top_p, max_new_tokens, seed
        Column("settings_b", Text, nullable=False),
        Column("judge_scores", Text, nullable=False),  # JSON: {judge: [score_a, score_b]}
        Column("outcome", String(16), nullable=False),
        Column("source", String(16), nullable=False),
        UniqueConstraint("idempotency_key", name="uq_votes_idempotency_key"),
        CheckConstraint(f"outcome IN ({', '.join(repr(o) for o in OUTCOMES)})", name="ck_votes_outcome"),
        CheckConstraint(f"source IN ({', '.join(repr(s) for s in SOURCES)})", name="ck_votes_source"),
        Index("ix_votes_created_at", "created_at"),
        Index("ix_votes_session_hash", "session_hash"),
    )


def _migration_1(conn: Connection) -> None:
    """Create the votes table."""
    _votes_v1(MetaData()).create(conn)


MIGRATIONS: list[Callable[[Connection], None]] = [_migration_1]  # append only; never edit an applied one
SCHEMA_VERSION = len(MIGRATIONS)

_META = MetaData()
VOTES = _votes_v1(_META)  # the current schema (update together with a new migration)
SCHEMA = Table("schema_version", _META,
               Column("version", Integer, primary_key=True, autoincrement=False),
               Column("applied_at", DateTime(timezone=True), nullable=False))


def normalize_url(url: str) -> str:
    """`postgres://` and `postgresql://` mean psycopg 3 (the driver installed); other URLs are unchanged."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _use_rollback_journal(cur: Any) -> None:
    """Journal mode DELETE (a rollback journal), not WAL: WAL keeps its index in a memory-mapped `-shm` file,
    and once that file cannot be written (made immutable, truncated) the next access to the mapping, e.g. the
    checkpoint when a connection closes, kills the whole process with SIGBUS. With a rollback journal every
    file access is a plain read or write whose failure raises. Writers queue on the lock as before
    (`BEGIN IMMEDIATE`, busy timeout); a reader waits at most the length of a commit. A database left in WAL
    by an earlier version is switched back here (it needs the only connection: retried until the timeout)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "delete":
                cur.execute("PRAGMA journal_mode = DELETE")
            return
        except sqlite3.OperationalError as e:
            if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _make_engine(url: str) -> Engine:
    try:
        return _create(make_url(normalize_url(url)))
    except (sa_exc.ArgumentError, ImportError) as e:  # malformed URL, unknown dialect, driver not installed
        raise FeedbackUnavailable(f"Votes cannot be stored: the vote database URL is not usable ({e}). "
                                  "Check PLAYGROUND_DATABASE_URL.") from e


def _create(u: Any) -> Engine:
    if u.get_backend_name() == "sqlite":
        if u.database in (None, "", ":memory:") or u.query.get("mode") == "memory":
            raise FeedbackError("database_url: an in-memory SQLite database loses the votes; use a file")
        engine = create_engine(u, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # sqlite3 must not BEGIN on its own; `_begin` below does
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            _use_rollback_journal(cur)
            cur.execute("PRAGMA synchronous = FULL")  # fsync at every commit: acknowledged = on disk
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

        return engine
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if u.get_backend_name() == "postgresql" else {}
    return create_engine(u, connect_args=connect_args, pool_pre_ping=True)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class VoteStore:
    """Votes in a SQL database given by URL (`sqlite:///path` or `postgresql+psycopg://...`)."""

    def __init__(self, url: str, settings: FeedbackSettings | None = None) -> None:
        self.settings = settings
        self._engine = _make_engine(url)
        self._writer = self._engine.execution_options(write=True)  # same pool; BEGIN IMMEDIATE on SQLite
        self.dialect = self._engine.dialect.name
        self.where = self._engine.url.render_as_string(hide_password=True)
        try:
            self.migrate()
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (its pool is shared by all threads)."""
        return self._engine

    @classmethod
    def open(cls, settings: FeedbackSettings | None = None) -> VoteStore:
        """The store configured by the environment (FeedbackSettings.from_env())."""
        settings = settings or FeedbackSettings.from_env()
        return cls(settings.database_url, settings)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> VoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sqlite_path(self) -> str | None:
        """The SQLite database file (also for `file:...?mode=ro` URIs); None for other backends."""
        if self.dialect != "sqlite" or not self._engine.url.database:
            return None
        path = self._engine.url.database
        if path.startswith("file:"):
            path = path[len("file:"):].split("?", 1)[0]
        return path

    def _check_files(self, doing: str, writes: bool) -> None:
        """SQLite: refuse before touching the database when its -wal or -shm file (or, for a write, the database
        file) cannot be written: SQLite would fault on its memory map of them and SIGBUS the whole process."""
        path = self._sqlite_path()
        if path is None:
            return
        needed = [path + "-wal", path + "-shm"] + ([path] if writes else [])
        folder = os.path.dirname(os.path.abspath(path))
        if writes and os.path.isdir(folder) and not os.access(folder, os.W_OK):
            needed.append(folder)  # each write creates its rollback journal there
        for name in needed:
            if os.path.exists(name) and not os.access(name, os.W_OK):
                try:
                    read_only_fs = bool(os.statvfs(name).f_flag & os.ST_RDONLY)
                except OSError:
                    read_only_fs = False
                kind = "folder" if os.path.isdir(name) else "file"
                why = "its filesystem is read-only" if read_only_fs else f"the {kind} is read-only or immutable"
                raise FeedbackUnavailable(
                    f"Votes cannot be {doing}: {name} cannot be written ({why}). Votes already saved are kept; "
                    "the operator must make it writable or set PLAYGROUND_DATABASE_URL.")

    def _disk_full(self) -> bool:
        path = self._sqlite_path()
        try:
            return path is not None and shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < 64 * 1024
        except OSError:
            return False

    @contextmanager
    def _guard(self, doing: str, writes: bool | None = None) -> Iterator[None]:
        """Turn "cannot connect / cannot write" database errors into FeedbackUnavailable for the user (`doing`:
        "read", "saved", "stored"; `writes`: whether the files must be writable, by default unless reading)."""
        dbapi_error = getattr(self._engine.dialect.loaded_dbapi, "Error", ())
        try:
            self._check_files(doing, doing != "read" if writes is None else writes)
            yield
        except (FeedbackError, FeedbackUnavailable, sa_exc.IntegrityError):
            raise
        except (sa_exc.DBAPIError, sa_exc.TimeoutError, dbapi_error) as e:  # type: ignore[misc]
            orig = getattr(e, "orig", None) or e
            reason = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
            if "readonly" in reason.replace("-", "").replace(" ", "").lower():
                msg = (f"Votes cannot be {doing}: the vote database is read-only ({self.where}). "
                       "The operator must make it writable or set PLAYGROUND_DATABASE_URL.")
            elif "disk is full" in reason or self._disk_full():
                msg = (f"Votes cannot be {doing}: the disk holding the vote database ({self.where}) is full. "
                       "Votes already saved are kept; the operator must free space.")
            else:
                msg = (f"Votes cannot be {doing} right now: the vote database ({self.where}) is unavailable "
                       f"({reason}). Please try again later.")
            raise FeedbackUnavailable(msg) from e

    def schema_version(self) -> int:
        """The highest applied migration (0 for an empty database)."""
        with self._guard("read"), self._engine.connect() as conn:
            return self._version(conn)

    def _version(self, conn: Connection) -> int:
        if not self._engine.dialect.has_table(conn, SCHEMA.name):
            return 0
        return int(conn.execute(select(func.max(SCHEMA.c.version))).scalar() or 0)

    def migrate(self) -> int:
        """Apply pending migrations in one transaction; idempotent; returns the schema version."""
        with self._guard("stored", writes=False), self._engine.connect() as conn:
            version = self._version(conn)
        if version == SCHEMA_VERSION:  # the usual case: no write lock (a read-only copy still opens)
            return version
        with self._guard("stored"):
            with self._writer.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
                SCHEMA.create(conn, checkfirst=True)
                version = self._version(conn)  # again, under the lock: another process may have migrated
                if version > SCHEMA_VERSION:
                    raise FeedbackUnavailable(f"The vote database ({self.where}) has schema version {version}, "
                                              f"newer than this app's {SCHEMA_VERSION}; upgrade the app.")
                for v in range(version + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[v - 1](conn)
                    conn.execute(insert(SCHEMA).values(version=v, applied_at=datetime.now(UTC)))
                return max(version, SCHEMA_VERSION)

    def _insert_new(self, conn: Connection, row: dict[str, Any]) -> int | None:
        """Insert unless the idempotency key exists; the new id, or None when it existed."""
        dialect_insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(self.dialect)
        if dialect_insert is not None:
            stmt = dialect_insert(VOTES).values(row).on_conflict_do_nothing(index_elements=["idempotency_key"])
            return conn.execute(stmt.returning(VOTES.c.id)).scalar_one_or_none()
        try:  # other backends: a savepoint keeps the transaction usable after the unique violation
            with conn.begin_nested():
                return int(conn.execute(insert(VOTES).values(row)).inserted_primary_key[0])
        except sa_exc.IntegrityError:
            return None

    def record(self, vote: Vote) -> tuple[int, bool]:
        """Store one vote in its own transaction; (row id, True) once committed, (existing id, False) for a
        retry with the same idempotency key and content. FeedbackError for a bad vote or a reused key."""
        validate_vote(vote, self.settings)
        digest = fingerprint(vote)
        row = to_plain(vote)
        row.pop("id", None)
        for name in _JSON_COLUMNS:
            row[name] = json.dumps(row[name], ensure_ascii=False, allow_nan=False)
        row["created_at"] = _utc(vote.created_at) if vote.created_at else datetime.now(UTC)
        row["content_hash"] = digest
        with self._guard("saved"):
            with self._writer.begin() as conn:
                new_id = self._insert_new(conn, row)
                if new_id is None:
                    existing = conn.execute(select(VOTES.c.id, VOTES.c.content_hash)
                                            .where(VOTES.c.idempotency_key == vote.idempotency_key)).one()
            if new_id is not None:
                return int(new_id), True
        if existing.content_hash != digest:
            raise FeedbackError(f"idempotency_key: {vote.idempotency_key!r} was already used for a different "
                                f"vote (row {existing.id}); each new vote needs a new key")
        return int(existing.id), False

    def votes(self, limit: int | None = None, newest_first: bool = False) -> list[StoredVote]:
        """Stored votes in insertion order (or newest first), at most `limit` of them."""
        query = select(VOTES).order_by(VOTES.c.id.desc() if newest_first else VOTES.c.id)
        if limit is not None:
            query = query.limit(int(limit))
        with self._guard("read"), self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_from_row(r) for r in rows]

    def count(self) -> int:
        with self._guard("read"), self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(VOTES)).scalar_one())


def _from_row(r: Any) -> StoredVote:
    data = {k: v for k, v in r.items() if k != "content_hash"}
    for name in _JSON_COLUMNS:
        data[name] = json.loads(data[name])
    data["created_at"] = _utc(data["created_at"])
    return StoredVote(**data)
