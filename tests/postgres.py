"""A real PostgreSQL server for the tests, from Debian's packages: initdb and
pg_ctl in a temp dir of its own, run as the package's dedicated `postgres`
user (the server refuses root), listening on loopback and a socket in that
dir only. One server per test session; each test gets a database of its own."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

USER = "postgres"  # created by Debian's postgresql-common
ROLE = "brownout"  # the superuser role of the test cluster


def bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts[-3])
    return found[-1].parent if found else None


def available() -> str:
    """Why a server cannot be started here, or ''."""
    if os.geteuid() != 0:
        return "starting PostgreSQL as its own user needs root"
    if bin_dir() is None:
        return "PostgreSQL is not installed (tests/system-deps.sh installs it)"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no {USER!r} user (Debian's postgresql-common creates it)"
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        bindir = bin_dir()
        assert bindir is not None
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="brownout-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        account = pwd.getpwnam(USER)
        os.chown(self.dir, account.pw_uid, account.pw_gid)
        self._as_user = ["runuser", "-u", USER, "--"]

    def _run(self, *argv: str) -> None:
        done = subprocess.run(
            [*self._as_user, *argv], capture_output=True, text=True, timeout=120, cwd=self.dir
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self) -> PostgresServer:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", ROLE, "--auth=trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; its DSN."""
        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            pid = self._postmaster()
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # the server's children follow their postmaster
        shutil.rmtree(self.dir, ignore_errors=True)

    def _postmaster(self) -> int:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0


@contextlib.contextmanager
def server() -> Iterator[PostgresServer]:
    pg = PostgresServer()
    try:
        yield pg.start()
    finally:
        pg.stop()
