#!/usr/bin/env python3
"""What a client sees of a quoalise-component: a small slixmpp client for the demo.

It logs in, walks the discovery tree (the component's domain → data sources → usage points →
series nodes) and prints it. Then it subscribes (XEP-0060) to the live series of every usage point
it sees and prints one line per notification until Ctrl-C:

    21:43:07  99999000000001  consumption/power/active/instant    412 W

The first line of each usage point is its last published item (marked "last published"). On
exit it unsubscribes.

    .venv/bin/python scripts/watch.py --jid demo@localhost --password PW \\
        --host 127.0.0.1 --port 5222 --component quoalise.localhost

The connection is plain TCP without TLS, meant for a local test server on the loopback
(scripts/demo.sh starts one). --once prints the tree and exits; --live-for SECONDS watches that
long and exits; --series PATH picks another series to watch.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import datetime
from xml.etree import ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"
NS_DATA = "jabber:x:data"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_DELAY = "urn:xmpp:delay"
NS_QUOALISE = "urn:quoalise:0"
NS_SENML = "urn:ietf:params:xml:ns:senml"
LIVE_SERIES = "consumption/power/active/instant"
TIMEOUT = 10


def identities(iq) -> list[tuple[str, str, str]]:
    return [
        (i.get("category", ""), i.get("type", ""), i.get("name") or "")
        for i in iq.xml.iter(f"{{{NS_INFO}}}identity")
    ]


def forms(iq) -> dict[str, dict[str, list[str]]]:
    result: dict[str, dict[str, list[str]]] = {}
    query = iq.xml.find(f"{{{NS_INFO}}}query")
    for x in query.findall(f"{{{NS_DATA}}}x") if query is not None else []:
        fields = {
            f.get("var"): [v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")]
            for f in x.findall(f"{{{NS_DATA}}}field")
        }
        result[fields.get("FORM_TYPE", [""])[0]] = fields
    return result


def items(iq) -> list[tuple[str, str, str]]:
    return [
        (i.get("jid", ""), i.get("node") or "", i.get("name") or "")
        for i in iq.xml.iter(f"{{{NS_ITEMS}}}item")
    ]


def first(fields: dict[str, list[str]], var: str, default: str = "?") -> str:
    values = fields.get(var) or [default]
    return values[0]


def senml_records(sensml: ET.Element) -> list[tuple[float, float | None, str]]:
    """(time, value, unit) of each record of a <sensml> pack, resolved per RFC 8428."""
    base_time, base_unit, base_value = 0.0, "", 0.0
    out = []
    for rec in sensml.findall(f"{{{NS_SENML}}}senml"):
        a = rec.attrib
        base_time = float(a.get("bt", base_time))
        base_unit = a.get("bu", base_unit)
        base_value = float(a.get("bv", base_value))
        value = base_value + float(a["v"]) if "v" in a else None
        out.append((base_time + float(a.get("t", "0")), value, a.get("u", base_unit)))
    return out


def readings(item: ET.Element) -> list[tuple[float, float | None, str]]:
    """The readings carried by a PubSub item (or any element holding <quoalise><data>)."""
    out = []
    for data in item.iter(f"{{{NS_QUOALISE}}}data"):
        for sensml in data.findall(f"{{{NS_SENML}}}sensml"):
            out.extend(senml_records(sensml))
    return out


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "(no value)"
    text = f"{value:.0f}" if value == int(value) else f"{value:g}"
    return f"{text:>6} {unit}".rstrip()


class Tree:
    """Prints a tree with box-drawing branches as it is walked."""

    def __init__(self, out=sys.stdout):
        self.out = out

    def line(self, prefix: str, last: bool, text: str) -> str:
        self.out.write(f"{prefix}{'└── ' if last else '├── '}{text}\n")
        self.out.flush()
        return prefix + ("    " if last else "│   ")


class Watcher:
    def __init__(self, args):
        self.args = args
        self.client = slixmpp.ClientXMPP(
            args.jid,
            args.password,
            plugin_config={
                "feature_mechanisms": {"unencrypted_plain": True, "unencrypted_scram": True}
            },
        )
        # Local demo server: plain TCP on the loopback, no certificate.
        self.client.enable_starttls = False
        self.client.enable_direct_tls = False
        self.client.enable_plaintext = True
        self.client.use_aiodns = False
        for plugin in ("xep_0030", "xep_0059", "xep_0060", "xep_0199"):
            self.client.register_plugin(plugin)
        self.client.add_event_handler("message", self.on_message)
        self.client.add_event_handler("pubsub_publish", self.on_publish)
        self.client.add_event_handler("pubsub_subscription", self.on_subscription)
        self.tree = Tree()
        # usage-point JID → its series nodes, as walked
        self.nodes: dict[str, list[str]] = {}
        # (usage-point JID, node, subid) of our subscriptions
        self.subscriptions: list[tuple[str, str, str | None]] = []

    @property
    def disco(self):
        return self.client.plugin["xep_0030"]

    async def login(self) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def done(result):
            if not ready.done():
                ready.set_result(result)

        self.client.add_event_handler("session_start", lambda _: done(None))
        self.client.add_event_handler("failed_auth", lambda _: done("authentication failed"))
        self.client.connect(self.args.host, self.args.port)
        try:
            error = await asyncio.wait_for(ready, TIMEOUT)
        except asyncio.TimeoutError:
            error = f"no session with {self.args.host}:{self.args.port} within {TIMEOUT} s"
        if error:
            raise SystemExit(f"watch: {self.args.jid}: {error}")

    async def info(self, jid: str, node: str | None = None):
        try:
            return await self.disco.get_info(jid=jid, node=node, timeout=TIMEOUT)
        except IqError as e:
            return e.iq["error"]["condition"]
        except IqTimeout:
            return "timeout"

    async def items_of(self, jid: str, node: str | None = None):
        try:
            iq = await self.disco.get_items(jid=jid, node=node, timeout=TIMEOUT)
            return items(iq)
        except IqError as e:
            return e.iq["error"]["condition"]
        except IqTimeout:
            return "timeout"

    async def walk(self) -> None:
        domain = self.args.component
        info = await self.info(domain)
        if isinstance(info, str):
            print(f"{domain}: {info} (is the component connected?)")
            return
        names = ", ".join(f"{n} ({c}/{t})" for c, t, n in identities(info)) or "?"
        print(f"{domain} — {names}")
        sources = await self.items_of(domain)
        if isinstance(sources, str):
            self.tree.line("", True, f"error: {sources}")
            return
        if not sources:
            self.tree.line("", True, "(no data sources)")
        for i, (jid, _, name) in enumerate(sources):
            await self.walk_source("", i == len(sources) - 1, jid, name)

    async def walk_source(self, prefix: str, last: bool, jid: str, name: str) -> None:
        info = await self.info(jid)
        form = forms(info).get("urn:quoalise:0#source", {}) if not isinstance(info, str) else {}
        text = f"{jid} — {name or first(form, 'title')}"
        if form:
            text += (
                f" [{first(form, 'kind')}]: {first(form, 'description', '')}"
                f" ({first(form, 'usage-points')} usage points visible to {self.client.boundjid.bare})"
            )
        prefix = self.tree.line(prefix, last, text)
        points = await self.items_of(jid)
        if isinstance(points, str):
            self.tree.line(prefix, True, f"error: {points}")
            return
        if not points:
            self.tree.line(prefix, True, "(no usage point visible: no grant?)")
        for i, (up, _, up_name) in enumerate(points):
            await self.walk_usage_point(prefix, i == len(points) - 1, up, up_name)

    async def walk_usage_point(self, prefix: str, last: bool, jid: str, name: str) -> None:
        info = await self.info(jid)
        form = forms(info).get("urn:quoalise:0#usage-point", {}) if not isinstance(info, str) else {}
        text = f"{jid} — {name}"
        if form:
            text += (
                f" ({first(form, 'device-type')}, {first(form, 'identifier-authority')}"
                f" {first(form, 'identifier-type')} {first(form, 'identifier-value')})"
            )
        prefix = self.tree.line(prefix, last, text)
        nodes = await self.items_of(jid)
        if isinstance(nodes, str):
            self.tree.line(prefix, True, f"error: {nodes}")
            return
        self.nodes[jid] = [node for _, node, _ in nodes if node]
        for i, (node_jid, node, node_name) in enumerate(nodes):
            meta_iq = await self.info(node_jid or jid, node)
            meta = (
                forms(meta_iq).get("http://jabber.org/protocol/pubsub#meta-data", {})
                if not isinstance(meta_iq, str)
                else {}
            )
            details = ""
            if meta:
                details = (
                    f" [{first(meta, 'quoalise#unit')}, {first(meta, 'quoalise#aggregation')}"
                    f" every {first(meta, 'quoalise#sampling-interval')}]"
                )
            title = node_name or first(meta, "pubsub#title", "")
            self.tree.line(prefix, i == len(nodes) - 1, f"{node} — {title}{details}")

    def on_message(self, msg) -> None:
        # Messages with a body (e.g. the note that a push subscription ended).
        print(f"[{msg['type'] or 'normal'}] from {msg['from']}: {msg['body']}", flush=True)

    def on_publish(self, msg) -> None:
        """One line per PubSub notification: time, usage point, series, value."""
        event = msg.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items")
        if event is None:
            return
        node = event.get("node") or "?"
        usage_point = msg["from"].user or str(msg["from"])
        delayed = msg.xml.find(f"{{{NS_DELAY}}}delay") is not None
        for item in event.findall(f"{{{NS_EVENT}}}item"):
            got = readings(item)
            if not got:
                continue
            when, value, unit = got[-1]
            text = f"{datetime.fromtimestamp(when):%H:%M:%S}  {usage_point}  {node}  {format_value(value, unit)}"
            if len(got) > 1:
                text += f"  (+{len(got) - 1} earlier readings)"
            if delayed:
                text += "  (last published)"
            print(text, flush=True)

    def on_subscription(self, msg) -> None:
        sub = msg["pubsub_event"]["subscription"]
        print(f"{msg['from']} {sub['node']}: subscription {sub['subscription']}", flush=True)

    async def subscribe_live(self) -> None:
        """Subscribes this session (full JID) to the watched series of each usage point seen."""
        pubsub = self.client.plugin["xep_0060"]
        wanted = [(up, self.args.series) for up, nodes in self.nodes.items() if self.args.series in nodes]
        if not wanted:
            print(f"no usage point with a series {self.args.series}: nothing to watch", flush=True)
            return
        until = "Ctrl-C to stop" if self.args.live_for is None else f"for {self.args.live_for:g} s"
        print(
            f"\nlive readings of {self.args.series} (XEP-0060), one line per notification ({until}):",
            flush=True,
        )
        for up, node in wanted:
            try:
                iq = await pubsub.subscribe(up, node, bare=False, timeout=TIMEOUT)
            except IqError as e:
                print(f"{up} {node}: cannot subscribe: {e.iq['error']['condition']} {e.iq['error']['text']}", flush=True)
                continue
            except IqTimeout:
                print(f"{up} {node}: no answer to subscribe", flush=True)
                continue
            sub = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}subscription")
            self.subscriptions.append((up, node, None if sub is None else sub.get("subid")))

    async def unsubscribe_all(self) -> None:
        pubsub = self.client.plugin["xep_0060"]
        for up, node, subid in self.subscriptions:
            try:
                await pubsub.unsubscribe(up, node, subid=subid, bare=False, timeout=5)
            except (IqError, IqTimeout):
                pass
        self.subscriptions.clear()

    async def run(self) -> None:
        await self.login()
        print(f"connected as {self.client.boundjid}\n", flush=True)
        await self.walk()
        if self.args.once:
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self.client.add_event_handler("disconnected", lambda _: stop.set())
        await self.subscribe_live()
        try:
            await asyncio.wait_for(stop.wait(), self.args.live_for)
        except asyncio.TimeoutError:
            pass
        if self.client.is_connected():
            await self.unsubscribe_all()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.client.disconnect(wait=1.0), 3.0)
        except Exception:
            pass


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jid", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5222)
    parser.add_argument("--component", default="quoalise.localhost")
    parser.add_argument("--once", action="store_true", help="print the tree and exit")
    parser.add_argument(
        "--live-for", type=float, metavar="SECONDS",
        help="watch live readings this long, then exit (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--series", default=LIVE_SERIES, metavar="PATH",
        help=f"the series node to watch on each usage point (default: {LIVE_SERIES})",
    )
    parser.add_argument("--debug", action="store_true", help="log the XML stream")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR)
    watcher = Watcher(args)
    try:
        await watcher.run()
    finally:
        await watcher.close()
    print("bye")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        print("bye")
        sys.exit(0)
