"""Real servers for tests and benchmarks: a throw-away PostgreSQL cluster and an `mlflow server` on it.

Why real ones: the README's "Scale out" recipe (many launchers -> one `mlflow server` -> PostgreSQL) is the one
configuration meant for many writers; SQLite stand-ins would hide exactly what it is for. Both servers bind
127.0.0.1 on a free port picked at run time, live in their own temporary folder and are stopped on exit.

PostgreSQL refuses to run as root (`initdb: cannot be run as root`), and CI runs as root: the cluster then runs
as an unprivileged user (`postgres`, which Debian's package creates, else `nobody`) through `runuser`, in a
folder that user owns outside pytest's tmp tree (that tree is mode 0700 for root).
Credentials follow the README: the URI names no password; libpq reads it from the file `$PGPASSFILE` (0600).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_ROOT = Path("/usr/lib/postgresql")
DRIVER = "postgresql+psycopg"  # psycopg 3: SQLAlchemy 2.1's own default for postgresql://, named explicitly


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> Path | None:
    """The server binaries' folder: Debian's /usr/lib/postgresql/<major>/bin (15 preferred), or None."""
    override = os.environ.get("NNLAB_PG_BIN")
    if override:
        return Path(override) if (Path(override) / "initdb").exists() else None
    found = sorted((p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists() and (p / "pg_ctl").exists()),
                   key=lambda p: (p.parent.name != "15", -int(p.parent.name) if p.parent.name.isdigit() else 0))
    return found[0] if found else None


def missing_reason() -> str | None:
    """Why a PostgreSQL test cannot run here (one line), or None."""
    if pg_bin() is None:
        return f"PostgreSQL server binaries not found ({PG_ROOT}/*/bin/initdb): apt-get install postgresql"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without `runuser`: PostgreSQL cannot be started as an unprivileged user"
    return None


def _service_user() -> str | None:
    """The unprivileged user the cluster runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither user 'postgres' nor 'nobody' exists")


