"""Historical queries (XEP-0050 commands get_history, get_load_curve, get_daily, history) as a
slixmpp client sees them through a real Prosody or ejabberd, on the store the demo source filled.

The component's demo source backfills 3 days of PT30M load curve and daily energy at start (see
harness.component_config), so the two local days before today are complete: the windows below
are Paris midnights computed here, and the expected counts follow from their length (a day is 46
or 50 half-hours when the clocks change).

Two tests bring their own Prosody and component: a year of history (answers over 512 KiB, paged
below Prosody's component stanza limit) and the PostgreSQL store (a throwaway cluster).
"""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta
from xml.etree import ElementTree as ET

import pytest

from quoalise_testkit.commands import (
    DAILY,
    NS_COMMANDS,
    NS_DATA,
    NS_QUOALISE,
    NS_SENML,
    RAW,
    STEP,
    UP_ID,
    Answer,
    Window,
    command_of,
    field_values,
    gen1_fields,
    history_fields,
    identifier,
    iso,
    paris_midnight,
    paris_today,
    past_days,
    run_command,
    send_command,
    wait_for_records,
)
from quoalise_testkit.harness import ESTABLISHED, HarnessError, IqTimeout, connected
from quoalise_testkit.xmpp import DOMAIN, SERIES, SOURCE, UP1, expect_error, items

# Days the harness's demo source backfills.
HISTORY_DAYS = 3
Q = f"{{{NS_QUOALISE}}}"
HISTORY_NODES = {"get_history", "get_load_curve", "get_daily", "history"}
YEAR = 365 * 48


@pytest.fixture(scope="module")
def history_ready(server, component):
    """Waits (once per server) until the backfilled history is in the store."""

    async def wait():
        window = past_days(2)
        async with connected(server, "alice") as alice:
            raw = await wait_for_records(
                alice, SOURCE, identifier(RAW), iso(window.start), iso(window.end), window.half_hours
            )
            daily = await wait_for_records(
                alice, SOURCE, identifier(DAILY), iso(window.start), iso(window.end), 2
            )
        return len(raw.records), len(daily.records), window

    raw, daily, window = asyncio.run(wait())
    if raw < window.half_hours or daily < 2:
        pytest.fail(
            f"the backfill did not reach the store: {raw}/{window.half_hours} load-curve records, "
            f"{daily}/2 daily records over {window}\n{component.tail()}",
            pytrace=False,
        )


# --------------------------------------------------------------------------------------------
# Checks shared with the PostgreSQL test


def check_series_records(answer: Answer, window: Window, name: str, unit: str, step: int = STEP) -> None:
    """Every record of `window` once, in order, named `name`, in `unit`."""
    records = answer.records
    expected = list(range(window.start_ts, window.end_ts, step)) if step == STEP else window.midnights()
    assert len(records) == len(expected), f"{len(records)} records, expected {len(expected)}"
    assert all(window.start_ts <= r.time < window.end_ts for r in records), "a record outside the range"
    assert [r.time for r in records] == expected
    names = {r.name for r in records}
    assert names == {name}, names
    assert {r.unit for r in records} == {unit}
    assert all(r.value is not None and r.value > 0 for r in records)


def measurement(page) -> ET.Element:
    device = page.meta.find(f"{Q}device")
    assert device is not None and device.get("type") == "electricity-meter"
    ident = device.find(f"{Q}identifier")
    assert ident is not None and ident.attrib == {"authority": "demo", "type": "prm", "value": UP_ID}
    m = page.meta.find(f"{Q}measurement")
    assert m is not None, ET.tostring(page.meta, encoding="unicode")
    return m


async def check_one_shot(client, to: str, window: Window) -> Answer:
    ident = identifier(RAW)
    answer = await run_command(client, to, "get_history", history_fields(ident, iso(window.start), iso(window.end)))
    assert len(answer.pages) == 1
    assert answer.first.command.get("status") == "completed"
    check_series_records(answer, window, ident, "W")
    m = measurement(answer.first)
    assert list(m) == [], "generation-2 meta is flat"
    assert m.attrib == {
        "name": "active-power",
        "direction": "consumption",
        "quantity": "power",
        "type": "electrical",
        "unit": "W",
        "aggregation": "mean",
        "sampling-interval": "PT30M",
    }
    assert answer.form_title() == "History"
    return answer


