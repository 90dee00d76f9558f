"""Health that tells the truth, and a web side that cannot starve the XMPP link.

- A frozen XMPP server (SIGSTOP: the socket stays open, nothing moves) turns /healthz to 503
  within three ping intervals, and back to 200 once the server runs again.
- 2,000 idle web connections and 50 clients sending half a header leave /healthz answering and
  the XMPP link working, and a reconnect of the link possible while they are held.
- With a process limited to 1,024 open files, the web side is capped below it (excess
  connections closed at once) and the link can still reconnect.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest

from quoalise_testkit.harness import ESTABLISHED, connected, free_port
from quoalise_testkit.xmpp import DOMAIN

PING = "1s"


def healthz(port: int, timeout: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_for_status(port: int, status: int, limit: float) -> float:
    """Seconds until /healthz answers `status`; fails after `limit`."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < limit:
        try:
            last = healthz(port, timeout=2.0)
            if last[0] == status:
                return time.monotonic() - started
        except OSError as e:
            last = repr(e)
        time.sleep(0.2)
    pytest.fail(f"/healthz did not answer {status} within {limit} s; last: {last}")


def signal_group(server, sig) -> None:
    os.killpg(os.getpgid(server.proc.pid), sig)


@pytest.mark.parametrize("kind", ["prosody", "ejabberd"])
def test_a_frozen_server_turns_healthz_503_then_back(fresh_server, new_component, kind):
    server = fresh_server(kind)
    web = free_port()
    component = new_component(
        server, meters=1, history_days=1, ping_interval=PING, web_port=web,
        extra_web="enabled = true",
    )
    assert wait_for_status(web, 200, 10) < 10
    status, body = healthz(web)
    assert body == {
        "status": "ok", "xmpp": "ok", "store": "ok", "outbox": "ok", "leads": ["source:demo"],
    }, body

    signal_group(server, signal.SIGSTOP)
    try:
        detected = wait_for_status(web, 503, 15)
        status, body = healthz(web)
        assert body["status"] == "unhealthy" and body["store"] == "ok", body
        assert body["xmpp"] != "ok", body
    finally:
        signal_group(server, signal.SIGCONT)
    recovered = wait_for_status(web, 200, 60)
    print(f"\n{kind}: frozen server detected in {detected:.1f} s, healthy again {recovered:.1f} s "
          f"after SIGCONT (ping_interval {PING})")
    # Three ping intervals of silence, plus the time to notice.
    assert detected <= 3 * 1 + 3, detected
    assert component.running(), component.tail()


def hold_connections(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        held.append(s)
    return held


def raise_own_file_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


@pytest.mark.servers("prosody")
async def test_idle_and_slow_web_clients_leave_xmpp_and_healthz_answering(
    fresh_server, new_component
):
    raise_own_file_limit(4096)
    server = fresh_server("prosody")
    web = free_port()
    component = new_component(
        server, meters=1, history_days=1, web_port=web,
        extra_web='enabled = true\nmax_connections = 4096\nheader_timeout = "30s"',
    )
    idle = hold_connections(web, 2000)
    slow = hold_connections(web, 50)
    for s in slow:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    try:
        assert len(idle) == 2000 and len(slow) == 50
        started = time.monotonic()
        status, body = healthz(web)
        assert status == 200 and body["status"] == "ok", body
        assert time.monotonic() - started < 2
        async with connected(server, "carol") as carol:
            await carol.plugin["xep_0199"].send_ping(DOMAIN, timeout=5)
        # The link can reconnect while the web side holds 2,050 connections.
        await asyncio.to_thread(server.restart)
        await asyncio.to_thread(component.wait_established, 2, 30)
        async with connected(server, "carol") as carol:
            await carol.plugin["xep_0199"].send_ping(DOMAIN, timeout=5)
        assert wait_for_status(web, 200, 20) < 20
    finally:
        for s in idle + slow:
            s.close()
    assert "Too many open files" not in component.log()


@pytest.mark.servers("prosody")
async def test_a_small_file_limit_keeps_descriptors_for_the_link(fresh_server, new_component):
    raise_own_file_limit(4096)
    server = fresh_server("prosody")
    web = free_port()
    component = new_component(
        server, meters=1, history_days=1, web_port=web, nofile=1024,
        extra_web='enabled = true\nheader_timeout = "60s"',
    )
    assert "web.max_connections lowered" in component.log(), component.tail()
    held = hold_connections(web, 1100)
    try:
        # Beyond the cap, connections are closed at once: reads see the end.
        def closed(s: socket.socket) -> bool:
            s.settimeout(2)
            try:
                return s.recv(1) == b""
            except socket.timeout:
                return False
            except OSError:
                return True

        assert all(closed(s) for s in held[-100:]), "connections beyond the cap are closed"
        assert not closed(held[0]), "connections within the cap are served (kept open)"
        await asyncio.to_thread(server.restart)
        await asyncio.to_thread(component.wait_established, 2, 30)
        async with connected(server, "carol") as carol:
            await carol.plugin["xep_0199"].send_ping(DOMAIN, timeout=5)
    finally:
        for s in held:
            s.close()
    assert "Too many open files" not in component.log()
    assert component.count(ESTABLISHED) == 2
