#!/usr/bin/env python3
"""What a client sees of a quoalise-component: a small slixmpp client for the demo.

It logs in, walks the discovery tree (the component's domain → data sources → usage points →
series nodes) and prints it, then stays connected and prints what the component sends it until
Ctrl-C.

    .venv/bin/python scripts/watch.py --jid demo@localhost --password PW \\
        --host 127.0.0.1 --port 5222 --component quoalise.localhost

The connection is plain TCP without TLS, meant for a local test server on the loopback
(scripts/demo.sh starts one). Use --once to print the tree and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"
NS_DATA = "jabber:x:data"
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
        for plugin in ("xep_0030", "xep_0059", "xep_0199"):
            self.client.register_plugin(plugin)
        self.client.add_event_handler("message", self.on_message)
        self.tree = Tree()

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
        # Whatever the component pushes (PubSub notifications, Quoalise messages) shows up here.
        payload = ", ".join(child.tag.split("}")[-1] for child in msg.xml) or "(empty)"
        body = msg["body"]
        print(f"[{msg['type'] or 'normal'}] from {msg['from']}: {body or payload}", flush=True)

    async def run(self) -> None:
        await self.login()
        print(f"connected as {self.client.boundjid}\n", flush=True)
        await self.walk()
        if self.args.once:
            return
        print("\nwatching for live readings (Ctrl-C to stop)...", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self.client.add_event_handler("disconnected", lambda _: stop.set())
        await stop.wait()

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
