"""Test harness: real Prosody / ejabberd servers, the real component binary, slixmpp clients.

Everything runs on 127.0.0.1, on ports picked at random, in private temporary directories.
The XMPP servers run as their own system users (`prosody`, `ejabberd`) through `runuser`, each in
its own process group so that stopping one stops all of its processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import AsyncIterator, Iterable

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout  # noqa: F401  (re-exported for tests)

# testkit/python/quoalise_testkit/harness.py: the checkout this kit belongs to.
REPO = Path(__file__).resolve().parents[3]
BINARY = Path(os.environ.get("QUOALISE_BIN", REPO / "target" / "debug" / "quoalise-component"))

HOST = "localhost"
COMPONENT_DOMAIN = "quoalise.localhost"
PASSWORD = "e2e-password"
ACCOUNTS = ("alice", "bob", "carol", "admin")

ESTABLISHED = "xmpp session established"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class HarnessError(Exception):
    """A server or the component did not do what the harness needed; the message has its log."""


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, and never handed out before in this run."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = _ANSI.sub("", path.read_text(errors="replace"))
    except FileNotFoundError:
        return f"(no log file {path})"
    return "\n".join(text.splitlines()[-lines:])


def render(template: Path, values: dict[str, str]) -> str:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise HarnessError(f"{template}: placeholders left: {sorted(set(leftover))}")
    return text


def chown_tree(path: Path, user: str) -> None:
    shutil.chown(path, user, user)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), user, user)


def stop_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the process group of `proc`, wait until every process in it is gone, else SIGKILL."""
    if proc is None:
        return
    pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                proc.wait()
                return
            time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1)


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --------------------------------------------------------------------------------------------
# XMPP servers


