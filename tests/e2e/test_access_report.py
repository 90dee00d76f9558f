"""The data subject's access report and the admin's views of the audit log, end to end, on
Prosody and ejabberd: a real consent (the enedis source on the fake Data Connect) makes bob a
holder of the PRM; he and alice (a config grant on every usage point) read its history; bob's
`access_report` on the PRM's JID shows both reads with their grants, as a table and as JSON;
alice and the admin are refused it. The admin's `admin-audit` shows the reads, and the command
line lists and revokes the consent and shows the same entries.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from quoalise_testkit.commands import NS_COMMANDS, NS_DATA, command_of, history_fields, run_command, send_command
from quoalise_testkit.dataconnect_consent import authorize_uri, consent_in_browser, enedis_source
from quoalise_testkit.fake_dataconnect import FakeDataConnect
from quoalise_testkit.harness import Component, component_config, connected, free_port, run_cli
from quoalise_testkit.xmpp import expect_error

PRM = "09876543210987"
DOMAIN = "quoalise.localhost"
ENEDIS = f"enedis@{DOMAIN}"
UP = f"{PRM}@{DOMAIN}"
LOAD_CURVE = "consumption/power/active/raw"
DAILY = "consumption/energy/active/daily"
# The fixture's two days, 2026-09-29 and 2026-09-30 in Paris.
START = "2026-09-28T22:00:00Z"
END = "2026-09-30T22:00:00Z"
NS_JSON = "urn:xmpp:json:0"
T = 30


def table(cmd: ET.Element) -> list[dict[str, str]]:
    """The rows of the result form's <reported>/<item> table."""
    form = cmd.find(f"{{{NS_DATA}}}x")
    columns = [f.get("var") for f in form.find(f"{{{NS_DATA}}}reported")]
    rows = []
    for item in form.findall(f"{{{NS_DATA}}}item"):
        row = {f.get("var"): "".join(v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")) for f in item}
        assert set(row) <= set(columns), (row, columns)
        rows.append(row)
    return rows


def json_of(cmd: ET.Element) -> dict:
    return json.loads(cmd.find(f"{{{NS_JSON}}}json").text)


@pytest.fixture
def enedis_component(fresh_server, workspace, request):
    fake = FakeDataConnect().start()
    started = []

    def make(kind: str):
        server = fresh_server(kind)
        web_port = free_port()
        fake.callback_url = f"http://127.0.0.1:{web_port}/enedis/callback"
        workdir = workspace.mkdir(f"component-{kind}")
        component = Component(workdir, component_config(
            server, workdir, web_port=web_port, sources=enedis_source(fake)))
        started.append(component)
        component.start()
        component.wait_established()
        return server, component

    yield fake, make
    for component in started:
        component.stop()
    fake.stop()


@pytest.mark.parametrize("kind", ["prosody", "ejabberd"])
async def test_access_report_and_audit_views(kind, enedis_component):
    fake, make = enedis_component
    server, component = make(kind)
    config = str(component.config)
    async with connected(server, "bob") as bob, connected(server, "alice") as alice, \
            connected(server, "admin") as admin:
        status, _, body = consent_in_browser(fake, await authorize_uri(bob, ENEDIS, redirect_uri=None))
        assert status == 200, body
        window = history_fields(f"urn:dev:prm:{PRM}_{LOAD_CURVE}", START, END)
        assert len((await run_command(bob, ENEDIS, "get_history", window, timeout=T)).records) == 96
        daily = history_fields(f"urn:dev:prm:{PRM}_{DAILY}", START, END)
        assert len((await run_command(alice, ENEDIS, "get_history", daily, timeout=T)).records) == 2

        # Bob holds a consent: his report shows the consent given, then both reads, oldest
        # first, with their grants.
        reply = command_of(await send_command(bob, UP, "access_report", {}, timeout=T))
        assert reply.get("status") == "completed", reply.attrib
        rows = table(reply)
        assert [(r["requester"], r["series"], r["command"], r["records"], r["origin"]) for r in rows] == [
            ("bob@localhost", "*", "consent-given", "1", "consent"),
            ("bob@localhost", LOAD_CURVE, "get_history", "96", "consent"),
            ("alice@localhost", DAILY, "get_history", "2", "config"),
        ], rows
        assert rows[1]["purpose"] == "Energy advice", rows
        assert rows[1]["start"] == "2026-09-29T00:00:00+02:00" and rows[1]["end"] == "2026-10-01T00:00:00+02:00"
        document = json_of(reply)
        assert document["usage_point"] == PRM and document["more"] is False, document
        assert [e["id"] for e in document["entries"]] == [int(r["id"]) for r in rows]
        assert document["entries"][1]["grant"]["origin"] == "consent"
        assert document["entries"][1]["grant"]["purpose"] == "Energy advice"
        assert document["entries"][1]["records"] == 96

        # Alice reads under a config grant and does not speak for the customer; nor does an admin.
        for who in (alice, admin):
            await expect_error(send_command(who, UP, "access_report", {}, timeout=T), "forbidden")
            await expect_error(send_command(who, UP, "access_report", None, timeout=T), "forbidden")

        # The admin's view of the log: the PRM's entries, or alice's.
        audit = command_of(await send_command(admin, DOMAIN, "admin-audit", {"usage_point": PRM}, timeout=T))
        assert [r["requester"] for r in table(audit)] == ["bob@localhost"] * 2 + ["alice@localhost"]
        audit = command_of(await send_command(
            admin, DOMAIN, "admin-audit", {"requester": "alice@localhost"}, timeout=T))
        assert [(r["usage_point"], r["series"]) for r in table(audit)] == [(PRM, DAILY)]
        await expect_error(send_command(bob, DOMAIN, "admin-audit", {"usage_point": PRM}, timeout=T),
                           "forbidden")
        listed = command_of(await send_command(admin, DOMAIN, "admin-usage-points", {}, timeout=T))
        lines = [v.text for f in listed.find(f"{{{NS_DATA}}}x") if f.get("var") == "usage_points"
                 for v in f.findall(f"{{{NS_DATA}}}value")]
        assert len(lines) == 1 and lines[0].startswith(f"{PRM} enedis "), lines
        assert " consents 1 last " in lines[0] and not lines[0].endswith("never"), lines

        # The command line, while the component runs.
        shown = run_cli("admin", "--config", config, "audit", "show", "--usage-point", PRM)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert len(lines) == 3, lines
        assert lines[1].startswith(f"#{rows[1]['id']} ") and f" bob@localhost {PRM} {LOAD_CURVE} " in lines[1]
        assert "get_history 96 records under grant #" in lines[1], lines
        assert lines[1].endswith("(consent, purpose: Energy advice)"), lines
        mine = run_cli("admin", "--config", config, "audit", "show", "--requester", "alice@localhost",
                       "--from", "2020-01-01", "--to", "2020-02-01")
        assert mine.returncode == 0 and mine.stdout == "", mine.stdout + mine.stderr
        nobody = run_cli("admin", "--config", config, "audit", "show")
        assert nobody.returncode == 2, nobody.stdout + nobody.stderr
        consents = run_cli("admin", "--config", config, "consents", "list", "--usage-point", PRM)
        assert consents.returncode == 0, consents.stderr
        assert f"enedis {PRM} for bob@localhost until " in consents.stdout, consents.stdout
        revoked = run_cli("admin", "--config", config, "consents", "revoke", PRM)
        assert revoked.returncode == 0 and f"1 consent(s) on {PRM} revoked" in revoked.stdout, revoked.stdout
        again = run_cli("admin", "--config", config, "consents", "revoke", PRM)
        assert again.returncode == 1 and f"no consent in force on {PRM}" in again.stdout, again.stdout
        assert run_cli("admin", "--config", config, "consents", "list").stdout == ""
        # The revocation from the command line is on record.
        shown = run_cli("admin", "--config", config, "audit", "show", "--usage-point", PRM)
        assert " admin-cli " in shown.stdout.splitlines()[-1], shown.stdout
        assert " consent-ended 1 records " in shown.stdout.splitlines()[-1], shown.stdout

        # Bob no longer holds the PRM: he may not even know it exists.
        await expect_error(send_command(bob, UP, "access_report", {}, timeout=T), "item-not-found")
    assert component.running(), component.tail()
