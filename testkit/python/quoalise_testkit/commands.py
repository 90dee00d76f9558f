"""XEP-0050 commands through slixmpp, and readers for their Quoalise answers.

`run_command` sends a command (one-shot with its form, or any stage of a multi-stage run) with
slixmpp's xep_0050 plugin and follows `next` pages until the command is completed; `Answer`
holds what came back, checked for the shape every history answer has:

    <command status="completed|executing" sessionid="…">
      [<actions execute="next"><next/></actions>]             (pages before the last one)
      <x xmlns="jabber:x:data" type="result">… field result = Success …</x>
      <quoalise xmlns="urn:quoalise:0"><data><meta/><sensml/></data></quoalise>
    </command>

SenML is resolved here per RFC 8428 §4.6 (base name + name, base time + time, base unit or
unit, base value + value), independently of the component's own code.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"
NS_QUOALISE = "urn:quoalise:0"
NS_SENML = "urn:ietf:params:xml:ns:senml"

PARIS = ZoneInfo("Europe/Paris")
STEP = 1800

UP_ID = "99999000000001"
RAW = "consumption/power/active/raw"
DAILY = "consumption/energy/active/daily"
LIVE = "consumption/power/active/instant"


def identifier(series: str, usage_point: str = UP_ID) -> str:
    return f"urn:dev:prm:{usage_point}_{series}"


# --------------------------------------------------------------------------------------------
# Time


def paris_today() -> date:
    return datetime.now(PARIS).date()


def paris_midnight(day: date) -> datetime:
    """Local midnight of `day` in Paris, an aware datetime (it always exists there)."""
    return datetime(day.year, day.month, day.day, tzinfo=PARIS)


def iso(t: datetime) -> str:
    """ISO 8601 with the offset, e.g. 2026-11-19T00:00:00+01:00."""
    return t.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Window:
    """A half-open range [start, end) of Paris local days."""

    first_day: date
    days: int

    @property
    def start(self) -> datetime:
        return paris_midnight(self.first_day)

    @property
    def end(self) -> datetime:
        return paris_midnight(self.first_day + timedelta(days=self.days))

    @property
    def start_ts(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_ts(self) -> int:
        return int(self.end.timestamp())

    @property
    def half_hours(self) -> int:
        """PT30M records in the window: 48 a day, 46 or 50 on the days clocks change."""
        return (self.end_ts - self.start_ts) // STEP

    def midnights(self) -> list[int]:
        return [int(paris_midnight(self.first_day + timedelta(days=i)).timestamp()) for i in range(self.days)]


def past_days(days: int) -> Window:
    """The `days` full local days that ended at today's Paris midnight."""
    return Window(paris_today() - timedelta(days=days), days)


# --------------------------------------------------------------------------------------------
# SenML


@dataclass(frozen=True)
class Record:
    name: str
    time: float
    unit: str | None
    value: float | None