class XmppServer:
    """One private XMPP server instance (Prosody or ejabberd) on loopback."""

    kind = "?"
    user = "?"

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.component_secret = secrets.token_hex(16)
        self.host = HOST
        self.component_domain = COMPONENT_DOMAIN
        self.proc: subprocess.Popen | None = None

    # subclasses: configure(), _command(), log_path, create_account(), _ready()
    def __repr__(self) -> str:
        return f"<{self.kind} c2s={self.c2s_port} component={self.component_port} dir={self.dir}>"

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        out = open(self.dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(
                    f"{self.kind} exited with status {self.proc.returncode} while starting\n"
                    f"--- {self.log_path}\n{tail(self.log_path)}\n"
                    f"--- stdout\n{tail(self.dir / 'stdout.log')}"
                )
            if self._ready():
                return
            time.sleep(0.1)
        self.stop()
        raise HarnessError(
            f"{self.kind} did not start within {timeout:.0f} s\n"
            f"--- {self.log_path}\n{tail(self.log_path)}\n"
            f"--- stdout\n{tail(self.dir / 'stdout.log')}"
        )

    def _ready(self) -> bool:
        return port_open(self.c2s_port) and port_open(self.component_port)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _run_as(self, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
        cmd = ["runuser", "-u", self.user, "--", "env", f"HOME={self.dir}", *args]
        result = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, cwd=self.dir
        )
        if result.returncode != 0:
            raise HarnessError(
                f"{' '.join(args)} failed with status {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}\n--- {self.log_path}\n{tail(self.log_path)}"
            )
        return result


class Prosody(XmppServer):
    kind = "prosody"
    user = "prosody"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.config = self.dir / "prosody.cfg.lua"
        (self.dir / "data").mkdir(exist_ok=True)
        (self.dir / "certs").mkdir(exist_ok=True)
        self.config.write_text(
            render(
                REPO / "prosody" / "test.cfg.lua.in",
                {
                    "DIR": self.dir,
                    "C2S_PORT": self.c2s_port,
                    "COMPONENT_PORT": self.component_port,
                    "COMPONENT_DOMAIN": self.component_domain,
                    "COMPONENT_SECRET": self.component_secret,
                },
            )
        )
        chown_tree(self.dir, self.user)

    @property
    def log_path(self) -> Path:
        return self.dir / "prosody.log"

    def _command(self) -> list[str]:
        return [
            "runuser", "-u", self.user, "--",
            "env", f"HOME={self.dir}",
            "prosody", "--config", str(self.config), "-F",
        ]

    def create_account(self, user: str, password: str) -> None:
        # prosodyctl writes the account files directly; works whether or not the server runs.
        self._run_as(["prosodyctl", "--config", str(self.config), "register", user, self.host, password])


class Ejabberd(XmppServer):
    kind = "ejabberd"
    user = "ejabberd"

    def __init__(
        self,
        workdir: Path,
        *,
        node: str | None = None,
        cookie: str | None = None,
        component_secret: str | None = None,
        epmd_port: int | None = None,
        extra_config: str = "",
    ):
        """A lone node by default: a random node name and cookie, a fixed distribution port and
        no epmd. The keywords are for the nodes of a cluster (cluster.py): a chosen `node` name,
        the cluster's `cookie` and `component_secret`, the cluster's private epmd on
        `epmd_port` (then the node has no fixed distribution port), and `extra_config`,
        top-level ejabberd.yml options appended to the template."""
        super().__init__(workdir)
        if component_secret is not None:
            self.component_secret = component_secret
        self.epmd_port = epmd_port
        self.dist_port = free_port() if epmd_port is None else None
        self.node = node or f"quoalise-e2e-{secrets.token_hex(4)}@localhost"
        values = {
            "DIR": self.dir,
            "C2S_PORT": self.c2s_port,
            "COMPONENT_PORT": self.component_port,
            "COMPONENT_DOMAIN": self.component_domain,
            "COMPONENT_SECRET": self.component_secret,
            "NODE": self.node,
            "COOKIE": cookie or secrets.token_hex(16),
            "EXTRA_CONFIG": extra_config,
        }
        if epmd_port is None:
            ctl_template = REPO / "ejabberd" / "ejabberdctl.cfg.in"
            values["DIST_PORT"] = self.dist_port
        else:
            ctl_template = REPO / "ejabberd" / "ejabberdctl.cluster.cfg.in"
            values["EPMD_PORT"] = epmd_port
        for sub in ("spool", "logs"):
            (self.dir / sub).mkdir(exist_ok=True)
        (self.dir / "ejabberd.yml").write_text(render(REPO / "ejabberd" / "test.yml.in", values))
        (self.dir / "ejabberdctl.cfg").write_text(render(ctl_template, values))
        shutil.copy(REPO / "ejabberd" / "inetrc", self.dir / "inetrc")
        chown_tree(self.dir, self.user)

    @property
    def log_path(self) -> Path:
        return self.dir / "logs" / "ejabberd.log"

    def _ctl(self, *args: str) -> list[str]:
        return ["ejabberdctl", "--config-dir", str(self.dir), *args]

    def _command(self) -> list[str]:
        return ["runuser", "-u", self.user, "--", "env", f"HOME={self.dir}", *self._ctl("foreground")]

    def start(self, timeout: float = 60.0) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().start(timeout)

    def _ready(self) -> bool:
        # The listeners open once the node has started all its modules.
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                started = b"is started in the node" in f.read()
        except FileNotFoundError:
            return False
        return started and super()._ready()

    def create_account(self, user: str, password: str) -> None:
        self._run_as(self._ctl("register", user, self.host, password))

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run `ejabberdctl ARGS` against this node (as the `ejabberd` user); its output.
        A non-zero status raises HarnessError with the output and the node's log."""
        return self._run_as(self._ctl(*args), timeout=timeout).stdout

    def started_count(self) -> int:
        """How many times the log says the node started (a node that joins a cluster restarts
        its ejabberd application, and says it again)."""
        try:
            return self.log_path.read_bytes().count(b"is started in the node")
        except FileNotFoundError:
            return 0


SERVER_KINDS = {"prosody": Prosody, "ejabberd": Ejabberd}


def start_server(
    kind: str, workdir: Path, accounts: Iterable[str] = ACCOUNTS, *, quiet: bool = False
) -> XmppServer:
    """A started server with `accounts`. With `quiet`, Prosody logs at info instead of the
    template's debug (every stanza, twice), for tests and benchmarks that send thousands of
    stanzas: otherwise the logging is what they measure (ejabberd's template logs at info)."""
    server = SERVER_KINDS[kind](workdir)
    if kind == "prosody":
        if quiet:
            text = server.config.read_text()
            if '\tdebug = "' not in text:
                raise HarnessError(f"{server.config}: no debug log line to turn into info")
            server.config.write_text(text.replace('\tdebug = "', '\tinfo = "'))
        for user in accounts:
            server.create_account(user, PASSWORD)
        server.start()
    else:
        server.start()
        for user in accounts:
            server.create_account(user, PASSWORD)
    return server


# --------------------------------------------------------------------------------------------
# PostgreSQL (the same approach as testkit/src/pg.rs)

PG_ROOT = Path("/usr/lib/postgresql")
PG_BINDIR_ENV = "PG_BINDIR"


def pg_bin_dir() -> Path:
    """`$PG_BINDIR`, else the newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl."""
    env = os.environ.get(PG_BINDIR_ENV)
    if env:
        path = Path(env)
        if not ((path / "initdb").is_file() and (path / "pg_ctl").is_file()):
            raise HarnessError(f"{PG_BINDIR_ENV}={env} holds no initdb and pg_ctl")
        return path
    found = []
    for entry in PG_ROOT.iterdir() if PG_ROOT.is_dir() else []:
        bin_dir = entry / "bin"
        if entry.name.isdigit() and (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            found.append((int(entry.name), bin_dir))
    if not found:
        raise HarnessError(
            f"PostgreSQL server binaries not found in {PG_ROOT}/<version>/bin: install the server "
            f"package (apt-get install postgresql) or set {PG_BINDIR_ENV}"
        )
    return max(found)[1]


class PgCluster:
    """A throwaway PostgreSQL cluster: initdb in a temporary directory, started on a free loopback
    port with its socket in that directory, trust authentication, stopped and removed by stop().

    PostgreSQL refuses to run as root: when we are root, every server command goes through
    `runuser -u postgres` and the directory is handed to that user.
    """

    START_ATTEMPTS = 3

    def __init__(self):
        self.bin = pg_bin_dir()
        self.as_postgres = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="quoalise-e2e-pg-"))
        self.dir.chmod(0o700)
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self.port = 0
        self.started = False

    def _cmd(self, program: str, *args: str) -> list[str]:
        path = str(self.bin / program)
        return ["runuser", "-u", "postgres", "--", path, *args] if self.as_postgres else [path, *args]

    def _run(self, program: str, *args: str, check: bool = True, timeout: float = 60.0):
        result = subprocess.run(
            self._cmd(program, *args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.dir,  # the postgres user may not be allowed into ours
        )
        if check and result.returncode != 0:
            raise HarnessError(
                f"{program} {' '.join(args)} failed with status {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}\n--- {self.log_path}\n{tail(self.log_path)}"
            )
        return result

    def start(self) -> "PgCluster":
        self._run(
            "initdb", "--auth=trust", "--username=postgres", "--encoding=UTF8",
            "--locale=C.UTF-8", "--no-sync", "-D", str(self.data),
        )
        for attempt in range(1, self.START_ATTEMPTS + 1):
            port = free_port()
            options = (
                f"-p {port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            result = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "start",
                check=attempt == self.START_ATTEMPTS,
            )
            if result.returncode == 0:
                self.port = port
                self.options = options
                self.started = True
                return self
        raise AssertionError("unreachable")

    def create_database(self, name: str) -> str:
        """Creates database `name` and returns its URL (superuser postgres, trust)."""
        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise HarnessError(f"database name {name!r} is not a plain identifier")
        self._run("createdb", "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def url(self, db: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def stop_server(self) -> None:
        """Stops the server (fast shutdown: clients are disconnected), keeping the cluster."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def start_server(self) -> None:
        """Starts the stopped server again on the same port."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", self.options, "-w", "start"
        )

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# A gate in front of a server port


class GatedProxy:
    """A TCP forwarder from a free loopback port to `target_port`, in threads (it keeps working
    while a test blocks its event loop). While `open` is false, new connections are accepted and
    closed at once, as if the server were still down; established ones are left alone. Tests use
    it to decide when the component may reconnect after a server restart."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.open = True
        self.refused = 0
        self.accepted = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        _HANDED_OUT.add(self.port)
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="gated-proxy", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if not self.open:
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            self.accepted += 1
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # Either side ending ends the pair; each pump closes the socket it reads.
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            src.close()

    def cut(self) -> None:
        """Closes the gate and ends every established connection, as a network cut would: the
        client (the component) loses its link at once, while the server and its other clients
        keep running, and cannot reconnect until `open` is set again."""
        self.open = False
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=2)


# --------------------------------------------------------------------------------------------
# The component


def component_config(
    server: XmppServer,
    workdir: Path,
    *,
    secret: str | None = None,
    extra_xmpp: str = "",
    store_url: str | None = None,
    meters: int = 3,
    history_days: int = 3,
    live_interval: str = "1s",
    reconnect_max_delay: str = "2s",
    xmpp_port: int | None = None,
    log_level: str = "info",
    web_port: int | None = None,
    sources: str | None = None,
    alice_sees_all: bool = True,
    ping_interval: str = "20s",
    extra_web: str = "",
) -> str:
    """The component's TOML: the demo source backfills `history_days` days at start (3 is enough
    for two full past days; more only slows the start) and publishes a live reading of each meter
    every `live_interval`. `store_url` defaults to a SQLite file in `workdir`; `xmpp_port` (e.g. a
    `GatedProxy`) defaults to the server's component port. `sources` (TOML `[[source]]` tables)
    replaces the demo source; without `alice_sees_all`, alice gets no grant on every usage point;
    `web_port` defaults to a free port."""
    web_port = web_port or free_port()
    if store_url is None:
        store_url = f"sqlite://{workdir / 'quoalise.db'}"
    alice_grant = f"""\
