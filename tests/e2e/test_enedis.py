"""The `enedis` source end to end: an application without a web front-end (bob, a slixmpp client)
obtains a Linky customer's consent through XMPP alone, then reads that customer's data from a
fake Enedis Data Connect 2026 server (testkit/python/quoalise_testkit/fake_dataconnect.py, serving the fixtures of
tests/fixtures/enedis/, whose make_fixtures.py explains the figures), through a real Prosody.

The browser's part of the chain is played with urllib (no redirect followed, so that each hop
is checked), and the consent page is also loaded in headless Chromium (screenshot, button
target). carol has no grant at all; alice's static grant does not matter here.
"""

from __future__ import annotations

import asyncio
import html
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from quoalise_testkit.commands import history_fields, run_command, send_command
from quoalise_testkit.dataconnect_consent import (
    authorize_uri as authorize_uri_on, button_href, consent_in_browser, enedis_source, http_get,
)
from quoalise_testkit.fake_dataconnect import FakeDataConnect, adam_error_body, throttled_body
from quoalise_testkit.harness import HarnessError, component_config, connected, free_port, Component, start_server
from quoalise_testkit.live import Inbox
from quoalise_testkit.xmpp import expect_error

PRM = "09876543210987"
DOMAIN = "quoalise.localhost"
ENEDIS = f"enedis@{DOMAIN}"
UP = f"{PRM}@{DOMAIN}"
NS_AUTHORIZE = "https://consometers.org/dataconnect#authorize"
NS_QUOALISE = "urn:quoalise:0"
LOAD_CURVE = "consumption/power/active/raw"
DAILY = "consumption/energy/active/daily"
MAX_POWER = "consumption/power/apparent/max"
# The fixture's two days, 2026-09-29 and 2026-09-30 in Paris (CEST, UTC+2).
START = "2026-09-28T22:00:00Z"
END = "2026-09-30T22:00:00Z"
REDIRECT = "http://127.0.0.1:9/app/back?user=plop"
DESCRIPTION = (
    "<p>Nos experts analysent votre consommation d’électricité.</p>"
    "<p>Voir notre <a href=\"https://example.org/privacy\">politique</a>.</p>"
)
T = 30


class Setup:
    """A private Prosody (the session's own component holds quoalise.localhost on the shared
    one), the fake Data Connect server, and a component with the `enedis` source."""

    def __init__(self, workdir: Path):
        self.server = server = start_server("prosody", workdir / "prosody")
        self.fake = FakeDataConnect().start()
        self.web_port = free_port()
        self.web = f"http://127.0.0.1:{self.web_port}"
        self.fake.callback_url = f"{self.web}/enedis/callback"
        source = enedis_source(self.fake)
        workdir = workdir / "component"
        self.component = Component(
            workdir, component_config(server, workdir, web_port=self.web_port, sources=source)
        )
        self.component.start()
        self.component.wait_established()

    def stop(self):
        self.component.stop()
        self.fake.stop()
        self.server.stop()

    def measure_calls(self, name: str) -> int:
        return self.fake.count(f"/mesure_synchrone_auto/v2/{name}")


@pytest.fixture(scope="module")
def enedis(workspace):
    setup = None
    try:
        setup = Setup(workspace.mkdir("enedis"))
    except HarnessError as e:
        if setup is not None:
            setup.stop()
        pytest.fail(str(e), pytrace=False)
    yield setup
    setup.stop()


async def authorize_uri(client, **fields) -> str:
    """The consent page's URI bob's application gets, with this file's description."""
    return await authorize_uri_on(
        client, ENEDIS, **{"description": DESCRIPTION, "redirect_uri": REDIRECT, **fields})


async def wait_for_message(inbox: Inbox, ns: str, timeout: float = T) -> ET.Element:
    found: list[ET.Element] = []

    def seen() -> bool:
        found[:] = [m for _, m in inbox.messages if m.find(f"{{{ns}}}x") is not None]
        return bool(found)

    deadline = time.monotonic() + timeout
    while not seen():
        assert time.monotonic() < deadline, f"no message with {ns} within {timeout} s"
        await asyncio.sleep(0.1)
    return found[-1]


def records_of(answer) -> list:
    return answer.records


def identifier(series: str) -> str:
    return f"urn:dev:prm:{PRM}_{series}"


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=timezone.utc).timestamp()


