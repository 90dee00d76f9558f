"""Administration from the command line against a running component: the audit trail's hash
chain, grants.

Every answered history request is appended to the audit log, chained to the entry before by
its SHA-256 (src/model/audit_chain.rs). `quoalise-component admin --config FILE audit verify`
recomputes the chain while the component runs (SQLite in WAL): intact, it prints the head and
exits 0; after a hand edit of one entry, it exits 1 naming that entry.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timezone

import pytest

from quoalise_testkit.commands import LIVE, history_fields, identifier, iso, run_command
from quoalise_testkit.harness import IqError, connected, run_cli
from quoalise_testkit.xmpp import SOURCE


@pytest.mark.servers("prosody")
async def test_audit_verify_sees_an_edited_entry(fresh_server, new_component):
    server = fresh_server("prosody")
    component = new_component(server, meters=1, history_days=1)
    window = history_fields(
        identifier(LIVE), iso(datetime.fromtimestamp(time.time() - 120, timezone.utc)),
        iso(datetime.fromtimestamp(time.time() + 60, timezone.utc)))
    async with connected(server, "alice") as alice:
        for _ in range(3):
            assert (await run_command(alice, SOURCE, "get_history", window)).records

    result = run_cli("admin", "--config", str(component.config), "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    # Alice's grant from the config file (added at start), then her three pages.
    assert "audit chain intact: 4 entries, head" in result.stdout, result.stdout

    db = sqlite3.connect(component.dir / "quoalise.db", timeout=10)
    (second,) = db.execute(
        "SELECT id FROM audit_log WHERE command = 'get_history' ORDER BY id LIMIT 1 OFFSET 1"
    ).fetchone()
    with db:
        db.execute("UPDATE audit_log SET records = records + 1 WHERE id = ?", (second,))
    db.close()

    result = run_cli("admin", "--config", str(component.config), "audit", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"entry {second}: its content does not match its hash (edited)" in result.stdout, result.stdout
    assert component.running(), component.tail()


@pytest.mark.servers("prosody")
async def test_grants_from_the_command_line_while_the_component_runs(fresh_server, new_component):
    server = fresh_server("prosody")
    component = new_component(server, meters=1, history_days=1, alice_sees_all=False)
    config = str(component.config)
    window = history_fields(
        identifier(LIVE), iso(datetime.fromtimestamp(time.time() - 120, timezone.utc)),
        iso(datetime.fromtimestamp(time.time() + 60, timezone.utc)))

    added = run_cli("admin", "--config", config, "grants", "add", "--jid", "bob@localhost",
                    "--usage-point", "99999000000001", "--purpose", "command line")
    assert added.returncode == 0, added.stdout + added.stderr
    grant = added.stdout.split()[1].lstrip("#")
    listed = run_cli("admin", "--config", config, "grants", "list", "--jid", "bob@localhost")
    assert listed.stdout.startswith(f"#{grant} bob@localhost 99999000000001 * admin"), listed.stdout
    assert "purpose: command line" in listed.stdout, listed.stdout

    async with connected(server, "bob") as bob:
        # Read at once: grants are read from the store at each request.
        assert (await run_command(bob, SOURCE, "get_history", window)).records
        revoked = run_cli("admin", "--config", config, "grants", "revoke", grant)
        assert revoked.returncode == 0 and f"grant #{grant} revoked" in revoked.stdout, revoked.stdout
        with pytest.raises(IqError) as refused:
            await run_command(bob, SOURCE, "get_history", window)
        assert refused.value.iq["error"]["condition"] == "not-authorized"
    again = run_cli("admin", "--config", config, "grants", "revoke", grant)
    assert again.returncode == 1 and f"no grant #{grant} in force" in again.stdout, again.stdout

    # The audit trail, exported: one JSON line per entry, chained: the grant added and revoked
    # from the command line, bob's page in between, under that grant.
    exported = run_cli("admin", "--config", config, "audit", "export")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [(e["command"], e["requester"]) for e in lines] == [
        ("grant-added", "admin-cli"), ("get_history", "bob@localhost"),
        ("grant-revoked", "admin-cli")], lines
    assert all(e["grant_id"] == int(grant) for e in lines), lines
    assert all(len(e["hash"]) == 64 for e in lines), lines
    assert lines[0]["prev_hash"] == "0" * 64, lines
    assert [e["prev_hash"] for e in lines[1:]] == [e["hash"] for e in lines[:-1]], lines
    bad = run_cli("admin", "--config", config, "grants", "add", "--jid", "not a jid")
    assert bad.returncode == 2 and "is not a bare JID" in bad.stderr, bad.stderr
