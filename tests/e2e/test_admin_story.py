"""Runtime administration and its audit, on real Prosody and ejabberd with slixmpp clients.

An admin grants bob a usage point with an ad-hoc command while the component runs; bob
subscribes and reads its history; the admin revokes the grant: bob's subscription ends with
`subscription="none"` within 5 s and his next request is refused. Alice, who is no admin, is
offered none of the admin commands and is refused them. The audit log holds the story in order
(grant added, what bob received and read under that grant, grant revoked), `admin audit verify`
finds the chain intact, then names the entry a test edits with SQL.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timezone

import pytest

from quoalise_testkit.commands import (
    LIVE, admin_command, command_nodes, history_fields, identifier, iso, run_command,
)
from quoalise_testkit.harness import IqError, connected, run_cli
from quoalise_testkit.live import Inbox, subscription_ended
from quoalise_testkit.xmpp import SOURCE, UP1, USAGE_POINTS

pytestmark = pytest.mark.timeout(180)

T = 10


@pytest.mark.parametrize("kind", ["prosody", "ejabberd"])
async def test_a_grant_given_and_taken_back_at_run_time_is_on_record(
        kind, fresh_server, new_component):
    server = fresh_server(kind)
    component = new_component(server, meters=1, history_days=1, alice_sees_all=False)
    config = str(component.config)
    bob_jid = f"bob@{server.host}"
    admin_jid = f"admin@{server.host}"
    window = history_fields(
        identifier(LIVE), iso(datetime.fromtimestamp(time.time() - 120, timezone.utc)),
        iso(datetime.fromtimestamp(time.time() + 60, timezone.utc)))

    async with connected(server, "admin") as admin, \
            connected(server, "bob", presence=True) as bob, \
            connected(server, "alice") as alice:
        # A non-admin is offered no admin command, and is refused one run by name.
        offered = await command_nodes(alice)
        assert offered and not [n for n in offered if n.startswith("admin-")], offered
        assert "admin-grant-add" in await command_nodes(admin)
        with pytest.raises(IqError) as refused:
            await admin_command(alice, "admin-grants-list", {})
        assert refused.value.iq["error"]["condition"] == "forbidden"

        # Bob has nothing yet.
        with pytest.raises(IqError) as refused:
            await run_command(bob, SOURCE, "get_history", window, timeout=T)
        assert refused.value.iq["error"]["condition"] == "not-authorized"

        added = await admin_command(admin, "admin-grant-add", {
            "jid": bob_jid, "usage_point": USAGE_POINTS[0], "series": "*",
            "purpose": "support case 42"})
        grant = int(added["grant"][0])

        inbox = Inbox(bob)
        await bob.plugin["xep_0060"].subscribe(UP1, LIVE, timeout=T)
        assert await inbox.wait(lambda i: len(i.live()) >= 2, 15), "bob's live feed"
        assert (await run_command(bob, SOURCE, "get_history", window, timeout=T)).records

        revoked_at = time.monotonic()
        await admin_command(admin, "admin-grant-revoke", {"grant": str(grant)})
        assert await inbox.wait(lambda i: subscription_ended(i, LIVE), 5), \
            "bob's subscription did not end within 5 s"
        print(f"{kind}: subscription ended {time.monotonic() - revoked_at:.2f} s after the revocation")
        with pytest.raises(IqError) as refused:
            await run_command(bob, SOURCE, "get_history", window, timeout=T)
        assert refused.value.iq["error"]["condition"] == "not-authorized"

    # The story, from the audit log: the grant added by the admin, then only what bob received
    # and read under that grant, then the revocation by the admin; nothing for bob after it.
    exported = run_cli("admin", "--config", config, "audit", "export")
    assert exported.returncode == 0, exported.stderr
    entries = [json.loads(line) for line in exported.stdout.splitlines()]
    story = [(e["command"], e["requester"]) for e in entries]
    assert story[0] == ("grant-added", admin_jid), story
    assert story.count(("grant-revoked", admin_jid)) == 1, story
    end = story.index(("grant-revoked", admin_jid))
    # A delivery claim whose access check ran just before the revocation may still be recorded
    # (and sent) just after it; never more than that one.
    late = entries[end + 1:]
    assert len(late) <= 1 and all(e["command"] == "notification" for e in late), story
    reads = entries[1:end] + late
    assert {e["requester"] for e in reads} == {bob_jid}, story
    assert {e["command"] for e in reads} == {"notification", "get_history"}, story
    assert all(e["grant_id"] == grant and e["usage_point"] == USAGE_POINTS[0] for e in entries), \
        entries
    assert entries[0]["series"] == "*" and all(e["series"] == LIVE for e in reads), entries
    # What bob received live is on record: at least the notifications he saw.
    notified = sum(e["records"] for e in reads if e["command"] == "notification")
    assert notified >= len(inbox.live()), (notified, len(inbox.live()))

    verified = run_cli("admin", "--config", config, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    head = entries[-1]  # the export is in chain order
    assert f"audit chain intact: {len(entries)} entries, head {head['id']} {head['hash']}" \
        in verified.stdout, verified.stdout

    # Someone rewrites who read: the chain breaks at that very entry.
    history = next(e for e in reads if e["command"] == "get_history")
    db = sqlite3.connect(component.dir / "quoalise.db", timeout=10)
    with db:
        db.execute("UPDATE audit_log SET requester = 'alice@localhost' WHERE id = ?",
                   (history["id"],))
    db.close()
    verified = run_cli("admin", "--config", config, "audit", "verify")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert f"entry {history['id']}: its content does not match its hash (edited)" \
        in verified.stdout, verified.stdout
    assert component.running(), component.tail()
