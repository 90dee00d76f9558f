"""Helpers for the xAAL end-to-end test and benchmark: a private network namespace, the bus
key, real xaal-lib devices in a child process, and a raw listener on the multicast group.

Multicast must never leave the machine: everything xAAL runs inside a network namespace that
has only a loopback interface, with the multicast route on `lo` (`unshare -n`, as root).
`reenter_netns()` re-runs the current command there; `in_netns()` tells which side we are on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NETNS_ENV = "QUOALISE_XAAL_NETNS"
GROUP = ("224.0.29.200", 1236)
SOURCE_ID = "xaal"

_NETNS_SETUP = (
    "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo && "
    f'exec env {NETNS_ENV}=1 "$@"'
)


def in_netns() -> bool:
    """True inside the namespace made by `netns_command` (and only there)."""
    return os.environ.get(NETNS_ENV) == "1"


def netns_command(argv: list[str]) -> list[str]:
    """`argv` run in a new network namespace holding only `lo`, with the multicast route."""
    return ["unshare", "--net", "--", "sh", "-c", _NETNS_SETUP, "sh", *argv]


def loopback_only() -> bool:
    """True when the only interface is `lo` (a sanity check before sending multicast)."""
    # Not /sys/class/net: sysfs keeps showing the namespace it was mounted in.
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def derive_key(passphrase: str) -> bytes:
    """The key xaal-lib derives from a passphrase (docs/architecture.md §5.3)."""
    return hashlib.scrypt(passphrase.encode(), salt=bytes(32), n=1 << 14, r=8, p=1, dklen=32)


def write_xaal_ini(conf_dir: Path, key: bytes, alive_timer: int) -> Path:
    """The xaal.ini that xaal-lib needs at import; `alive_timer` s between alives (timeout 2×)."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "xaal.ini").write_text(
        f"key = {key.hex()}\nalive_timer = {alive_timer}\nlog_level = WARNING\n"
        f"log_path = {conf_dir}\nrate_limit = 0\n"
    )
    return conf_dir


def xaal_source(passphrase_file: Path, owners: list[str], **extra: str) -> str:
    """The `[[source]]` table of the component under test."""
    lines = [
        "[[source]]",
        'type = "xaal"',
        f'id = "{SOURCE_ID}"',
        f'passphrase_file = "{passphrase_file}"',
        'group = "224.0.29.200:1236"',
        'interface = "0.0.0.0"',
        "owners = [" + ", ".join(f'"{o}"' for o in owners) + "]",
    ]
    lines += [f'{k} = "{v}"' for k, v in extra.items()]
    return "\n".join(lines) + "\n"


class BusListener:
    """Every datagram on the group, raw, with its arrival time (time.monotonic()), collected by
    a thread; `send()` puts raw bytes on the bus (forged or replayed datagrams)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind(("0.0.0.0", GROUP[1]))
        mreq = struct.pack("=4s4s", socket.inet_aton(GROUP[0]), socket.inet_aton("0.0.0.0"))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        self.sock.settimeout(0.2)
        self.datagrams: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xaal-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.datagrams.append((time.monotonic(), data))

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, GROUP)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class DeviceProcess:
    """xaal_devices.py (beside this file) in a child process: a power meter `pm`, a thermometer `thermo`
    and a lamp `lamp`, all real xaal-lib devices."""

    def __init__(self, conf_dir: Path, log_path: Path, timeout: float = 20.0):
        env = dict(os.environ, XAAL_CONF_DIR=str(conf_dir), PYTHONUNBUFFERED="1")
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "xaal_devices.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            text=True,
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name="xaal-devices", daemon=True).start()
        ready = self._answer(timeout)
        self.uuids: dict[str, str] = ready["devices"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _answer(self, timeout: float = 10.0) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"xaal devices did not answer within {timeout:.0f} s") from None
        if line is None:
            raise AssertionError(f"xaal devices exited with status {self.proc.wait()}")
        answer = json.loads(line)
        assert "error" not in answer, answer
        return answer

    def _command(self, cmd: dict) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def set(self, dev: str, **attrs) -> float:
        """Changes attributes; returns time.monotonic() just before the change was sent."""
        # CLOCK_MONOTONIC is system-wide on Linux: the child's reading compares with ours.
        return self._command({"cmd": "set", "dev": dev, "attrs": attrs})["sent"]

    def stop(self, dev: str) -> None:
        self._command({"cmd": "stop", "dev": dev})

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