async def test_consent_chain_then_history_from_the_cache(enedis):
    """get_authorize_uri → consent page → Enedis → callback → the app's message and redirect;
    then the fixture's two days, fetched once and served from the store the second time."""
    async with connected(enedis.server, "bob", presence=True) as bob:
        inbox = Inbox(bob)
        uri = await authorize_uri(bob)
        assert uri.startswith(f"{enedis.web}/authorize?id="), uri
        assert len(urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query)["id"][0]) >= 32

        # The page describes the app and asks Enedis with our own single-use state.
        status, _, page = http_get(uri + "&duration=P6M&state=app+state/1")
        assert status == 200
        assert "Elec Expert" in page and "6 mois" in page and "bob@localhost" in page
        assert 'href="https://example.org/privacy"' in page
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(button_href(page)).query)
        assert query["client_id"] == ["test-client"] and query["response_type"] == ["code"]
        assert query["duration"] == ["P6M"]
        assert "app state/1" not in query["state"][0]

        status, headers, body = consent_in_browser(enedis.fake, uri, duration="P6M", state="app state/1")
        assert status == 303, (status, body)
        back = urllib.parse.urlsplit(headers["Location"])
        assert f"{back.scheme}://{back.netloc}{back.path}" == "http://127.0.0.1:9/app/back"
        assert urllib.parse.parse_qs(back.query) == {
            "user": ["plop"], "usage_points": [PRM], "state": ["app state/1"]}

        message = await wait_for_message(inbox, NS_AUTHORIZE)
        assert message.get("from") == ENEDIS
        x = message.find(f"{{{NS_AUTHORIZE}}}x")
        assert [e.text for e in x.findall(f"{{{NS_AUTHORIZE}}}usage-point")] == [PRM]
        assert x.find(f"{{{NS_AUTHORIZE}}}state").text == "app state/1"

        # History: fetched from Enedis once, then from the store.
        before = enedis.measure_calls("courbe_de_charge_consommation")
        answer = await run_command(bob, ENEDIS, "get_history",
                                   history_fields(identifier(LOAD_CURVE), START, END), timeout=T)
        records = records_of(answer)
        assert len(records) == 96, len(records)
        assert records[0].time == epoch(START)
        assert (records[0].value, records[-1].value) == (2080, 359)  # W, from the fixture's strings
        assert all(epoch(START) <= r.time < epoch(END) for r in records)
        assert enedis.measure_calls("courbe_de_charge_consommation") == before + 1
        again = await run_command(bob, ENEDIS, "get_history",
                                  history_fields(identifier(LOAD_CURVE), START, END), timeout=T)
        assert [(r.time, r.value) for r in again.records] == [(r.time, r.value) for r in records]
        assert enedis.measure_calls("courbe_de_charge_consommation") == before + 1, "paid twice"

        # Daily energy through the usage point's own JID: two days, Wh, from strings.
        daily = await run_command(bob, ENEDIS, "get_history",
                                  history_fields(identifier(DAILY), START, END), timeout=T)
        assert [r.value for r in daily.records] == [20938, 21898]

        # A client without grant is refused, and costs no upstream call.
        calls = len(enedis.fake.calls)
        async with connected(enedis.server, "carol") as carol:
            await expect_error(
                send_command(carol, ENEDIS, "get_history",
                             history_fields(identifier(LOAD_CURVE), START, END), timeout=T),
                "not-authorized",
            )
        assert len(enedis.fake.calls) == calls

        # The same state cannot be used twice: a replayed callback records nothing.
        metrics = http_get(f"{enedis.web}/metrics")[2]
        assert 'quoalise_upstream_calls_total{api="courbe_de_charge_consommation",status="200"}' in metrics
        health_status, _, health = http_get(f"{enedis.web}/healthz")
        assert health_status == 200 and json.loads(health) == {
            "status": "ok", "xmpp": "ok", "store": "ok", "outbox": "ok", "leads": ["source:enedis"]}


