"""Live feeds as a client sees them: an inbox of every message a slixmpp client receives, and
readers for XEP-0060 notifications, generation-2 pushes and PubSub answers.

    <message type="headline" id="…" from="<usage point>@D" to="<as subscribed>">
      <event xmlns="http://jabber.org/protocol/pubsub#event">
        <items node="<series>"><item id="…">
          <quoalise xmlns="urn:quoalise:0"><data><meta/><sensml/></data></quoalise>
        </item></items>
      </event>
      [<delay xmlns="urn:xmpp:delay" stamp="…"/>]                 (the last item, on subscribe)
    </message>

    <message from="demo@D" to="<bare JID>"><quoalise xmlns="urn:quoalise:0"><data>…</data></quoalise></message>
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import time
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from .commands import NS_QUOALISE, NS_SENML, Record, resolve_senml

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_DELAY = "urn:xmpp:delay"

_inboxes = itertools.count(1)


@dataclass
class Notification:
    """One `<items>` event notification, checked for its shape."""

    received: float  # time.monotonic() at arrival
    id: str | None
    type: str | None
    sender: str
    to: str
    node: str
    item_id: str
    delay_stamp: str | None
    meta: ET.Element
    records: list[Record]

    @property
    def times(self) -> list[float]:
        return [r.time for r in self.records]


@dataclass
class Push:
    """One generation-2 push: a message carrying `<quoalise><data>`."""

    received: float
    id: str | None
    type: str | None
    sender: str
    to: str
    records: list[Record]


def quoalise_records(quoalise: ET.Element) -> tuple[ET.Element, list[Record]]:
    """The meta of the single `<data>` of a `<quoalise>` element, and its resolved SenML."""
    data = quoalise.findall(f"{{{NS_QUOALISE}}}data")
    assert len(data) == 1, f"{len(data)} <data/> in {ET.tostring(quoalise, encoding='unicode')[:400]}"
    tags = [c.tag for c in data[0]]
    assert tags == [f"{{{NS_QUOALISE}}}meta", f"{{{NS_SENML}}}sensml"], tags
    meta, sensml = list(data[0])
    return meta, resolve_senml(sensml)


def item_payload(item: ET.Element) -> tuple[ET.Element, list[Record]]:
    children = list(item)
    assert [c.tag for c in children] == [f"{{{NS_QUOALISE}}}quoalise"], \
        f"item {item.get('id')} holds {[c.tag for c in children]}"
    return quoalise_records(children[0])


def parse_notification(received: float, msg: ET.Element) -> Notification | None:
    event = msg.find(f"{{{NS_EVENT}}}event")
    if event is None or event.find(f"{{{NS_EVENT}}}items") is None:
        return None
    items = event.find(f"{{{NS_EVENT}}}items")
    entries = items.findall(f"{{{NS_EVENT}}}item")
    assert len(entries) == 1, f"{len(entries)} items in one notification: {ET.tostring(msg, encoding='unicode')[:600]}"
    meta, records = item_payload(entries[0])
    delay = msg.find(f"{{{NS_DELAY}}}delay")
    return Notification(
        received=received,
        id=msg.get("id"),
        type=msg.get("type"),
        sender=msg.get("from"),
        to=msg.get("to"),
        node=items.get("node"),
        item_id=entries[0].get("id"),
        delay_stamp=None if delay is None else delay.get("stamp"),
        meta=meta,
        records=records,
    )


def parse_push(received: float, msg: ET.Element) -> Push | None:
    quoalise = msg.find(f"{{{NS_QUOALISE}}}quoalise")
    if quoalise is None:
        return None
    _, records = quoalise_records(quoalise)
    return Push(received, msg.get("id"), msg.get("type"), msg.get("from"), msg.get("to"), records)


def subscription_ended(inbox: "Inbox", node: str) -> bool:
    """Whether the inbox holds the XEP-0060 notice that a subscription to `node` ended
    (`<subscription subscription='none'/>`)."""
    return any(
        m.find(f".//{{{NS_EVENT}}}subscription[@node='{node}'][@subscription='none']") is not None
        for _, m in inbox.messages
    )


class Inbox:
    """Every `<message>` a client receives from now on, with its arrival time."""

    def __init__(self, client):
        self.client = client
        self.messages: list[tuple[float, ET.Element]] = []
        self.name = f"e2e inbox {next(_inboxes)}"
        client.register_handler(
            Callback(self.name, MatchXPath(f"{{{client.default_ns}}}message"), self._on_message)
        )

    def _on_message(self, stanza) -> None:
        self.messages.append((time.monotonic(), copy.deepcopy(stanza.xml)))

    def close(self) -> None:
        self.client.remove_handler(self.name)

    def notifications(self, since: float = 0.0) -> list[Notification]:
        out = []
        for received, msg in self.messages:
            if received >= since:
                n = parse_notification(received, msg)
                if n is not None:
                    out.append(n)
        return out

    def live(self, since: float = 0.0) -> list[Notification]:
        """Notifications of new items (not the delayed last item sent on subscribe)."""
        return [n for n in self.notifications(since) if n.delay_stamp is None]

    def pushes(self, since: float = 0.0) -> list[Push]:
        out = []
        for received, msg in self.messages:
            if received >= since:
                p = parse_push(received, msg)
                if p is not None:
                    out.append(p)
        return out

    def from_component(self, domain: str, since: float = 0.0) -> list[ET.Element]:
        return [
            msg for received, msg in self.messages
            if received >= since and (msg.get("from") or "").endswith(domain)
        ]

    async def wait(self, predicate, timeout: float, interval: float = 0.05) -> bool:
        """Waits until `predicate(self)` holds; returns whether it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            await asyncio.sleep(interval)
        return bool(predicate(self))


