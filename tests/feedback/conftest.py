"""Fixtures: a real PostgreSQL server for the session, and `store_url` parametrised over SQLite and PostgreSQL.

The server: Debian's `postgresql` binaries (installed with apt-get when missing and running as root),
`initdb` into a fresh temporary folder, `pg_ctl start` listening on 127.0.0.1 at a free port (socket in
the same folder), trust authentication. PostgreSQL refuses to run as root, so as root the folder is
chowned to the `postgres` OS user and every server command runs through `runuser -u postgres --`.
Each test gets its own database. A test needing PostgreSQL is skipped only when the server cannot be
started, with the exact reason; set PLAYGROUND_REQUIRE_POSTGRES=1 to make that an error instead.
"""
from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_counter = itertools.count()


def _pg_bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(candidates[-1]).parent if candidates else None


def _install_postgres() -> str | None:
    """apt-get install postgresql when missing; None on success, else why not."""
    if _pg_bin_dir() is not None:
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "PostgreSQL is not installed (no pg_ctl) and apt-get cannot install it here (not root or no apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            return f"`{' '.join(cmd)}` failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-500:]}"
    return None if _pg_bin_dir() is not None else "apt-get installed postgresql but pg_ctl was not found"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bin_dir: Path, root: Path, port: int, as_user: list[str]) -> None:
        self.bin_dir, self.root, self.port, self.as_user = bin_dir, root, port, as_user
        self.data, self.log = root / "data", root / "server.log"

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, str(self.bin_dir / tool), *args], capture_output=True, text=True,
                              timeout=120, cwd=self.root)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={database}",
                             autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        name = f"votes_{os.getpid()}_{next(_counter)}"
        self.admin(f"CREATE DATABASE {name}")
        return name


def _start_postgres() -> tuple[PostgresServer | None, str]:
    """A started server, or (None, the exact reason it could not start)."""
    reason = _install_postgres()
    if reason:
        return None, reason
    bin_dir = _pg_bin_dir()
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="playground-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: run as the postgres OS user
        if not shutil.which("runuser"):
            return None, "running as root and `runuser` is missing, so postgres cannot run as another user"
        try:
            shutil.chown(root, user="postgres", group=None)
        except (LookupError, OSError) as e:
            return None, f"cannot give {root} to the `postgres` OS user: {e}"
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(bin_dir, root, _free_port(), as_user)
    r = server.run("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    if r.returncode != 0:
        return None, f"initdb failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}"
    # fsync=off: a throwaway server on a shared disk; the crash tests kill the client, never the server, so
    # what they check (a commit acknowledged to the client is in the database) does not depend on it.
    options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {root} -c max_connections=200 -c fsync=off"
    r = server.run("pg_ctl", "-D", str(server.data), "-l", str(server.log), "-w", "-t", "60", "-o", options, "start")
    if r.returncode != 0:
        log = server.log.read_text()[-800:] if server.log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        return None, f"pg_ctl start failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-400:]} {log}"
    return server, ""


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer | str]:
    """The running server, or the reason it could not be started (tests then skip with it)."""
    server, reason = _start_postgres()
    if server is None:
        if os.environ.get("PLAYGROUND_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but could not be started: {reason}")
        yield reason
        return
    try:
        yield server
    finally:
        server.run("pg_ctl", "-D", str(server.data), "-m", "immediate", "-w", "stop")  # no shutdown checkpoint
        shutil.rmtree(server.root, ignore_errors=True)


def _server(pg_server: PostgresServer | str) -> PostgresServer:
    if isinstance(pg_server, str):
        pytest.skip(f"PostgreSQL could not be started: {pg_server}")
    return pg_server


@pytest.fixture
def pg(pg_server: PostgresServer | str) -> PostgresServer:
    """The running PostgreSQL server (skips with the reason when it could not start)."""
    return _server(pg_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: an SQLite file in tmp_path, or a fresh database on the test server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'votes.sqlite3'}"
    server = _server(request.getfixturevalue("pg_server"))
    return server.url(server.create_database())


# The app-process reliability tests on PostgreSQL repeat their SQLite twins (≈ 55 s together): opt-in; the
# store's own PostgreSQL tests (tests/feedback/test_store.py, test_crash_safety.py) still run by default.
SLOW_ON_POSTGRESQL = ("test_reliability.py::test_no_acknowledged_vote_is_lost_when_the_server_is_killed",
                      "test_reliability.py::test_concurrent_voters_store_exactly_every_vote")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "[postgresql" in item.nodeid and any(name in item.nodeid for name in SLOW_ON_POSTGRESQL):
            item.add_marker(pytest.mark.slow)
            if not config.getoption("--runslow"):
                item.add_marker(pytest.mark.skip(reason="slow: opt in with --runslow"))
