"""Nothing lost when the store stalls: a reading produced while SQLite is locked by another
process, or while PostgreSQL restarts, is stored and notified once the store is back.

The publisher retries an event while the store's failure is one that passes (busy, locked,
unreachable) and reads no other event meanwhile: each source's bounded channel holds what it
produces (it would slow the source down when full, never drop).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from datetime import datetime, timezone

import pytest

from quoalise_testkit.commands import LIVE, history_fields, identifier, iso, run_command
from quoalise_testkit.harness import connected
from quoalise_testkit.live import Inbox, unsubscribe_everything
from quoalise_testkit.xmpp import SOURCE, UP1

T = 10
SENML_NAME = identifier(LIVE)
STALL = 10.0


async def readings_and_notifications_cover(server, alice, inbox, start: int, end: int):
    """Every second of [start, end) has its reading in the history and its notification."""

    def covered(i: Inbox) -> bool:
        got = {t for n in i.live() for t in n.times}
        return set(range(start, end)) <= got

    await inbox.wait(covered, 30)
    answer = await run_command(
        alice, SOURCE, "get_history",
        history_fields(SENML_NAME, iso(datetime.fromtimestamp(start, timezone.utc)),
                       iso(datetime.fromtimestamp(end, timezone.utc))),
    )
    stored = sorted(int(r.time) for r in answer.records)
    assert stored == list(range(start, end)), f"history over [{start}, {end}): {stored}"


async def live_story(server, component, hold_store) -> tuple[int, int]:
    """Alice subscribes to the live node; `hold_store()` makes the store unavailable for a while
    (it returns when the store is back); returns the seconds covered by the stall."""
    async with connected(server, "alice", presence=True) as alice:
        inbox = Inbox(alice)
        await alice.plugin["xep_0060"].subscribe(UP1, LIVE, timeout=T)
        assert await inbox.wait(lambda i: len(i.live()) >= 1, 10)
        began = time.time()
        await asyncio.to_thread(hold_store)
        ended = time.time()
        start, end = math.ceil(began), math.floor(ended)
        assert end - start >= STALL - 2, (start, end)
        await readings_and_notifications_cover(server, alice, inbox, start, end)
        await unsubscribe_everything(alice, [UP1])
        assert component.running(), component.tail()
        return start, end


@pytest.mark.servers("prosody")
async def test_an_exclusive_sqlite_lock_loses_nothing(fresh_server, new_component, workspace):
    server = fresh_server("prosody")
    component = new_component(server, meters=1, history_days=1)
    db = component.dir / "quoalise.db"

    def lock():
        con = sqlite3.connect(db, isolation_level=None, timeout=30)
        con.execute("BEGIN EXCLUSIVE")
        time.sleep(STALL)
        con.execute("ROLLBACK")
        con.close()

    await live_story(server, component, lock)
    assert component.count("store unavailable; retrying") >= 1, component.tail()
    assert component.count("the waiting event is stored") >= 1, component.tail()


@pytest.mark.servers("prosody")
async def test_a_postgres_restart_loses_nothing(pg_cluster, fresh_server, new_component):
    server = fresh_server("prosody")
    url = pg_cluster.create_database("quoalise_stall")
    component = new_component(server, meters=1, history_days=1, store_url=url)

    def restart():
        pg_cluster.stop_server()
        time.sleep(STALL)
        pg_cluster.start_server()

    # The pool waits for a connection while the server is down (up to its acquire timeout,
    # then the publisher retries): either way every reading is there.
    await live_story(server, component, restart)
    assert "terminating connection" in component.log(), "the restart reached the component"