[[access.grant]]
jid = "alice@{server.host}"
usage_points = ["*"]
purpose = "end-to-end tests"
"""
    demo_source = f"""\
[[source]]
type = "demo"
id = "demo"
meters = {meters}
live_interval = "{live_interval}"
history_days = {history_days}
title = "Demo meters"
description = "Simulated Linky-like electricity meters"
"""
    return f"""\
# Written by testkit/python/quoalise_testkit/harness.py
[xmpp]
domain = "{server.component_domain}"
server = "127.0.0.1:{xmpp_port or server.component_port}"
secret = "{secret if secret is not None else server.component_secret}"
ping_interval = "{ping_interval}"
reconnect_max_delay = "{reconnect_max_delay}"
{extra_xmpp}
[store]
url = "{store_url}"

[web]
bind = "127.0.0.1:{web_port}"
public_url = "http://127.0.0.1:{web_port}"
{extra_web}

[access]
admins = ["admin@{server.host}"]

{alice_grant if alice_sees_all else ""}
{sources if sources is not None else demo_source}

[log]
level = "{log_level}"
"""


class Component:
    """One running quoalise-component process, its config and its log."""

    def __init__(self, workdir: Path, config_text: str, nofile: int | None = None):
        self.dir = workdir
        # Open-files limit (soft and hard) of the process, to reproduce a small default.
        self.nofile = nofile
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "component.toml"
        self.config.write_text(config_text)
        self.log_path = self.dir / "component.log"
        self.proc: subprocess.Popen | None = None
        self.started_at: float = 0.0  # time.time() of the last start()

    def start(self) -> None:
        if not BINARY.exists():
            raise HarnessError(f"{BINARY} does not exist: run `cargo build` first")
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)
        env.pop("QUOALISE_XMPP_SECRET", None)
        log = open(self.log_path, "ab")
        self.started_at = time.time()
        nofile = self.nofile

        def limit_files():
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [str(BINARY), "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            env=env,
            start_new_session=True,
            preexec_fn=limit_files,
        )
        log.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout=15.0)
            self.proc = None

    def kill9(self) -> None:
        """SIGKILL the component's process group, no graceful shutdown (a crash, a power cut),
        and reap it. `start()` runs it again on the same config, workdir and store; its log
        goes on in the same file."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def count(self, text: str) -> int:
        return sum(1 for line in self.log().splitlines() if text in line)

    def wait_for_count(self, text: str, count: int, timeout: float) -> None:
        """Wait until `text` appears on at least `count` log lines; fail with the log otherwise."""

        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(
                    f"component exited with status {self.proc.returncode} "
                    f"while waiting for {text!r}\n--- {self.log_path}\n{self.tail()}"
                )
            return self.count(text) >= count

        if not wait_until(seen, timeout):
            raise HarnessError(
                f"component log did not show {text!r} {count} time(s) within {timeout:.0f} s\n"
                f"--- {self.log_path}\n{self.tail()}"
            )

    def wait_established(self, count: int = 1, timeout: float = 30.0) -> None:
        self.wait_for_count(ESTABLISHED, count, timeout)


