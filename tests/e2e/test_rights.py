"""The data subject's rights end to end: portability (`export`) and erasure at consent end.

An application (bob, slixmpp) obtains a Linky customer's consent through the `enedis` source and
the fake Data Connect server (as in test_enedis.py), reads the fixture's two days, then:

- runs `export` on the usage point's JID: a small selection comes back as SenML JSON pages in
  `<json xmlns='urn:xmpp:json:0'/>`, a large one as a one-time link `{public_url}/export/{token}`
  that downloads once with urllib (`application/senml+json`), then answers 410; both hold exactly
  the readings the store has. alice (reading under a config grant) and carol (no grant) are
  refused;
- Enedis answers ADAM-DC-0008 (the customer withdrew the consent): with
  `[privacy] retain_after_consent = "PT2S"` the usage point's readings leave the store, read
  with SQL, and the erasure is one audit entry.

Run on Prosody with SQLite and on ejabberd with PostgreSQL, so that both servers and both
stores are covered.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from quoalise_testkit.commands import NS_DATA, command_of, field_values, history_fields, run_command, send_command
from quoalise_testkit.fake_dataconnect import FakeDataConnect
from quoalise_testkit.harness import Component, HarnessError, PgCluster, component_config, connected, free_port, start_server
from quoalise_testkit.xmpp import expect_error

from quoalise_testkit.dataconnect_consent import authorize_uri, consent_in_browser, enedis_source
from test_enedis import DAILY, ENEDIS, LOAD_CURVE, PRM, START, END, T, UP, identifier

NS_JSON = "urn:xmpp:json:0"
SENML_JSON = "application/senml+json"
# Readings above which the answer is a link: the fixture's two days hold about a hundred.
INLINE_MAX = 50


class Rights:
    """A private XMPP server, the fake Data Connect, a store (SQLite file or a PostgreSQL
    database) and a component with the `enedis` source and a short retention."""

    def __init__(self, kind: str, store: str, workdir: Path):
        self.pg = None
        self.server = start_server(kind, workdir / kind)
        self.fake = FakeDataConnect().start()
        self.web = f"http://127.0.0.1:{free_port()}"
        self.fake.callback_url = f"{self.web}/enedis/callback"
        self.db_path = workdir / "component" / "quoalise.db"
        store_url = None
        if store == "postgres":
            self.pg = PgCluster().start()
            store_url = self.pg.create_database("quoalise_rights")
        source = enedis_source(self.fake)
        config = component_config(
            self.server, workdir / "component", web_port=int(self.web.rsplit(":", 1)[1]),
            sources=source, store_url=store_url,
        ) + f"""