async def test_replayed_forged_and_incomplete_callbacks_record_nothing(enedis):
    async with connected(enedis.server, "bob", presence=True) as bob:
        inbox = Inbox(bob)
        uri = await authorize_uri(bob, redirect_uri=None)
        status, _, page = http_get(uri)
        status, headers, _ = http_get(button_href(page))
        callback = headers["Location"]
        status, _, body = http_get(callback)
        assert status == 200 and "Accès autorisé" in body and PRM in body
        await wait_for_message(inbox, NS_AUTHORIZE)
        received = len(inbox.messages)

        for url, expected in [
            (callback, 400),  # replayed
            (callback.replace("state=", "state=forged"), 400),
            (f"{enedis.web}/enedis/callback?autorisation_id=1", 400),
            (f"{enedis.web}/enedis/callback", 400),
            (f"{enedis.web}/authorize", 400),
            (f"{enedis.web}/authorize?id=0000", 404),
            (uri + "&duration=P4Y", 400),
            (uri + "&duration=PT1H", 400),
            (uri + "&redirect_uri=javascript:alert(1)", 400),
            (f"{enedis.web}/nowhere", 404),
        ]:
            status, _, body = http_get(url)
            assert status == expected, (url, status, body)
            assert "<script" not in body
        await asyncio.sleep(1)
        assert len(inbox.messages) == received, "a refused callback sent a message"


async def test_foreign_redirect_is_refused(enedis):
    async with connected(enedis.server, "bob") as bob:
        uri = await authorize_uri(bob)
        status, headers, body = consent_in_browser(enedis.fake, uri, redirect_uri="https://evil.example.net/steal")
        assert status == 200, (status, headers)
        assert "Location" not in headers
        assert "evil.example.net" not in body
        assert "n'est pas celle que l'application a déclarée" in html.unescape(body)


async def test_xss_description_is_neutralised(enedis):
    hostile = ('<p onclick="alert(0)">Bonjour</p><script>alert(1)</script>'
               '<img src=x onerror="alert(2)"><a href="javascript:alert(3)">clic</a>'
               '<a href="JaVaScRiPt:alert(4)">x</a><iframe src="https://evil.example.net"></iframe>')
    async with connected(enedis.server, "bob") as bob:
        uri = await authorize_uri(bob, description=hostile, name='<b>"Évil"</b>')
    status, _, page = http_get(uri)
    assert status == 200
    lowered = page.lower()
    for bad in ("<script", "onerror", "onclick", "javascript:", "<iframe", "<img src=x", '<b>"évil"'):
        assert bad not in lowered, bad
    assert "Bonjour" in page and "&lt;b&gt;" in page


async def test_bad_requests_are_named(enedis):
    async with connected(enedis.server, "bob") as bob:
        for fields, text in [
            ({"logo_url": "http://example.org/logo.png"}, "logo_url"),
            ({"redirect_uri": "javascript:alert(1)"}, "redirect_uri"),
            ({"name": None}, "name"),
            ({"description": "x" * 20000}, "description"),
        ]:
            values = {"name": "App", "description": "<p>x</p>"}
            values.update(fields)
            values = {k: v for k, v in values.items() if v is not None}
            e = await expect_error(send_command(bob, ENEDIS, "get_authorize_uri", values, timeout=T),
                                   "bad-request")
            assert text in e.iq["error"]["text"], e.iq