def start_component(
    server: XmppServer, workdir: Path, *, wait: bool = True, nofile: int | None = None, **kwargs
) -> Component:
    component = Component(workdir, component_config(server, workdir, **kwargs), nofile=nofile)
    component.start()
    if wait:
        try:
            component.wait_established()
        except HarnessError:
            component.stop()
            raise
    return component


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    if not BINARY.exists():
        raise HarnessError(f"{BINARY} does not exist: run `cargo build` first")
    env = dict(os.environ, NO_COLOR="1")
    env.pop("QUOALISE_XMPP_SECRET", None)
    return subprocess.run(
        [str(BINARY), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


# --------------------------------------------------------------------------------------------
# slixmpp clients

PLUGINS = (
    "xep_0004", "xep_0030", "xep_0012", "xep_0050", "xep_0059", "xep_0060", "xep_0092", "xep_0128",
    "xep_0199",
)


def make_client(jid: str, password: str = PASSWORD) -> slixmpp.ClientXMPP:
    """A slixmpp client for plain TCP on loopback (no TLS: the test servers have no certificate)."""
    client = slixmpp.ClientXMPP(
        jid,
        password,
        plugin_config={
            "feature_mechanisms": {"unencrypted_plain": True, "unencrypted_scram": True},
        },
    )
    client.enable_starttls = False
    client.enable_direct_tls = False
    client.enable_plaintext = True
    client.use_aiodns = False
    for plugin in PLUGINS:
        client.register_plugin(plugin)
    return client


@contextlib.asynccontextmanager
async def connected(
    server: XmppServer,
    user: str,
    timeout: float = 15.0,
    *,
    resource: str | None = None,
    presence: bool = False,
) -> AsyncIterator[slixmpp.ClientXMPP]:
    """A logged-in slixmpp client as `user@localhost` (with `resource` if given, else one the
    server picks), disconnected on exit. With `presence`, it sends its initial presence: servers
    deliver messages addressed to the bare JID (PubSub notifications, pushes) only to available
    resources."""
    client = make_client(f"{user}@{server.host}" + (f"/{resource}" if resource else ""))
    loop = asyncio.get_running_loop()
    ready: asyncio.Future = loop.create_future()

    def on_session(_event):
        if not ready.done():
            ready.set_result(True)

    def on_failure(event):
        if not ready.done():
            ready.set_exception(HarnessError(f"{user}@{server.host}: {event}"))

    client.add_event_handler("session_start", on_session)
    client.add_event_handler("failed_auth", lambda e: on_failure("authentication failed"))
    client.add_event_handler("connection_failed", lambda e: on_failure(f"connection failed: {e}"))
    client.connect("127.0.0.1", server.c2s_port)
    try:
        await asyncio.wait_for(ready, timeout)
    except BaseException as e:
        # Stop slixmpp's own reconnect attempts before giving up on this client.
        client.cancel_connection_attempt()
        client.abort()
        if isinstance(e, asyncio.TimeoutError):
            raise HarnessError(
                f"{user}@{server.host} could not log in to {server.kind} within {timeout:.0f} s\n"
                f"--- {server.log_path}\n{tail(server.log_path)}"
            ) from None
        raise
    if presence:
        client.send_presence()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(wait=1.0), 3.0)