@dataclass
class PgCluster:
    """A running cluster: `admin` (superuser) and `mlflow` roles, passwords only in `passfile` (libpq format)."""

    port: int
    folder: Path
    passfile: Path
    host: str = "127.0.0.1"
    bindir: Path = field(default_factory=lambda: pg_bin() or PG_ROOT)
    user: str | None = None

    def uri(self, db: str, role: str = "mlflow") -> str:
        return f"{DRIVER}://{role}@{self.host}:{self.port}/{db}"

    def env(self) -> dict[str, str]:
        """What a client process needs to log in (the password file), to merge into its environment."""
        return {"PGPASSFILE": str(self.passfile)}

    def sql(self, statements: str | list[str], db: str = "postgres", role: str = "admin",
            autocommit: bool = True) -> list[tuple]:
        """Run statements; return the last one's rows. Uses psycopg, the same driver the MLflow server uses."""
        import psycopg

        stmts = [statements] if isinstance(statements, str) else statements
        with psycopg.connect(host=self.host, port=self.port, dbname=db, user=role, passfile=str(self.passfile),
                             autocommit=autocommit) as con:
            rows: list[tuple] = []
            for s in stmts:
                cur = con.execute(s)  # type: ignore[arg-type]
                rows = cur.fetchall() if cur.description else []
            return rows

    def create_database(self, name: str, owner: str = "mlflow") -> str:
        """A fresh, empty database owned by `owner` (what the README's `createdb -O mlflow mlflow` does)."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"database name {name!r} is not a plain identifier")
        self.sql([f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name} OWNER {owner}"])
        return self.uri(name)


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return cmd if user is None else ["runuser", "-u", user, "--", *cmd]


@contextlib.contextmanager
def postgres_cluster(log_to: Path | None = None) -> Iterator[PgCluster]:
    """initdb + pg_ctl start a private cluster on 127.0.0.1 (TCP only, password auth); stop and delete it after."""
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError(missing_reason() or "no PostgreSQL")
    user = _service_user()
    folder = Path(tempfile.mkdtemp(prefix="nnlab-pg-"))
    data = folder / "data"
    passwords = {"admin": secrets.token_hex(16), "mlflow": secrets.token_hex(16)}
    pwfile = folder / "admin.pw"
    pwfile.write_text(passwords["admin"] + "\n")
    if user is not None:
        info = pwd.getpwnam(user)
        os.chown(folder, info.pw_uid, info.pw_gid)
        os.chown(pwfile, info.pw_uid, info.pw_gid)
    port = free_port()
    passfile = folder / "pgpass"  # read by libpq in *our* processes (root): 0600, never in the repository
    passfile.write_text("".join(f"127.0.0.1:{port}:*:{role}:{pw}\n" for role, pw in passwords.items()))
    passfile.chmod(0o600)
    if user is not None:  # the cluster's user must not read it; keep it root's
        os.chown(passfile, 0, 0)
    log = folder / "server.log"

    def run(cmd: list[str], timeout: float = 120) -> None:
        proc = subprocess.run(_as_user(cmd, user), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "LC_ALL": "C"})
        if proc.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}{tail}")

    started = False
    try:
        # --no-sync: the cluster is thrown away (it only skips initdb's final fsync, not the server's own).
        run([str(bindir / "initdb"), "-D", str(data), "-U", "admin", f"--pwfile={pwfile}", "--auth=scram-sha-256",
             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
        pwfile.unlink()
        opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories=''"
        run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", opts, "start"])
        started = True
        cluster = PgCluster(port=port, folder=folder, passfile=passfile, bindir=bindir, user=user)
        cluster.sql(f"CREATE ROLE mlflow LOGIN PASSWORD '{passwords['mlflow']}'")
        yield cluster
    finally:
        if started:
            with contextlib.suppress(Exception):
                run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"], timeout=60)
        if log_to is not None and log.exists():
            with contextlib.suppress(OSError):
                shutil.copy(log, log_to)
        shutil.rmtree(folder, ignore_errors=True)


def readme_server_command() -> tuple[dict[str, str], list[str]]:
    """The README's "Scale out" `mlflow server ...` command: (environment assignments before it, argv)."""
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            env = {}
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                k, v = words.pop(0).split("=", 1)
                env[k] = v
            if words[:2] == ["mlflow", "server"] and any("postgresql" in w for w in words):
                return env, words
    raise AssertionError("README.md has no `mlflow server ... postgresql...` command in a bash block")


def server_command(backend_uri: str, artifacts: Path, port: int) -> tuple[dict[str, str], list[str]]:
    """The README's command with this machine's values: the database URI, the artifact folder, a free port.

    Everything else (environment, host 127.0.0.1, workers, security options) is taken as the README writes it.
    """
    env, argv = readme_server_command()
    values = {"--backend-store-uri": backend_uri, "--artifacts-destination": str(artifacts), "--port": str(port)}
    out = [str(Path(sys.executable).parent / "mlflow")]
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in values and i + 1 < len(argv):
            out += [a, values[a]]
            i += 2
            continue
        out.append(a)
        i += 1
    missing = [k for k in values if k not in out]
    if missing:
        raise AssertionError(f"the README's mlflow server command lacks {missing}")
    return env, out


@dataclass
class MlflowServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def mlflow_server(cmd: list[str], cwd: Path, env: dict[str, str], log: Path,
                  ready_timeout: float = 180) -> Iterator[MlflowServer]:
    """Start `cmd` (an `mlflow server` argv with `--port`), wait for `/health`, SIGTERM its process group after.

    The server runs migrations on an empty database before answering (tens of seconds on PostgreSQL).
    """
    port = cmd[cmd.index("--port") + 1]
    url = f"http://127.0.0.1:{port}"
    fh = open(log, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer /health in {ready_timeout:.0f} s:\n"
                                   f"{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield MlflowServer(url, proc, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the server is a group of processes (uvicorn workers)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        fh.close()