def gen1_measurement(answer: Answer) -> dict[str, dict[str, str]]:
    m = measurement(answer.first)
    assert m.attrib == {}, f"generation-1 measurement has attributes {m.attrib}"
    children = [c.tag.removeprefix(Q) for c in m]
    assert children == ["physical", "business", "aggregate", "sampling"], children
    return {c.tag.removeprefix(Q): dict(c.attrib) for c in m}


async def check_load_curve(client, to: str, day: Window) -> Answer:
    answer = await run_command(
        client, to, "get_load_curve", gen1_fields(day.first_day, day.first_day + timedelta(days=day.days))
    )
    assert answer.first.command.get("status") == "completed"
    assert answer.form_title() == "Get consumption load curve data"
    result = answer.result_field()
    assert result.get("type") == "fixed"
    assert result.get("label") == f"consumption load curve for {UP_ID}"
    assert gen1_measurement(answer) == {
        "physical": {"quantity": "power", "type": "electrical", "unit": "W"},
        "business": {"graph": "load-profile", "direction": "consumption"},
        "aggregate": {"type": "average"},
        "sampling": {"interval": "1800"},
    }
    check_series_records(answer, day, f"urn:dev:prm:{UP_ID}_consumption_load", "W")
    first = answer.first.sensml.find(f"{{{NS_SENML}}}senml")
    assert first.get("t") == "0", "generation 1 states t='0' on the first record"
    return answer


async def check_daily(client, to: str, window: Window) -> Answer:
    answer = await run_command(
        client, to, "get_daily", gen1_fields(window.first_day, window.first_day + timedelta(days=window.days))
    )
    assert answer.first.command.get("status") == "completed"
    assert answer.form_title() == "Get consumption daily energy data"
    assert answer.result_field().get("label") == f"consumption daily energy for {UP_ID}"
    assert gen1_measurement(answer) == {
        "physical": {"quantity": "energy", "type": "electrical", "unit": "Wh"},
        "business": {"graph": "daily-energy", "direction": "consumption"},
        "aggregate": {"type": "sum"},
        "sampling": {"interval": "86400"},
    }
    check_series_records(answer, window, f"urn:dev:prm:{UP_ID}_consumption_daily", "Wh", step=86400)
    return answer


def ten_year_range() -> tuple[str, str, int, int]:
    end = paris_midnight(paris_today() + timedelta(days=1))
    start = paris_midnight(date(end.year - 10, 1, 1))
    return iso(start), iso(end), int(start.timestamp()), int(end.timestamp())