[privacy]
retain_after_consent = "PT2S"
export_inline_max = {INLINE_MAX}
"""
        self.component = Component(workdir / "component", config)
        self.component.start()
        self.component.wait_established()

    def sql(self, query: str) -> list[tuple]:
        """Rows of `query`, read on a connection of its own, as an operator would."""
        if self.pg is None:
            db = sqlite3.connect(self.db_path, timeout=10)
            try:
                return db.execute(query).fetchall()
            finally:
                db.close()
        result = self.pg._run("psql", "-h", str(self.pg.dir), "-p", str(self.pg.port), "-U",
                              "postgres", "-d", "quoalise_rights", "-tAF", "|", "-c", query)
        return [tuple(line.split("|")) for line in result.stdout.splitlines() if line]

    def stop(self):
        self.component.stop()
        self.fake.stop()
        self.server.stop()
        if self.pg is not None:
            self.pg.stop()


@pytest.fixture(params=[("prosody", "sqlite"), ("ejabberd", "postgres")], ids=lambda p: "-".join(p))
def rights(request, workspace):
    kind, store = request.param
    setup = None
    try:
        setup = Rights(kind, store, workspace.mkdir(f"rights-{kind}-{store}"))
    except HarnessError as e:
        if setup is not None:
            setup.stop()
        pytest.fail(str(e), pytrace=False)
    request.node._extra_components = [setup.component]
    yield setup
    setup.stop()


def resolve(pack: list) -> list[tuple[str, int, str, float]]:
    """RFC 8428 §4.6 on a JSON pack: (name, time, unit, value) of each record."""
    bn, bt, bu, out = "", 0, "", []
    for r in pack:
        bn, bt, bu = r.get("bn", bn), r.get("bt", bt), r.get("bu", bu)
        out.append((bn, bt + r.get("t", 0), bu, float(r["v"])))
    return out


async def export(client, fields: dict[str, str]) -> tuple[list, dict[str, list[str]], int]:
    """Runs `export` to completion: the records of every page, the last page's form values and
    the number of pages."""
    iq = await send_command(client, UP, "export", fields, timeout=T)
    records, pages = [], 0
    while True:
        pages += 1
        cmd = command_of(iq)
        values = field_values(cmd.find(f"{{{NS_DATA}}}x"))
        container = cmd.find(f"{{{NS_JSON}}}json")
        if container is not None:
            records += resolve(json.loads(container.text))
        if cmd.get("status") == "completed":
            return records, values, pages
        assert cmd.get("status") == "executing", cmd.attrib
        iq = await send_command(client, UP, "export", action="next", sessionid=cmd.get("sessionid"), timeout=T)


def download(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=T) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


async def test_export_to_the_holder_and_erasure_at_consent_end(rights):
    async with connected(rights.server, "bob") as bob:
        # bob's consent, through the consent page and the fake Enedis.
        uri = await authorize_uri(bob, ENEDIS, description="<p>Nos experts.</p>", redirect_uri=None)
        status, _, body = consent_in_browser(rights.fake, uri)
        assert status == 200, body

        # The export form lists the usage point's series; bob reads each one's two days once,
        # which fills the store from Enedis.
        iq = await send_command(bob, UP, "export", timeout=T)
        form = command_of(iq).find(f"{{{NS_DATA}}}x")
        series = [o.find(f"{{{NS_DATA}}}value").text
                  for f in form.findall(f"{{{NS_DATA}}}field") if f.get("var") == "series"
                  for o in f.findall(f"{{{NS_DATA}}}option")]
        assert series[0] == "*" and LOAD_CURVE in series and DAILY in series, series
        await send_command(bob, UP, "export", action="cancel", sessionid=command_of(iq).get("sessionid"), timeout=T)
        stored = []
        for path in sorted(series[1:]):
            answer = await run_command(bob, ENEDIS, "get_history",
                                       history_fields(identifier(path), START, END), timeout=T)
            stored += [(r.name, int(r.time), r.unit, float(r.value)) for r in answer.records]
        assert len(stored) > INLINE_MAX, len(stored)
        (count,) = rights.sql("SELECT COUNT(*) FROM readings")[0]
        assert int(count) == len(stored)

        # A small selection: SenML JSON pages, exactly the daily readings.
        records, values, _ = await export(bob, {"series": DAILY, "start": START, "end": END})
        assert records == [r for r in stored if r[0] == identifier(DAILY)]
        assert values["format"] == [SENML_JSON] and values["records"] == ["2"]

        # All series: a link, which downloads once.
        records, values, _ = await export(bob, {"series": "*", "start": START, "end": END})
        assert records == []
        assert values["records"] == [str(len(stored))]
        (url,) = values["url"]
        assert url.startswith(f"{rights.web}/export/"), url
        assert len(url.rsplit("/", 1)[1]) == 64
        status, content_type, body = download(url)
        assert (status, content_type) == (200, SENML_JSON), body[:300]
        assert resolve(json.loads(body)) == stored
        status, _, body = download(url)
        assert status == 410 and "already used" in body, (status, body)
        assert download(f"{rights.web}/export/{'0' * 64}")[0] == 404

        audited = rights.sql("SELECT series, records FROM audit_log WHERE command = 'export' ORDER BY id")
        assert sum(int(r) for _, r in audited) == 2 + len(stored), audited

        # alice reads under a config grant, carol has nothing: neither may export.
        async with connected(rights.server, "alice") as alice:
            e = await expect_error(send_command(alice, UP, "export", {"series": "*"}, timeout=T),
                                   "forbidden")
            assert "holder" in e.iq["error"]["text"]
        async with connected(rights.server, "carol") as carol:
            await expect_error(send_command(carol, UP, "export", {"series": "*"}, timeout=T))

        # The customer withdraws the consent: Enedis says ADAM-DC-0008 on the next fetch.
        rights.fake.revoke(PRM)
        await expect_error(send_command(bob, ENEDIS, "get_history", history_fields(
            identifier(LOAD_CURVE), "2026-10-09T22:00:00Z", "2026-10-10T22:00:00Z"), timeout=T))

    # Two seconds after the end, the readings go (the task looks every second).
    deadline = time.monotonic() + 20
    while int(rights.sql("SELECT COUNT(*) FROM readings")[0][0]) > 0:
        assert time.monotonic() < deadline, "readings still stored 20 s after the consent ended"
        await asyncio.sleep(0.5)
    assert int(rights.sql("SELECT COUNT(*) FROM fetched_days")[0][0]) == 0
    erasures = rights.sql("SELECT usage_point, series, records FROM audit_log WHERE command = 'erasure'")
    assert [(up, s, int(n)) for up, s, n in erasures] == [(PRM, "*", len(stored))]
    assert rights.component.running(), rights.component.tail()
