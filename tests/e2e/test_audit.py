"""The audit trail's hash chain, from the command line, against a running component.

Every answered history request is appended to the audit log, chained to the entry before by
its SHA-256 (src/model/audit_chain.rs). `quoalise-component admin --config FILE audit verify`
recomputes the chain while the component runs (SQLite in WAL): intact, it prints the head and
exits 0; after a hand edit of one entry, it exits 1 naming that entry.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone

import pytest

from quoalise_testkit.commands import LIVE, history_fields, identifier, iso, run_command
from quoalise_testkit.harness import connected, run_cli
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
    assert "audit chain intact: 3 entries, head" in result.stdout, result.stdout

    db = sqlite3.connect(component.dir / "quoalise.db", timeout=10)
    (second,) = db.execute("SELECT id FROM audit_log ORDER BY id LIMIT 1 OFFSET 1").fetchone()
    with db:
        db.execute("UPDATE audit_log SET records = records + 1 WHERE id = ?", (second,))
    db.close()

    result = run_cli("admin", "--config", str(component.config), "audit", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"entry {second}: its content does not match its hash (edited)" in result.stdout, result.stdout
    assert component.running(), component.tail()
