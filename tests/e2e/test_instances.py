"""Several instances of the component on one store.

- SQLite serves one instance: a second one on the same file stops at start and says why.
- Prosody accepts one connection per component domain, so the high availability it supports is
  a warm standby: two instances on one PostgreSQL store, the second refused with `conflict`
  (said once, then quiet) and retrying every two seconds. The demo source runs on the instance
  that holds its lease only. `kill -9` of the active instance: the standby connects within
  seconds, takes the demo source over within `[cluster] takeover`, and the subscriber's live
  feed goes on: every reading stored from the first notification on arrives, none published
  twice.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from quoalise_testkit.commands import LIVE, history_fields, identifier, iso, run_command
from quoalise_testkit.harness import Component, component_config, connected, free_port, wait_until
from quoalise_testkit.instances import TAKEOVER, check_feed_complete, healthz, instance, metric
from quoalise_testkit.live import Inbox, unsubscribe_everything
from quoalise_testkit.xmpp import SOURCE, UP1

T = 10
STANDBY_RETRY = 2  # seconds between a standby's connection attempts (src/xmpp/connection.rs)
STANDING_BY = "standing by to take over"
TAKES_OVER = "this standby instance takes over"


@pytest.mark.servers("prosody")
async def test_a_second_instance_on_one_sqlite_store_is_refused(fresh_server, new_component, workspace):
    server = fresh_server("prosody")
    first = new_component(server, meters=1, history_days=1)
    # The same SQLite file (in the first one's directory), another web port.
    second = Component(
        workspace.mkdir("second-on-sqlite"),
        component_config(server, first.dir, meters=1, history_days=1),
    )
    second.start()
    try:
        assert wait_until(lambda: not second.running(), 30), second.tail()
        assert second.proc is None or second.proc.returncode != 0
        log = second.log()
        assert "another quoalise-component instance runs on this SQLite store" in log, log
        assert "use a postgres:// store to run several" in log, log
    finally:
        second.stop()
    assert first.running(), first.tail()
    # The first one goes on serving.
    async with connected(server, "alice") as alice:
        answer = await run_command(alice, SOURCE, "get_history", history_fields(
            identifier(LIVE), iso(datetime.fromtimestamp(time.time() - 60, timezone.utc)),
            iso(datetime.fromtimestamp(time.time() + 60, timezone.utc))))
        assert answer.records, "the first instance still answers"


@pytest.mark.servers("prosody")
async def test_prosody_warm_standby_takes_over(pg_cluster, fresh_server, workspace):
    server = fresh_server("prosody")
    url = pg_cluster.create_database("quoalise_standby")
    ports = {"a": free_port(), "b": free_port()}
    active = instance(server, workspace, "a", url, ports["a"])
    standby = instance(server, workspace, "b", url, ports["b"])
    try:
        active.start()
        active.wait_established()
        standby.start()
        # Refused by Prosody (conflict): said once, then quiet, while it keeps trying.
        standby.wait_for_count(STANDING_BY, 1, 20)
        time.sleep(STANDBY_RETRY * 2 + 1)
        assert standby.count(STANDING_BY) == 1, standby.tail()
        assert "ERROR" not in standby.log(), standby.tail()
        # The demo source runs on one of them: the first one took its lease.
        assert wait_until(lambda: healthz(ports["a"])["leads"] == ["source:demo"], 10)
        assert healthz(ports["b"])["leads"] == []
        assert metric(ports["a"], 'quoalise_leading{lease="source:demo"}') == "1"
        assert metric(ports["b"], 'quoalise_leading{lease="source:demo"}') == "0"

        async with connected(server, "alice", presence=True) as alice:
            inbox = Inbox(alice)
            await alice.plugin["xep_0060"].subscribe(UP1, LIVE, timeout=T)
            assert await inbox.wait(lambda i: len(i.live()) >= 3, 15), "live feed before"

            killed = time.time()
            active.kill9()
            # The standby connects within a couple of retries of the server noticing the death.
            assert wait_until(lambda: standby.count(TAKES_OVER) >= 1, 15), standby.tail()
            standby.wait_established(timeout=5)
            connected_after = time.time() - killed
            # It takes the demo source over once the dead instance's lease expired.
            assert wait_until(lambda: healthz(ports["b"])["leads"] == ["source:demo"], TAKEOVER + 6), (
                standby.tail())
            led_after = time.time() - killed
            # Live readings go on, through the standby.
            assert await inbox.wait(
                lambda i: any(t > killed + 1 for n in i.live() for t in n.times), TAKEOVER + 15
            ), f"no live reading after the takeover\n{standby.tail()}"
            print(f"standby connected {connected_after:.1f} s after the kill, "
                  f"led the demo source after {led_after:.1f} s")
            assert connected_after < STANDBY_RETRY * 2 + 3
            assert led_after < TAKEOVER + 3

            # Nothing lost, nothing published twice.
            await check_feed_complete(alice, inbox)
            await unsubscribe_everything(alice, [UP1])
    finally:
        active.stop()
        standby.stop()
