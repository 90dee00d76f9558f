"""A real two-node ejabberd cluster on loopback, and a raw XEP-0114 component to probe it.

Why: several instances of quoalise-component may serve one component domain through an ejabberd
cluster (one instance per node, one PostgreSQL store). Tests must see what ejabberd really does
with the stanzas for that domain, so this module starts real ejabberd nodes, clusters them with
ejabberd's own `join_cluster`, and offers a minimal component that records what it is given.

- `EjabberdCluster`: nodes `ejabberd-a@localhost` and `ejabberd-b@localhost` (more if asked),
  each an `Ejabberd` of harness.py with its own directory (config, spool, logs) and its own c2s
  and component ports, the same cookie, the same component domain (`COMPONENT_DOMAIN`) and
  secret. The nodes find each other through a private epmd on a random loopback port (the fixed
  node names never meet another cluster or a system ejabberd). The accounts are created once:
  Mnesia is shared.
- `RawComponent`: a component in this process (a thread reads its socket): handshake, records
  every stanza, answers each iq get/set with an empty result.
- `RawComponentProcess`: the same in a child process (`python -m quoalise_testkit.cluster
  component ...`), so that a test can `kill9()` it like a crashed component.

How ejabberd 23.01 routes the stanzas for a domain with several component connections is
summed up in deploy/cluster/README.md and asserted by tests/e2e/test_cluster_harness.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from xml.sax.saxutils import escape, quoteattr

from quoalise_testkit.harness import (
    ACCOUNTS,
    COMPONENT_DOMAIN,
    PASSWORD,
    Ejabberd,
    HarnessError,
    free_port,
    port_open,
    stop_group,
    tail,
    wait_until,
)

STREAM_NS = "http://etherx.jabber.org/streams"
COMPONENT_NS = "jabber:component:accept"

# --------------------------------------------------------------------------------------------
# The cluster


def domain_balancing_yaml(domain: str, balancing: dict[str, str | int]) -> str:
    """The top-level `domain_balancing:` option of ejabberd.yml for one domain, e.g.
    {"type": "source", "component_number": 2}."""
    lines = ["domain_balancing:", f'  "{domain}":']
    lines += [f"    {key}: {value}" for key, value in balancing.items()]
    return "\n".join(lines) + "\n"


def _together(calls: list[Callable[[], object]]) -> None:
    """Run `calls` in threads, wait for all; raise the first error any of them raised."""
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as e:  # noqa: BLE001 (raised below, in the caller's thread)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


class EjabberdCluster:
    """Two (or more) ejabberd 23.01 nodes on loopback, clustered; see the module doc.

    `cluster.nodes[i]` (and `cluster.a`, `cluster.b`) are `Ejabberd` servers: pass one to
    `harness.connected()` for a client on that node, or use its `component_port` for a
    component attached to that node. `domain_balancing` (e.g. {"type": "source",
    "component_number": 2}) sets ejabberd's option of that name for the component domain on
    every node; `extra_config` adds other top-level options. `timings` holds how long each
    step of `start()` took, in seconds."""

    def __init__(
        self,
        workdir: Path,
        *,
        names: Iterable[str] = ("a", "b"),
        domain_balancing: dict[str, str | int] | None = None,
        extra_config: str = "",
    ):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.epmd_port = free_port()
        self.cookie = secrets.token_hex(16)
        self.component_secret = secrets.token_hex(16)
        self.component_domain = COMPONENT_DOMAIN
        extra = extra_config
        if domain_balancing:
            extra = domain_balancing_yaml(COMPONENT_DOMAIN, domain_balancing) + extra
        self.nodes: list[Ejabberd] = [
            Ejabberd(
                self.dir / f"node-{name}",
                node=f"ejabberd-{name}@localhost",
                cookie=self.cookie,
                component_secret=self.component_secret,
                epmd_port=self.epmd_port,
                extra_config=extra,
            )
            for name in names
        ]
        if len(self.nodes) < 2:
            raise HarnessError("a cluster needs at least two nodes")
        self.epmd: subprocess.Popen | None = None
        self.timings: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<EjabberdCluster epmd={self.epmd_port} {self.nodes}>"

    @property
    def a(self) -> Ejabberd:
        return self.nodes[0]

    @property
    def b(self) -> Ejabberd:
        return self.nodes[1]

    def __enter__(self) -> "EjabberdCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, accounts: Iterable[str] = ACCOUNTS, timeout: float = 60.0) -> None:
        """Start epmd and every node (at once: each starts alone on its own Mnesia), join every
        node but the first to the first while creating `accounts` (password harness.PASSWORD)
        on the first (the join copies them), check `list_cluster` on every node. On failure,
        stops what it started and raises HarnessError. Steps run side by side where they can:
        each ejabberdctl call is a whole Erlang VM start (about 0.6 s)."""
        began = time.monotonic()
        try:
            self._start_epmd()
            _together([lambda node=node: node.start(timeout) for node in self.nodes])
            self.timings["nodes started"] = time.monotonic() - began
            step = time.monotonic()
            _together(
                [lambda node=node: self.join(node, timeout) for node in self.nodes[1:]]
                + [lambda user=user: self.a.create_account(user, PASSWORD) for user in accounts]
            )
            self.timings["joined, accounts created"] = time.monotonic() - step
            step = time.monotonic()
            expected = sorted(node.node for node in self.nodes)
            seen: dict[str, list[str]] = {}
            _together([lambda node=node: seen.update({node.node: self.list_cluster(node)})
                       for node in self.nodes])
            for name, members in seen.items():
                if members != expected:
                    raise HarnessError(f"{name}: list_cluster says {members}, not {expected}")
            self.timings["list_cluster checked"] = time.monotonic() - step
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - began

    def _start_epmd(self) -> None:
        out = open(self.dir / "epmd.log", "ab")
        self.epmd = subprocess.Popen(
            ["runuser", "-u", "ejabberd", "--", "epmd", "-port", str(self.epmd_port),
             "-address", "127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        if not wait_until(lambda: port_open(self.epmd_port) or self.epmd.poll() is not None, 10):
            raise HarnessError(f"epmd did not listen on {self.epmd_port}: {tail(self.dir / 'epmd.log')}")
        if self.epmd.poll() is not None:
            raise HarnessError(f"epmd exited with {self.epmd.returncode}: {tail(self.dir / 'epmd.log')}")

    def join(self, node: Ejabberd, timeout: float = 60.0) -> None:
        """`ejabberdctl join_cluster` of `node` to the first node. The joining node restarts its
        ejabberd application on the shared Mnesia: wait until it says it started again and its
        listeners are open."""
        before = node.started_count()
        node.ctl("join_cluster", self.a.node, timeout=timeout)
        if not wait_until(lambda: node.started_count() > before and node._ready(), timeout):
            raise HarnessError(
                f"{node.node} did not restart after join_cluster within {timeout:.0f} s\n"
                f"--- {node.log_path}\n{tail(node.log_path)}"
            )

    def list_cluster(self, node: Ejabberd | None = None) -> list[str]:
        """The running members of the cluster as `node` (default: the first) sees them."""
        out = (node or self.a).ctl("list_cluster")
        return sorted(line.strip().strip("'") for line in out.splitlines() if line.strip())

    def stop(self) -> None:
        """Stop every node (at once: each takes about 3 s to end its VM), then epmd; afterwards
        `leftovers()` is empty."""
        _together([node.stop for node in self.nodes])
        if self.epmd is not None:
            stop_group(self.epmd)
            self.epmd = None

    def leftovers(self) -> list[str]:
        """Processes still running that belong to this cluster (its beams, their helpers, its
        epmd): `pid command line` of each."""
        marks = [str(node.dir) for node in self.nodes] + [f"-port {self.epmd_port}"]
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(mark in cmdline for mark in marks):
                found.append(f"{entry.name} {cmdline.strip()}")
        return found


# --------------------------------------------------------------------------------------------
# A raw XEP-0114 component


@dataclass(frozen=True)
class Stanza:
    """One stanza a RawComponent received: its name (iq, message, presence), attributes, the
    serialized element and when it arrived (time.monotonic())."""

    name: str
    type: str
    id: str
    from_: str
    to: str
    xml: str
    at: float

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "type": self.type, "id": self.id, "from": self.from_,
                           "to": self.to, "xml": self.xml, "at": self.at})

    @staticmethod
    def from_json(line: str) -> "Stanza":
        d = json.loads(line)
        return Stanza(d["name"], d["type"], d["id"], d["from"], d["to"], d["xml"], d["at"])


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class Received:
    """Waiting for what a raw component received; the class provides `name` and
    `stanzas(name)` (every stanza of that name received so far, `None`: all)."""

    name: str

    def stanzas(self, name: str | None = None) -> list[Stanza]:
        raise NotImplementedError

    def wait_for(self, count: int, timeout: float = 10.0, name: str | None = "iq") -> list[Stanza]:
        """At least `count` stanzas (of `name`) received; HarnessError otherwise."""
        if not wait_until(lambda: len(self.stanzas(name)) >= count, timeout, 0.02):
            raise HarnessError(f"{self.name}: {len(self.stanzas(name))} {name} stanza(s), not {count}")
        return self.stanzas(name)

    def wait_for_id(self, stanza_id: str, timeout: float = 10.0) -> Stanza:
        """The stanza with this id, once received; HarnessError otherwise."""

        def found() -> list[Stanza]:
            return [s for s in self.stanzas(None) if s.id == stanza_id]

        if not wait_until(lambda: bool(found()), timeout, 0.02):
            raise HarnessError(f"{self.name}: no stanza with id {stanza_id!r} within {timeout:.0f} s")
        return found()[0]


class RawComponent(Received):
    """A minimal XEP-0114 component on a raw socket: `connect()` does the handshake (it raises
    HarnessError with the server's stream error if refused); then a thread records every stanza
    in `received` and, with `answer_iqs`, answers each iq get/set with an empty result (from
    the domain, so the sender cannot tell components apart). `close()` ends the stream
    politely; `abort()` resets the connection (RST), as a crashed host would."""

    def __init__(
        self,
        port: int,
        secret: str,
        *,
        domain: str = COMPONENT_DOMAIN,
        name: str = "",
        answer_iqs: bool = True,
        on_stanza: Callable[[Stanza], None] | None = None,
    ):
        self.port = port
        self.secret = secret
        self.domain = domain
        self.name = name or f"component@{port}"
        self.answer_iqs = answer_iqs
        self.on_stanza = on_stanza
        self.received: list[Stanza] = []
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.closed = threading.Event()
        self.stream_error: str | None = None
        self.aborted = False
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<RawComponent {self.name} port={self.port} received={len(self.received)}>"

    def connect(self, timeout: float = 10.0) -> "RawComponent":
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        self.sock = sock
        sock.sendall(
            f"<?xml version='1.0'?><stream:stream xmlns='{COMPONENT_NS}' "
            f"xmlns:stream='{STREAM_NS}' to={quoteattr(self.domain)}>".encode()
        )
        parser = ET.XMLPullParser(events=("start", "end"))
        deadline = time.monotonic() + timeout
        stream_id = None
        depth = 0
        handshake_sent = False
        while True:
            if time.monotonic() > deadline:
                sock.close()
                raise HarnessError(f"{self.name}: no handshake answer within {timeout:.0f} s")
            data = sock.recv(65536)
            if not data:
                sock.close()
                raise HarnessError(f"{self.name}: server closed the stream: {self.stream_error}")
            parser.feed(data)
            for event, elem in parser.read_events():
                if event == "start":
                    depth += 1
                    if depth == 1:
                        stream_id = elem.get("id")
                    continue
                depth -= 1
                if depth != 1:
                    continue
                if _local(elem.tag) == "handshake":
                    sock.settimeout(None)
                    self._parser, self._depth = parser, depth
                    self._thread = threading.Thread(target=self._read_loop, daemon=True)
                    self._thread.start()
                    return self
                if _local(elem.tag) == "error":
                    self.stream_error = " ".join(_local(c.tag) for c in elem)
                    sock.close()
                    raise HarnessError(f"{self.name}: handshake refused: {self.stream_error}")
            if stream_id is not None and not handshake_sent:
                digest = hashlib.sha1((stream_id + self.secret).encode()).hexdigest()
                sock.sendall(f"<handshake>{digest}</handshake>".encode())
                handshake_sent = True

    def _read_loop(self) -> None:
        parser, depth = self._parser, self._depth
        try:
            while True:
                # Events first: the chunk that held the handshake may hold stanzas too.
                for event, elem in parser.read_events():
                    if event == "start":
                        depth += 1
                        continue
                    depth -= 1
                    if depth == 1:
                        self._handle(elem)
                data = self.sock.recv(65536)
                if not data:
                    break
                parser.feed(data)
        except (OSError, ET.ParseError):
            pass
        finally:
            self.closed.set()

    def _handle(self, elem: ET.Element) -> None:
        if self.aborted:
            return
        name = _local(elem.tag)
        if name == "error":
            self.stream_error = " ".join(_local(c.tag) for c in elem)
            return
        stanza = Stanza(
            name=name,
            type=elem.get("type", ""),
            id=elem.get("id", ""),
            from_=elem.get("from", ""),
            to=elem.get("to", ""),
            xml=ET.tostring(elem, encoding="unicode"),
            at=time.monotonic(),
        )
        with self.lock:
            self.received.append(stanza)
        if self.on_stanza is not None:
            self.on_stanza(stanza)
        if self.answer_iqs and name == "iq" and stanza.type in ("get", "set"):
            self.send(
                f"<iq type='result' id={quoteattr(stanza.id)} from={quoteattr(stanza.to)} "
                f"to={quoteattr(stanza.from_)}/>"
            )

    def send(self, xml: str) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(xml.encode())

    def send_message(self, to: str, body: str, frm: str | None = None) -> None:
        self.send(
            f"<message from={quoteattr(frm or self.domain)} to={quoteattr(to)}>"
            f"<body>{escape(body)}</body></message>"
        )

    def stanzas(self, name: str | None = None) -> list[Stanza]:
        with self.lock:
            return [s for s in self.received if name is None or s.name == name]

    def close(self) -> None:
        if self.sock is None:
            return
        with contextlib.suppress(OSError):
            self.sock.sendall(b"</stream:stream>")
            self.closed.wait(5)
        with contextlib.suppress(OSError):
            self.sock.close()

    def abort(self) -> None:
        """Drop the connection at once, without `</stream:stream>` (SO_LINGER 0: a reset), as a
        crashed host would; nothing more is recorded. The shutdown is what ends the reading
        thread's recv(): a bare close() from another thread would leave the connection open
        underneath it."""
        if self.sock is None:
            return
        self.aborted = True
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed.wait(5)


class RawComponentProcess(Received):
    """A RawComponent in a child process, which writes one JSON line per stanza it receives to
    `record`: a test can `kill9()` it. The first line is {"connected": true} after the
    handshake; a refused handshake ends the process with status 2 and {"error": ...}."""

    def __init__(self, workdir: Path, port: int, secret: str, *, name: str, answer_iqs: bool = True):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.record = self.dir / f"{name}.jsonl"
        self.port = port
        self.secret = secret
        self.answer_iqs = answer_iqs
        self.proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"<RawComponentProcess {self.name} port={self.port}>"

    def start(self, timeout: float = 10.0) -> "RawComponentProcess":
        self.record.write_text("")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        args = [sys.executable, "-m", "quoalise_testkit.cluster", "component", "--port", str(self.port),
                "--secret", self.secret, "--name", self.name, "--record", str(self.record)]
        if not self.answer_iqs:
            args.append("--silent")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / f"{self.name}.stderr", "ab"),
            env=env,
            start_new_session=True,
        )
        if not wait_until(lambda: self.record.read_text().strip() or self.proc.poll() is not None, timeout, 0.02):
            self.kill9()
            raise HarnessError(f"{self.name}: not connected within {timeout:.0f} s")
        first = self.record.read_text().splitlines()[0] if self.record.read_text().strip() else ""
        if '"connected"' not in first:
            self.kill9()
            raise HarnessError(f"{self.name}: {first or 'exited'} {tail(self.dir / f'{self.name}.stderr')}")
        return self

    def stanzas(self, name: str | None = "iq") -> list[Stanza]:
        out = []
        for line in self.record.read_text().splitlines()[1:]:
            if line.endswith("}"):  # a line being written is not complete yet
                s = Stanza.from_json(line)
                if name is None or s.name == name:
                    out.append(s)
        return out

    def kill9(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout=5.0)
            self.proc = None


def _component_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m quoalise_testkit.cluster component")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--domain", default=COMPONENT_DOMAIN)
    parser.add_argument("--name", default="")
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--silent", action="store_true", help="do not answer iqs")
    args = parser.parse_args(argv)
    record = open(args.record, "a", buffering=1)

    def write(stanza: Stanza) -> None:
        record.write(stanza.to_json() + "\n")

    component = RawComponent(args.port, args.secret, domain=args.domain, name=args.name,
                             answer_iqs=not args.silent, on_stanza=write)
    try:
        component.connect()
    except HarnessError as e:
        record.write(json.dumps({"error": str(e)}) + "\n")
        return 2
    record.write(json.dumps({"connected": True}) + "\n")
    signal.signal(signal.SIGTERM, lambda *_: component.close())
    component.closed.wait()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "component":
        sys.exit(_component_main(sys.argv[2:]))
    sys.exit("usage: python -m quoalise_testkit.cluster component --port P --secret S --record FILE")
