"""Several component instances on one PostgreSQL store, as the e2e tests of failover run them:
an instance's config (with its `[cluster]` name and a short takeover), what its /healthz says,
and the check that a live feed lost nothing and got no reading published twice."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import datetime, timezone

from .commands import LIVE, history_fields, identifier, iso, run_command
from .harness import Component, component_config
from .live import Inbox
from .xmpp import SOURCE

TAKEOVER = 4  # [cluster] takeover of these instances, s: the lease lasts 3 s, tried every 1 s


def instance(server, workspace, name: str, store_url: str, web_port: int, *,
             xmpp_port: int | None = None, extra_xmpp: str = "") -> Component:
    """An instance named `name` (not started) of the demo source (one meter, live every second)
    on `store_url`, with /healthz and /metrics on `web_port`; `xmpp_port` (a GatedProxy) and
    `extra_xmpp` as for `component_config`."""
    text = component_config(
        server, workspace.mkdir(f"instance-{name}-config"), store_url=store_url, meters=1,
        history_days=1, web_port=web_port, extra_web="enabled = true", xmpp_port=xmpp_port,
        extra_xmpp=extra_xmpp, reconnect_max_delay="1s",
    )
    text += f'\n[cluster]\ninstance = "{name}"\ntakeover = "{TAKEOVER}s"\n'
    return Component(workspace.mkdir(f"instance-{name}"), text)


def healthz(port: int) -> dict:
    """The /healthz JSON, whatever its status (an instance without a session answers 503)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def metric(port: int, line_start: str) -> str | None:
    """The value of the first /metrics line starting with `line_start`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(line_start):
                return line.split()[-1]
    return None


def publication_seq(stanza_id: str | None) -> str | None:
    """The publication number in a notification id `p<subscription>.<seq>.<k>`."""
    m = re.fullmatch(r"p(\d+)\.(\d+)\.\d+", stanza_id or "")
    return m.group(2) if m else None


async def check_feed_complete(client, inbox: Inbox, timeout: float = 40) -> None:
    """Every live reading stored from the inbox's first notification to now arrives (waiting up
    to `timeout`: one claimed by a killed instance comes after its 30 s lease), and none under
    two publications (published twice)."""
    first = min(t for n in inbox.live() for t in n.times)
    end = int(time.time()) - 1
    answer = await run_command(client, SOURCE, "get_history", history_fields(
        identifier(LIVE), iso(datetime.fromtimestamp(first, timezone.utc)),
        iso(datetime.fromtimestamp(end, timezone.utc))))
    stored = {int(r.time) for r in answer.records}
    assert stored, "readings stored"

    def received(i: Inbox) -> set[int]:
        return {int(t) for n in i.live() for t in n.times}

    assert await inbox.wait(lambda i: stored <= received(i), timeout), (
        f"missing {sorted(stored - received(inbox))}")
    publications = defaultdict(set)
    for n in inbox.live():
        for t in n.times:
            publications[int(t)].add(publication_seq(n.id))
    twice = {t: seqs for t, seqs in publications.items() if len(seqs) > 1}
    assert not twice, f"readings published twice: {twice}"