# --------------------------------------------------------------------------------------------
# PubSub answers


def subscription_of(iq) -> ET.Element:
    sub = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}subscription")
    assert sub is not None, f"no <subscription/> in {iq}"
    return sub


def subscriptions_of(iq) -> list[dict[str, str | None]]:
    subs = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}subscriptions")
    assert subs is not None, f"no <subscriptions/> in {iq}"
    return [dict(s.attrib) for s in subs.findall(f"{{{NS_PUBSUB}}}subscription")]


def items_of(iq) -> tuple[str, list[ET.Element]]:
    items = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items")
    assert items is not None, f"no <items/> in {iq}"
    return items.get("node"), items.findall(f"{{{NS_PUBSUB}}}item")


def pubsub_condition(error: IqError) -> str | None:
    """The application condition (pubsub#errors) of an error reply, if any."""
    for el in error.iq.xml.iter():
        if el.tag.startswith(f"{{{NS_ERRORS}}}"):
            return el.tag.split("}", 1)[1]
    return None


async def expect_pubsub_error(awaitable, condition: str, app: str | None) -> IqError:
    """Awaits an iq that must fail with `condition` and the pubsub#errors element `app` (None:
    none at all)."""
    try:
        result = await awaitable
    except IqError as e:
        got = (e.iq["error"]["condition"], pubsub_condition(e))
        assert got == (condition, app), f"expected {(condition, app)}, got {got}: {e.iq}"
        return e
    raise AssertionError(f"expected an error {condition}/{app}, got a result: {result}")


async def unsubscribe_everything(client, usage_points: list[str], push_source: str | None = None) -> None:
    """Ends every PubSub subscription of the client's user on these usage points (and with
    `push_source`, its generation-2 pushes), so a shared component stays quiet for later tests."""
    pubsub = client.plugin["xep_0060"]
    for up in usage_points:
        with contextlib.suppress(Exception):
            iq = await pubsub.get_subscriptions(up, timeout=10)
            for sub in subscriptions_of(iq):
                with contextlib.suppress(IqError):
                    await pubsub.unsubscribe(
                        up, sub["node"], subid=sub.get("subid"), subscribee=sub["jid"], timeout=10
                    )
    if push_source:
        from .commands import send_command

        for up in usage_points:
            with contextlib.suppress(Exception):
                await send_command(
                    client, push_source, "unsubscribe", {"identifier": f"urn:dev:prm:{up.split('@')[0]}"},
                    timeout=10,
                )