def resolve_senml(sensml: ET.Element) -> list[Record]:
    """RFC 8428 resolution of a <sensml> pack: base fields apply to the records that follow."""
    base_name, base_time, base_unit, base_value = "", 0.0, None, 0.0
    out = []
    for rec in sensml.findall(f"{{{NS_SENML}}}senml"):
        a = rec.attrib
        if "bn" in a:
            base_name = a["bn"]
        if "bt" in a:
            base_time = float(a["bt"])
        if "bu" in a:
            base_unit = a["bu"]
        if "bv" in a:
            base_value = float(a["bv"])
        value = base_value + float(a["v"]) if "v" in a else None
        out.append(
            Record(
                name=base_name + a.get("n", ""),
                time=base_time + float(a.get("t", "0")),
                unit=a.get("u", base_unit),
                value=value,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Answers


@dataclass
class Page:
    command: ET.Element
    form: ET.Element
    meta: ET.Element
    sensml: ET.Element
    records: list[Record]


@dataclass
class Answer:
    node: str
    sessionid: str
    pages: list[Page] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def records(self) -> list[Record]:
        return [r for p in self.pages for r in p.records]

    @property
    def first(self) -> Page:
        return self.pages[0]

    def form_title(self) -> str | None:
        title = self.first.form.find(f"{{{NS_DATA}}}title")
        return None if title is None else title.text

    def result_field(self) -> ET.Element:
        return result_field(self.first.form)


def command_of(iq) -> ET.Element:
    cmd = iq.xml.find(f"{{{NS_COMMANDS}}}command")
    assert cmd is not None, f"no <command/> in {iq}"
    return cmd


def result_field(form: ET.Element) -> ET.Element:
    for f in form.findall(f"{{{NS_DATA}}}field"):
        if f.get("var") == "result":
            return f
    raise AssertionError(f"no field 'result' in {ET.tostring(form, encoding='unicode')}")


def field_values(form: ET.Element) -> dict[str, list[str]]:
    return {
        f.get("var"): [v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")]
        for f in form.findall(f"{{{NS_DATA}}}field")
    }


def check_page(cmd: ET.Element) -> Page:
    """Checks the shape of one answered page and reads it."""
    payloads = [c for c in cmd if c.tag not in (f"{{{NS_COMMANDS}}}actions", f"{{{NS_COMMANDS}}}note")]
    tags = [c.tag for c in payloads]
    assert tags == [f"{{{NS_DATA}}}x", f"{{{NS_QUOALISE}}}quoalise"], f"command payloads: {tags}"
    form, quoalise = payloads
    assert form.get("type") == "result", f"form type {form.get('type')!r}"
    value = result_field(form).find(f"{{{NS_DATA}}}value")
    assert value is not None and value.text == "Success", ET.tostring(form, encoding="unicode")
    data = quoalise.findall(f"{{{NS_QUOALISE}}}data")
    assert len(data) == 1, f"{len(data)} <data/> elements"
    children = [c.tag for c in data[0]]
    assert children == [f"{{{NS_QUOALISE}}}meta", f"{{{NS_SENML}}}sensml"], children
    meta, sensml = list(data[0])
    return Page(cmd, form, meta, sensml, resolve_senml(sensml))


def make_form(client, fields: dict[str, str]):
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    for var, value in fields.items():
        form.add_field(var=var, value=value)
    return form


async def send_command(client, to: str, node: str, fields: dict[str, str] | None = None, *,
                       action: str = "execute", sessionid: str | None = None, timeout: float = 60):
    """One command request; returns the reply iq (IqError on an error reply)."""
    return await client.plugin["xep_0050"].send_command(
        to,
        node,
        action=action,
        payload=None if fields is None else make_form(client, fields),
        sessionid=sessionid,
        timeout=timeout,
    )


async def run_command(client, to: str, node: str, fields: dict[str, str] | None = None, *,
                      action: str = "execute", sessionid: str | None = None,
                      timeout: float = 60, max_pages: int = 1000) -> Answer:
    """Runs a command to completion, following `next` pages with the session id."""
    started = time.perf_counter()
    iq = await send_command(client, to, node, fields, action=action, sessionid=sessionid, timeout=timeout)
    cmd = command_of(iq)
    sid = cmd.get("sessionid")
    assert sid, f"no sessionid: {iq}"
    if sessionid is not None:
        assert sid == sessionid, f"sessionid changed from {sessionid} to {sid}"
    answer = Answer(node=node, sessionid=sid)
    while True:
        assert cmd.get("node") == node, cmd.attrib
        answer.pages.append(check_page(cmd))
        status = cmd.get("status")
        if status == "completed":
            break
        assert status == "executing", f"status {status!r}"
        actions = cmd.find(f"{{{NS_COMMANDS}}}actions")
        assert actions is not None and actions.get("execute") == "next", \
            f"an executing page without <actions execute='next'>: {ET.tostring(cmd, encoding='unicode')[:500]}"
        assert actions.find(f"{{{NS_COMMANDS}}}next") is not None
        assert len(answer.pages) < max_pages, f"more than {max_pages} pages"
        iq = await send_command(client, to, node, action="next", sessionid=sid, timeout=timeout)
        cmd = command_of(iq)
        assert cmd.get("sessionid") == sid, cmd.attrib
    answer.seconds = time.perf_counter() - started
    return answer


def history_fields(series_identifier: str, start: str, end: str) -> dict[str, str]:
    return {"identifier": series_identifier, "start_time": start, "end_time": end}


def gen1_fields(start: date, end: date, usage_point: str = UP_ID, direction: str = "consumption") -> dict[str, str]:
    return {
        "usage_point_id": usage_point,
        "direction": direction,
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
    }


async def wait_for_records(client, to: str, series_identifier: str, start: str, end: str,
                           expected: int, timeout: float = 60.0) -> Answer:
    """Runs get_history until it returns at least `expected` records (the demo backfill is
    written to the store shortly after the component connects)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await run_command(client, to, "get_history", history_fields(series_identifier, start, end))
        if len(answer.records) >= expected or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.5)


async def admin_command(client, node: str, fields: dict[str, str], *,
                        to: str = "quoalise.localhost", timeout: float = 10) -> dict[str, list[str]]:
    """Runs an admin command on the service JID in one request; the result form's values."""
    iq = await send_command(client, to, node, fields, timeout=timeout)
    cmd = command_of(iq)
    assert cmd.get("status") == "completed", ET.tostring(cmd, encoding="unicode")
    form = cmd.find(f"{{{NS_DATA}}}x")
    assert form is not None
    return field_values(form)


async def command_nodes(client, to: str = "quoalise.localhost", timeout: float = 10) -> list[str]:
    """The nodes of the commands `client` is offered on `to` (XEP-0050 discovery)."""
    iq = await client.plugin["xep_0030"].get_items(jid=to, node=NS_COMMANDS, timeout=timeout)
    return [i.get("node") for i in iq.xml.iter("{http://jabber.org/protocol/disco#items}item")]