async def check_ten_years(client, to: str, started_at: float, history_days: int = HISTORY_DAYS,
                          max_stanza_size: int = 512 * 1024, timeout: float = 60) -> Answer:
    """A ten-year get_history on the raw series: every stored record (the backfill and the
    half-hours completed since), whether in one answer or in pages."""
    start, end, start_ts, end_ts = ten_year_range()
    ident = identifier(RAW)
    recent = past_days(history_days + 2)  # holds every stored record
    recent_fields = history_fields(ident, iso(recent.start), end)
    # The live source adds a half-hour when one ends: retry if that happened meanwhile.
    for _ in range(3):
        before = len((await run_command(client, to, "get_history", recent_fields, timeout=timeout)).records)
        answer = await run_command(client, to, "get_history", history_fields(ident, start, end), timeout=timeout)
        after = len((await run_command(client, to, "get_history", recent_fields, timeout=timeout)).records)
        if before == after:
            break
    assert before == after, "the store kept changing"
    records = answer.records
    assert answer.pages[-1].command.get("status") == "completed"
    assert len(records) == before, f"ten years gave {len(records)} records, the last days {before}"
    assert len(records) > 2 * 48
    assert all(start_ts <= r.time < end_ts for r in records)
    times = [int(r.time) for r in records]
    assert all(b - a == STEP for a, b in zip(times, times[1:])), "a gap or a duplicate"
    assert {r.name for r in records} == {ident}
    # What the demo source stored: the half-hours of [started - history_days, now), give or take
    # the one that ended during the query.
    first_half_hour = -(-(int(started_at) - history_days * 86400) // STEP) * STEP
    expected = (int(time.time()) // STEP * STEP - first_half_hour) // STEP
    assert abs(len(records) - expected) <= 1, f"{len(records)} records, expected about {expected}"
    for page in answer.pages:
        size = len(ET.tostring(page.command))
        assert size < max_stanza_size, f"a page of {size} bytes"
    return answer


# --------------------------------------------------------------------------------------------
# Tests on both servers


async def test_commands_are_listed(server, component):
    async with connected(server, "alice") as alice:
        lists = {}
        for jid in (DOMAIN, SOURCE, UP1):
            iq = await alice.plugin["xep_0050"].get_commands(jid, timeout=10)
            # Other commands (subscriptions…) may be listed too: keep the historical ones.
            lists[jid] = [(item_jid, node) for item_jid, node, _ in items(iq) if node in HISTORY_NODES]
    assert lists == {
        DOMAIN: [(DOMAIN, "get_history")],
        SOURCE: [(SOURCE, "get_history"), (SOURCE, "get_load_curve"), (SOURCE, "get_daily")],
        UP1: [(UP1, "history")],
    }


async def test_get_history_one_shot(server, component, history_ready):
    window = past_days(2)
    async with connected(server, "alice") as alice:
        answer = await check_one_shot(alice, SOURCE, window)
    assert answer.result_field().get("label") == f"Load curve (mean active power over 30 min) for {UP_ID}"
    assert answer.sessionid


async def test_get_history_multi_stage(server, component, history_ready):
    window = past_days(2)
    ident = identifier(RAW)
    fields = history_fields(ident, iso(window.start), iso(window.end))
    async with connected(server, "alice") as alice:
        iq = await send_command(alice, SOURCE, "get_history")
        cmd = command_of(iq)
        assert cmd.get("status") == "executing"
        sessionid = cmd.get("sessionid")
        assert sessionid
        actions = cmd.find(f"{{{NS_COMMANDS}}}actions")
        assert actions is not None and actions.find(f"{{{NS_COMMANDS}}}complete") is not None
        form = cmd.find(f"{{{NS_DATA}}}x")
        assert form is not None and form.get("type") == "form"
        assert [f.get("var") for f in form.findall(f"{{{NS_DATA}}}field")] == [
            "identifier", "start_time", "end_time",
        ]
        defaults = field_values(form)
        assert defaults["start_time"] and defaults["end_time"], defaults

        staged = await run_command(alice, SOURCE, "get_history", fields, action="complete", sessionid=sessionid)
        one_shot = await run_command(alice, SOURCE, "get_history", fields)
    assert staged.sessionid == sessionid
    assert staged.first.command.get("status") == "completed"
    check_series_records(staged, window, ident, "W")
    assert staged.records == one_shot.records
    assert one_shot.sessionid != sessionid


async def test_get_history_on_the_domain(server, component, history_ready):
    window = past_days(2)
    async with connected(server, "alice") as alice:
        on_domain = await check_one_shot(alice, DOMAIN, window)
        on_source = await run_command(
            alice, SOURCE, "get_history", history_fields(identifier(RAW), iso(window.start), iso(window.end))
        )
    assert on_domain.records == on_source.records


async def test_get_load_curve_generation_1(server, component, history_ready):
    day = past_days(1)
    async with connected(server, "alice") as alice:
        answer = await check_load_curve(alice, SOURCE, day)
        history = await run_command(
            alice, SOURCE, "get_history", history_fields(identifier(RAW), iso(day.start), iso(day.end))
        )
    assert [(r.time, r.value) for r in answer.records] == [(r.time, r.value) for r in history.records]


async def test_get_daily_generation_1(server, component, history_ready):
    window = past_days(2)
    async with connected(server, "alice") as alice:
        daily = await check_daily(alice, SOURCE, window)
        curve = await run_command(
            alice, SOURCE, "get_history", history_fields(identifier(RAW), iso(window.start), iso(window.end))
        )
    # The demo's daily energy is its load curve times half an hour, day by day.
    ends = window.midnights()[1:] + [window.end_ts]
    for record, end in zip(daily.records, ends):
        wh = sum(r.value for r in curve.records if record.time <= r.time < end) * 0.5
        assert record.value == wh, f"day {record.time}: {record.value} Wh, load curve gives {wh}"


async def test_history_on_the_usage_point(server, component, history_ready):
    window = past_days(2)
    async with connected(server, "alice") as alice:
        iq = await send_command(alice, UP1, "history")
        cmd = command_of(iq)
        assert cmd.get("status") == "executing"
        form = cmd.find(f"{{{NS_DATA}}}x")
        assert form.find(f"{{{NS_DATA}}}title").text == "History of Demo meter 1"
        fields = {f.get("var"): f for f in form.findall(f"{{{NS_DATA}}}field")}
        assert list(fields) == ["series", "start", "end"]
        series = fields["series"]
        assert series.get("type") == "list-single"
        options = [o.find(f"{{{NS_DATA}}}value").text for o in series.findall(f"{{{NS_DATA}}}option")]
        assert sorted(options) == SERIES
        assert field_values(form)["series"] == [RAW]

        answer = await run_command(
            alice, UP1, "history",
            {"series": RAW, "start": iso(window.start), "end": iso(window.end)},
            action="complete", sessionid=cmd.get("sessionid"),
        )
    assert answer.form_title() == "History of Demo meter 1"
    check_series_records(answer, window, identifier(RAW), "W")
    assert measurement(answer.first).get("sampling-interval") == "PT30M"


async def test_no_grant_is_not_authorized(server, component, history_ready):
    window = past_days(1)
    start, end = iso(window.start), iso(window.end)
    cases = [
        ("get_history", history_fields(identifier(RAW), start, end), "identifier"),
        # Bob cannot learn whether a usage point exists.
        ("get_history", history_fields(identifier(RAW, "12345678901234"), start, end), "identifier"),
        ("get_load_curve", gen1_fields(window.first_day, window.first_day + timedelta(days=1)), "usage_point_id"),
        (
            "get_load_curve",
            gen1_fields(window.first_day, window.first_day + timedelta(days=1), usage_point="12345678901234"),
            "usage_point_id",
        ),
    ]
    async with connected(server, "bob") as bob:
        for node, fields, field in cases:
            error = await expect_error(send_command(bob, SOURCE, node, fields), "not-authorized")
            assert error.iq["error"]["type"] == "auth", error.iq
            text = error.iq["error"]["text"]
            assert text.startswith(field), f"{node} {fields}: {text!r}"


@pytest.mark.parametrize(
    "case",
    ["bad-identifier", "unparsable-date", "end-before-start", "gen1-unparsable-date", "gen1-end-before-start"],
)
async def test_bad_input_is_bad_request(server, component, history_ready, case):
    window = past_days(2)
    start, end = iso(window.start), iso(window.end)
    first, last = window.first_day, window.first_day + timedelta(days=2)
    node, fields, field = {
        "bad-identifier": ("get_history", history_fields("nonsense", start, end), "identifier"),
        "unparsable-date": ("get_history", history_fields(identifier(RAW), "yesterday", end), "start_time"),
        "end-before-start": ("get_history", history_fields(identifier(RAW), end, start), "end_time"),
        "gen1-unparsable-date": (
            "get_load_curve", dict(gen1_fields(first, last), start_date="yesterday"), "start_date",
        ),
        "gen1-end-before-start": ("get_daily", gen1_fields(last, first), "end_date"),
    }[case]
    async with connected(server, "alice") as alice:
        error = await expect_error(send_command(alice, SOURCE, node, fields), "bad-request")
    assert error.iq["error"]["type"] == "modify", error.iq
    assert error.iq["error"]["text"].startswith(field), error.iq["error"]["text"]


async def test_ten_year_request(server, component, history_ready):
    async with connected(server, "alice") as alice:
        disconnects = []
        alice.add_event_handler("disconnected", lambda event: disconnects.append(event))
        answer = await check_ten_years(alice, SOURCE, component.started_at)
        await alice.plugin["xep_0199"].send_ping(DOMAIN, timeout=10)
        assert disconnects == []
    print(f"\n{server.kind}: ten years → {len(answer.records)} records in {len(answer.pages)} page(s), "
          f"{answer.seconds * 1000:.0f} ms")
    assert component.running(), component.tail()
    assert component.count(ESTABLISHED) == 1, component.tail()


async def test_a_year_is_paged_below_prosody_limit(fresh_server, new_component):
    """A ten-year request over a store holding a full year: the answer (about 17,520 records,
    over 512 KiB) must come in pages that each pass Prosody's component stanza limit (512 KiB,
    counted on the bytes the component writes), without the link being dropped."""
    server = fresh_server("prosody")
    history_days = 366
    component = new_component(server, meters=1, history_days=history_days)
    window = past_days(2)
    async with connected(server, "alice") as alice:
        disconnects = []
        alice.add_event_handler("disconnected", lambda event: disconnects.append(event))
        # The daily series is sent after the whole load curve: once it is stored, so is the year.
        await wait_for_records(alice, SOURCE, identifier(DAILY), iso(window.start), iso(window.end), 2)
        answer = None
        try:
            answer = await check_ten_years(alice, SOURCE, component.started_at, history_days, timeout=20)
        except IqTimeout:
            pass
        if answer is None:
            rejected = [line for line in server_log(server) if "stanza-too-large" in line or "not-well-formed" in line]
            pytest.fail(
                "no answer within 20 s to a one-year history through Prosody; Prosody says:\n"
                + "\n".join(line[:300] for line in rejected),
                pytrace=False,
            )
        await alice.plugin["xep_0199"].send_ping(DOMAIN, timeout=10)
        assert disconnects == []
    assert len(answer.records) >= YEAR and len(answer.pages) >= 2
    assert component.count("xmpp link lost") == 0, component.tail()
    assert component.count(ESTABLISHED) == 1, component.tail()


def server_log(server) -> list[str]:
    try:
        return server.log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------------------------
# PostgreSQL store (on Prosody only, to save time)


async def test_postgres_store(pg_cluster, fresh_server, new_component):
    """The same story on PostgreSQL (requested first, so it stops after the component); with 30
    days of history and the smallest stanza limit the component accepts, the ten-year answer
    also comes in pages through the server."""
    server = fresh_server("prosody")
    url = pg_cluster.create_database("quoalise_e2e")
    history_days, limit = 30, 16 * 1024
    component = new_component(
        server, store_url=url, history_days=history_days, extra_xmpp=f"max_stanza_size = {limit}\n"
    )
    window, day = past_days(2), past_days(1)
    async with connected(server, "alice") as alice:
        ready = await wait_for_records(
            alice, SOURCE, identifier(RAW), iso(window.start), iso(window.end), window.half_hours
        )
        if len(ready.records) < window.half_hours:
            raise HarnessError(f"the backfill did not reach PostgreSQL\n{component.tail()}")
        await wait_for_records(alice, SOURCE, identifier(DAILY), iso(window.start), iso(window.end), 2)
        await check_one_shot(alice, SOURCE, window)
        await check_one_shot(alice, DOMAIN, window)
        await check_load_curve(alice, SOURCE, day)
        await check_daily(alice, SOURCE, window)
        ten = await check_ten_years(alice, SOURCE, component.started_at, history_days, limit)
        assert len(ten.pages) > 1, "30 days under a 16 KiB limit should take several pages"
        await alice.plugin["xep_0199"].send_ping(DOMAIN, timeout=10)
    print(f"\npostgres: ten years → {len(ten.records)} records in {len(ten.pages)} pages, "
          f"{ten.seconds * 1000:.0f} ms")
    async with connected(server, "bob") as bob:
        await expect_error(
            send_command(bob, SOURCE, "get_history", history_fields(identifier(RAW), iso(day.start), iso(day.end))),
            "not-authorized",
        )
    assert "postgres://" in component.config.read_text()
    assert component.count(ESTABLISHED) == 1, component.tail()