async def test_consent_page_in_headless_chromium(enedis, workspace):
    assert shutil.which("chromium"), "chromium is missing: scripts/test.sh installs it"
    async with connected(enedis.server, "bob") as bob:
        uri = await authorize_uri(bob)
    out = workspace.mkdir("chromium")
    # Loopback only: every other host resolves to nothing (the logo stays unloaded).
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", f"--user-data-dir={out / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--window-size=900,1000"]
    shot = out / "consent.png"
    subprocess.run(base + [f"--screenshot={shot}", uri], check=True, timeout=120,
                   capture_output=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
    dom = subprocess.run(base + ["--dump-dom", uri], check=True, timeout=120,
                         capture_output=True, text=True).stdout
    target = button_href(dom)
    assert target.startswith(enedis.fake.authorize_url + "?"), target
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    assert query["client_id"] == ["test-client"] and query["response_type"] == ["code"]
    assert query["duration"] == ["P1Y"] and len(query["state"][0]) == 32


async def test_legacy_callback_and_token_renewal(enedis):
    """Authorize v1's callback (`code` + `usage_point_id`) is still accepted; a token Enedis no
    longer accepts (401) is renewed once and the call made again."""
    async with connected(enedis.server, "bob", presence=True) as bob:
        inbox = Inbox(bob)
        enedis.fake.legacy = True
        try:
            uri = await authorize_uri(bob, redirect_uri=None)
            status, _, body = consent_in_browser(enedis.fake, uri, state="v1")
        finally:
            enedis.fake.legacy = False
        assert status == 200 and PRM in body, body
        message = await wait_for_message(inbox, NS_AUTHORIZE)
        assert message.find(f".//{{{NS_AUTHORIZE}}}state").text == "v1"

        enedis.fake.expire_tokens()
        before = len(enedis.fake.calls)
        answer = await run_command(bob, ENEDIS, "get_history", history_fields(
            identifier(LOAD_CURVE), "2026-09-20T22:00:00Z", "2026-09-21T22:00:00Z"), timeout=T)
        assert answer.records == []  # a day the fixture has no data for
        measure = "/mesure_synchrone_auto/v2/courbe_de_charge_consommation"
        assert [(c.path, c.status) for c in enedis.fake.calls[before:]] == [
            (measure, 401), ("/oauth2/v3/token", 200), (measure, 404)]


async def test_quota_exhaustion_gives_an_upstream_error(enedis):
    """Enedis throttles (429, 900807, nextAccessTime in 3 s): the requester gets the upstream
    error, nothing is called until then, the component stays up, and the call works after."""
    async with connected(enedis.server, "bob") as bob:
        await ensure_consent(enedis, bob)
        window = history_fields(identifier(MAX_POWER), START, END)
        enedis.fake.fail("/mesure_synchrone_auto/v2/", 429, throttled_body(time.time() + 3), times=1)
        calls = enedis.measure_calls("puissance_conso_max_quotidienne")
        for _ in range(2):
            e = await expect_error(send_command(bob, ENEDIS, "get_history", window, timeout=T),
                                   "undefined-condition")
            upstream = e.iq.xml.find(f".//{{{NS_QUOALISE}}}upstream-error")
            assert upstream is not None, e.iq
            assert (upstream.get("issuer"), upstream.get("code")) == ("enedis-data-connect", "900807")
            assert "throttled" in e.iq["error"]["text"].lower()
        assert enedis.measure_calls("puissance_conso_max_quotidienne") == calls + 1, "called while backing off"
        assert enedis.component.running()
        await asyncio.sleep(3.5)
        answer = await run_command(bob, ENEDIS, "get_history", window, timeout=T)
        assert len(answer.records) == 2


async def test_enedis_errors_and_withdrawn_consent(enedis):
    """ADAM-ERR0123 reaches the requester with Enedis' code and text; ADAM-DC-0008 (consent
    withdrawn) also revokes the grant and ends the app's subscriptions."""
    async with connected(enedis.server, "bob", presence=True) as bob:
        await ensure_consent(enedis, bob)
        enedis.fake.fail("/mesure_synchrone_auto/v2/consommation_quotidienne", 400,
                         adam_error_body(), times=1)
        e = await expect_error(send_command(bob, ENEDIS, "get_history", history_fields(
            identifier(DAILY), "2026-09-01T22:00:00Z", "2026-09-03T22:00:00Z"), timeout=T),
            "undefined-condition")
        assert e.iq.xml.find(f".//{{{NS_QUOALISE}}}upstream-error").get("code") == "ADAM-ERR0123"
        assert "mise en service" in e.iq["error"]["text"]

        inbox = Inbox(bob)
        ps = bob.plugin["xep_0060"]
        await ps.subscribe(UP, LOAD_CURVE, timeout=T)
        enedis.fake.revoke(PRM)
        e = await expect_error(send_command(bob, ENEDIS, "get_history", history_fields(
            identifier(LOAD_CURVE), "2026-10-09T22:00:00Z", "2026-10-10T22:00:00Z"), timeout=T),
            "undefined-condition")
        assert e.iq.xml.find(f".//{{{NS_QUOALISE}}}upstream-error").get("code") == "ADAM-DC-0008"

        def ended() -> bool:
            return any(m.find(".//{http://jabber.org/protocol/pubsub#event}subscription[@subscription='none']")
                       is not None for _, m in inbox.messages)

        deadline = time.monotonic() + 10
        while not ended():
            assert time.monotonic() < deadline, "subscription not ended after the consent was withdrawn"
            await asyncio.sleep(0.1)
        await expect_error(send_command(bob, ENEDIS, "get_history",
                                        history_fields(identifier(LOAD_CURVE), START, END), timeout=T),
                           "not-authorized")


async def ensure_consent(enedis: Setup, bob) -> None:
    """A fresh consent of bob's on the PRM (tests may run alone, or after a revocation)."""
    uri = await authorize_uri(bob, redirect_uri=None)
    status, _, body = consent_in_browser(enedis.fake, uri)
    assert status == 200, body
