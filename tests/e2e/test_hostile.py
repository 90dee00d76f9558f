"""Hostile input from ordinary accounts never costs the link (the XEP-0114 session).

One row of the abuse table per test: stanzas nested deeper than `[xmpp] max_depth` (default 64),
or larger than `[xmpp] max_stanza_size`; huge names and values; `xml:` attributes and reserved
namespace bindings; a loop mixing all of them; floods of requests sent without waiting; one user
subscribing thousands of her own full JIDs. In every test the component must stay alive: the
process runs, its log says "xmpp session established" exactly once (the link was never lost and
re-established), and carol — another user, on her own connection and thread — gets an answer to
every XEP-0199 ping she sends to the component every 0.5 s all along, each within 2 s.

What is specified for each input:

- deeper than max_depth: an iq get/set gets `modify`/`bad-request` from the component, a
  message or presence is dropped silently; the stream goes on. Larger than max_stanza_size:
  refused likewise.
- valid XML, however odd, gets its normal answer: a 9 KiB or 200 KiB `node` on disco#info gets
  what a short unknown node gets; an unknown 9 KiB or 200 KiB element name as iq payload gets
  `service-unavailable`; `xml:foo` on the iq or its payload is ignored.
- floods: every request is answered, by its result or by `wait` + `resource-constraint` (more
  than `[limits] requests_in_flight` = 8 at once for that requester, or too many open command
  sessions, or over `requests_per_second` = 50 with `requests_burst` = 200; history commands
  cost `history_cost` = 5; the error's text says which); never silence.
- the 17th subscription of one requester on one node: `wait` + `policy-violation` +
  `<too-many-subscriptions xmlns='http://jabber.org/protocol/pubsub#errors'/>`.

What the servers themselves do with these inputs (Prosody 0.12.3, ejabberd 23.01, with the
test configurations prosody/test.cfg.lua.in and ejabberd/test.yml.in):

- A prefix bound to a reserved namespace name (`xmlns:foo='http://www.w3.org/XML/1998/namespace'`
  or `…/2000/xmlns/`) is refused by both: the client's stream ends with `not-well-formed`; the
  stanza never reaches the component (see SERVER_REFUSES).
- Prosody forwards `xml:foo='2'` to the component re-serialised as
  `xmlns:ns1='http://www.w3.org/XML/1998/namespace' ns1:foo='2'`, that is a prefix other than
  `xml` bound to the XML namespace, which Namespaces in XML forbids. The component must read it
  as the `xml:` attribute it was (a normal answer), since a user cannot tell.
- Size: Prosody refuses c2s stanzas over 256 KiB (`c2s_stanza_size_limit` default: stream error
  `policy-violation`), so a 200 KiB attribute goes through and a 600 KiB one is refused by
  Prosody; the ejabberd template allows 1 MiB (`max_stanza_size: 1048576`), so a 600 KiB stanza
  reaches the component, over its 512 KiB `max_stanza_size`.
- Depth: Prosody forwards 30,000 levels. ejabberd 23.01 (fxml) segfaults — the whole node dies,
  whatever the stanza's destination — on a stanza between 3,000 and 4,000 levels deep from any
  client; so on ejabberd the deepest row is 3,000 levels (DEEPEST).
- Rate: neither test server throttles clients (no mod_limits in the Prosody template; ejabberd's
  c2s listener has `shaper: none` and no `c2s_shaper` rule): 5,000 pipelined disco#info to the
  server's own domain are all answered in ~2-3 s on both, so the floods below measure the
  component, not the server. ejabberd's `max_fsm_queue` (10,000 by default) bounds what it queues
  for a component that stops reading: the component must keep reading under a flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from quoalise_testkit.abuse import (
    LIMIT_ERRORS,
    NS_COMMANDS,
    NS_PUBSUB_ERRORS,
    TOO_MANY_SUBSCRIPTIONS,
    PingMonitor,
    Replies,
    app_condition,
    describe,
    disco_info,
    execute,
    merge,
    nested,
    outcome,
    send_pipelined,
    subscribe,
    tally,
    wait_all,
)
from quoalise_testkit.commands import LIVE
from quoalise_testkit.harness import (
    ESTABLISHED,
    PASSWORD,
    HarnessError,
    IqError,
    IqTimeout,
    connected,
    start_component,
    start_server,
)
from quoalise_testkit.live import subscriptions_of, unsubscribe_everything
from quoalise_testkit.xmpp import DOMAIN, SOURCE, UP1

ATTACKER = "bob"  # no grant
FLOODERS = tuple(f"flood{i:02d}" for i in range(20))
EXTRA_ACCOUNTS = ("mallory", "trudy", *FLOODERS)

KIB = 1024
MAX_STANZA_SIZE = 524288  # the component's default [xmpp] max_stanza_size
SUBSCRIPTIONS_PER_NODE = 16  # [limits] subscriptions_per_node default

# The deepest stanza each server forwards (module doc: ejabberd 23.01 dies between 3,000 and
# 4,000 levels, whoever the stanza is for).
DEEPEST = {"prosody": 30_000, "ejabberd": 3_000}

# Inputs a server refuses itself, closing the sender's stream with this condition (module doc).
SERVER_REFUSES = {
    "prosody": {
        "reserved-prefix": "not-well-formed",
        "xmlns-prefix": "not-well-formed",
        "oversized-600k": "policy-violation",
    },
    "ejabberd": {
        "reserved-prefix": "not-well-formed",
        "xmlns-prefix": "not-well-formed",
    },
}

UNKNOWN_NODE = "e2e-no-such-node"
REPLY_TIMEOUT = 10.0
SILENCE = 2.0  # a message or presence dropped silently: no reply within this long
AFTERMATH = 2.0  # carol goes on pinging this long after an attack (a late crash shows)


# --------------------------------------------------------------------------------------------
# Fixtures: a component of this module's own, replaced when a test broke it


@pytest.fixture(scope="module")
def server(request, workspace):
    """Overrides the shared session server: a private one for this module (conftest still runs
    every test on both kinds), with the flooders' accounts, and Prosody logging at info (the
    shared one logs every stanza at debug: under 15,000 stanzas that logging would be measured,
    and would delay carol's pings, not the component)."""
    kind = request.param
    try:
        srv = start_server(kind, workspace.mkdir(f"{kind}-hostile"), quiet=True)
        with ThreadPoolExecutor(4) as pool:  # ejabberdctl starts an Erlang node per call
            list(pool.map(lambda user: srv.create_account(user, PASSWORD), EXTRA_ACCOUNTS))
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    yield srv
    srv.stop()


async def _answers_ping(server) -> bool:
    """Whether the component answers a ping now (a wedged link answers nothing)."""
    try:
        async with connected(server, "carol") as carol:
            await carol.plugin["xep_0199"].send_ping(DOMAIN, timeout=5)
    except (IqError, IqTimeout):
        return False
    return True


class _Components:
    def __init__(self, server, workspace):
        self.server = server
        self.workspace = workspace
        self.current = None
        self.started: list = []

    def healthy(self):
        """This module's component, a new one if the last test killed it or cost its link, so
        that each row shows its own outcome."""
        comp = self.current
        if comp is None or not comp.running() or comp.count(ESTABLISHED) != 1 \
                or not asyncio.run(_answers_ping(self.server)):
            if comp is not None:
                comp.stop()
            try:
                comp = start_component(
                    self.server, self.workspace.mkdir(f"component-hostile-{self.server.kind}")
                )
            except HarnessError as e:
                pytest.fail(str(e), pytrace=False)
            self.current = comp
            self.started.append(comp)
        return comp


@pytest.fixture(scope="module")
def _components(server, workspace):
    holder = _Components(server, workspace)
    yield holder
    for comp in holder.started:
        comp.stop()


@pytest.fixture
def component(server, _components):
    """Overrides the shared session component: these tests try to break it."""
    assert server.running(), f"{server.kind} is not running"
    return _components.healthy()


def assert_alive(component) -> None:
    assert component.running(), f"the component died (status {component.proc.returncode})"
    established = component.count(ESTABLISHED)
    assert established == 1, f"the link was re-established {established - 1} time(s)"


# --------------------------------------------------------------------------------------------
# Inputs and what each must get


@dataclass(frozen=True)
class Case:
    """One hostile input. `build(id)` returns the raw stanza. `expect`:
    ("error", type, condition) — that error from the component;
    ("unknown-node",) — what a short unknown disco#info node gets;
    ("result",) — a result (the odd part is ignored);
    ("silence",) — nothing comes back (a message or presence dropped)."""

    name: str
    build: object
    expect: tuple


def _iq(iq_id: str, payload: str, extra: str = "") -> str:
    return f"<iq type='get' id='{iq_id}' to='{DOMAIN}'{extra}>{payload}</iq>"


def deep_stanza(kind: str, iq_id: str, depth: int) -> str:
    """A stanza `depth` levels deep, counting the stanza element itself as level 1."""
    payload = f"<deep xmlns='urn:e2e:deep'>{nested(depth - 2)}</deep>"
    if kind == "iq":
        return _iq(iq_id, payload)
    if kind == "message":
        return f"<message id='{iq_id}' to='{DOMAIN}'><body>deep</body>{payload}</message>"
    return f"<presence id='{iq_id}' to='{DOMAIN}'>{payload}</presence>"


DEEP_EXPECT = {"iq": ("error", "modify", "bad-request"), "message": ("silence",), "presence": ("silence",)}

NS_XML = "http://www.w3.org/XML/1998/namespace"
NS_XMLNS = "http://www.w3.org/2000/xmlns/"
INFO = "http://jabber.org/protocol/disco#info"


def long_cases() -> list[Case]:
    cases = []
    for label, size in (("9k", 9 * KIB), ("200k", 200 * KIB)):
        cases += [
            Case(f"node-{label}", lambda i, s=size: disco_info(i, node="n" * s), ("unknown-node",)),
            Case(f"element-name-{label}", lambda i, s=size: _iq(i, f"<{'e' * s} xmlns='urn:e2e'/>"),
                 ("error", "cancel", "service-unavailable")),
            Case(f"attribute-name-{label}", lambda i, s=size: disco_info(i, extra=f" {'a' * s}='1'"),
                 ("result",)),
        ]
    cases += [
        Case("xml-attribute-on-iq", lambda i: _iq(i, f"<query xmlns='{INFO}'/>", " xml:foo='2'"), ("result",)),
        Case("xml-attribute-on-payload", lambda i: disco_info(i, extra=" xml:foo='2'"), ("result",)),
        # Declaring the xml prefix to its own name is allowed (Namespaces in XML 1.0, §3).
        Case("xml-prefix-declared", lambda i: disco_info(i, extra=f" xmlns:xml='{NS_XML}' xml:lang='fr'"),
             ("result",)),
        Case("reserved-prefix", lambda i: disco_info(i, extra=f" xmlns:foo='{NS_XML}' foo:bar='1'"),
             ("error", "modify", "bad-request")),
        Case("xmlns-prefix", lambda i: disco_info(i, extra=f" xmlns:foo='{NS_XMLNS}'"),
             ("error", "modify", "bad-request")),
        Case("oversized-600k", lambda i: disco_info(i, node="n" * (MAX_STANZA_SIZE + 76 * KIB)),
             ("error", "modify", "bad-request")),
        Case("message-element-name-9k",
             lambda i: f"<message id='{i}' to='{DOMAIN}'><{'e' * 9 * KIB} xmlns='urn:e2e'/></message>",
             ("silence",)),
        Case("presence-attribute-value-200k",
             lambda i: f"<presence id='{i}' to='{DOMAIN}'><x xmlns='urn:e2e' v='{'v' * 200 * KIB}'/></presence>",
             ("silence",)),
    ]
    return cases


LONG_CASES = {c.name: c for c in long_cases()}


def deep_case(kind: str, depth: int) -> Case:
    return Case(f"deep-{kind}-{depth}", lambda i: deep_stanza(kind, i, depth), DEEP_EXPECT[kind])


async def unknown_node_outcome(server) -> tuple[str, str]:
    """What the component answers a disco#info on a short unknown node of its domain."""
    async with connected(server, "alice") as alice:
        replies = Replies(alice, "short-")
        alice.send_raw(disco_info("short-1", node=UNKNOWN_NODE))
        reply = await replies.one("short-1", REPLY_TIMEOUT)
        assert reply is not None, "no answer to a disco#info on a short unknown node"
        return outcome(reply)


async def run_case(server, case: Case, iq_id: str, unknown: tuple[str, str]) -> list[str]:
    """Sends one hostile input from a fresh attacker session; returns what went wrong (nothing:
    the input got exactly its specified treatment and the attacker's stream went on)."""
    problems = []
    refused_by = SERVER_REFUSES[server.kind].get(case.name)
    async with connected(server, ATTACKER) as bob:
        replies = Replies(bob, iq_id)
        bob.send_raw(case.build(iq_id))
        if refused_by is not None:
            # The server refuses this input itself: its stream error, then the end of the stream.
            ended = await replies.stream_end(REPLY_TIMEOUT)
            if not ended or replies.stream_errors != [refused_by]:
                problems.append(f"{case.name}: expected {server.kind} to close the stream with "
                                f"{refused_by}, got {replies.stream_errors}, ended={ended}")
            if iq_id in replies.by_id:
                problems.append(f"{case.name}: unexpected reply {describe(replies.by_id[iq_id])}")
            return problems
        if case.expect == ("silence",):
            await asyncio.sleep(SILENCE)
            if iq_id in replies.by_id:
                problems.append(f"{case.name}: expected no reply, got {describe(replies.by_id[iq_id])}")
        else:
            reply = await replies.one(iq_id, REPLY_TIMEOUT)
            if reply is None:
                problems.append(f"{case.name}: no answer within {REPLY_TIMEOUT:.0f} s")
            else:
                got = outcome(reply)
                want = {
                    ("unknown-node",): unknown,
                    ("result",): ("result", ""),
                }.get(case.expect, case.expect[1:])
                if got != want or reply["from"] != DOMAIN:
                    problems.append(f"{case.name}: expected {want} from {DOMAIN}, got {got} from "
                                    f"{reply['from']}: {describe(reply)}")
        # The attacker's own stream goes on: a plain request right after is answered.
        follow = f"{iq_id}-after"
        bob.send_raw(disco_info(follow))
        reply = await replies.one(follow, REPLY_TIMEOUT)
        if reply is None or outcome(reply) != ("result", ""):
            problems.append(f"{case.name}: the request after it got {reply and outcome(reply)}")
        if replies.stream_errors:
            problems.append(f"{case.name}: stream errors {replies.stream_errors}")
    return problems


async def attack(server, component, cases: list[Case]) -> None:
    """Each case in turn while carol pings; then: alive, every case as specified, every ping."""
    unknown = await unknown_node_outcome(server)
    assert unknown[0] != "result", f"a short unknown node got {unknown}"
    problems = []
    with PingMonitor(server) as pings:
        for n, case in enumerate(cases):
            problems += await run_case(server, case, f"hostile{n}-", unknown)
        await asyncio.sleep(AFTERMATH)
    assert_alive(component)
    assert not problems, "\n".join(problems)
    pings.check()


# --------------------------------------------------------------------------------------------
# The rows


@pytest.mark.parametrize("kind", ["iq", "message", "presence"])
@pytest.mark.parametrize("depth", ["600", "deepest"])
async def test_deep_stanza(server, component, kind, depth):
    levels = 600 if depth == "600" else DEEPEST[server.kind]
    await attack(server, component, [deep_case(kind, levels)])


async def test_depth_within_limit_is_served(server, component):
    """48 levels (under the default max_depth of 64, however the stream element is counted):
    the unknown payload gets the ordinary service-unavailable, not the depth refusal."""
    case = Case("deep-iq-48", lambda i: deep_stanza("iq", i, 48), ("error", "cancel", "service-unavailable"))
    await attack(server, component, [case])


@pytest.mark.parametrize("case", list(LONG_CASES))
async def test_long_names_and_values(server, component, case):
    await attack(server, component, [LONG_CASES[case]])


async def test_poison_loop(server, component):
    """Every 2 s for 30 s, one of the inputs above (each from a new session of bob's, the
    inputs mixed), while carol pings: every input treated as specified, every ping < 2 s."""
    mix = [
        deep_case("iq", 600),
        LONG_CASES["node-9k"],
        deep_case("message", DEEPEST[server.kind]),
        LONG_CASES["xml-attribute-on-iq"],
        LONG_CASES["element-name-9k"],
        deep_case("presence", 600),
        LONG_CASES["reserved-prefix"],
        LONG_CASES["node-200k"],
        deep_case("iq", DEEPEST[server.kind]),
        LONG_CASES["attribute-name-9k"],
        LONG_CASES["xml-attribute-on-payload"],
        LONG_CASES["oversized-600k"],
        deep_case("presence", DEEPEST[server.kind]),
        LONG_CASES["message-element-name-9k"],
        LONG_CASES["element-name-200k"],
    ]
    unknown = await unknown_node_outcome(server)
    started = time.monotonic()
    with PingMonitor(server) as pings:
        tasks = []
        for n, case in enumerate(mix):
            await asyncio.sleep(max(0.0, started + 2.0 * n - time.monotonic()))
            tasks.append(asyncio.ensure_future(run_case(server, case, f"poison{n}-", unknown)))
        problems = [p for ps in await asyncio.gather(*tasks) for p in ps]
    assert_alive(component)
    assert not problems, "\n".join(problems)
    pings.check(min_pings=50)


# --------------------------------------------------------------------------------------------
# Floods

FLOOD_TIMEOUT = 120.0  # for the lot
STALL = 20.0  # no reply at all for this long: the link is wedged, stop waiting


async def flood(clients_and_stanzas, prefix_of) -> list:
    """Sends every client's stanzas at once, without waiting; returns one Tally per client."""
    collectors = [Replies(client, prefix_of(n)) for n, (client, _) in enumerate(clients_and_stanzas)]
    for client, stanzas in clients_and_stanzas:
        send_pipelined(client, [s for _, s in stanzas])
    expected = sum(len(stanzas) for _, stanzas in clients_and_stanzas)
    await wait_all(collectors, expected, timeout=FLOOD_TIMEOUT, stall=STALL)
    return [tally(c, [i for i, _ in stanzas]) for c, (_, stanzas) in zip(collectors, clients_and_stanzas)]


def check_flood(tallies, allowed, what: str) -> None:
    total = merge(tallies)
    assert len(total.missing) == 0, f"{what}: {total}"
    assert total.duplicates == 0, f"{what}: {total}"
    assert not total.unexpected(allowed), f"{what}: unexpected answers {total.unexpected(allowed)}; {total}"
    served = [t.results for t in tallies]
    assert min(served) >= 1, f"{what}: a requester got no result at all ({served}); {total}"


async def expect_served(client, make, timeout: float = 15.0):
    """Once the flood is over, a request of the same requester gets its result again (its
    budget refills): retried while refused by a limit, `timeout` at most."""
    replies = Replies(client, "later-")
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        n += 1
        iq_id = f"later-{n}"
        client.send_raw(make(iq_id))
        reply = await replies.one(iq_id, REPLY_TIMEOUT)
        assert reply is not None, f"no answer to {iq_id} after the flood"
        if outcome(reply) == ("result", ""):
            return reply
        assert outcome(reply) in LIMIT_ERRORS, f"{iq_id}: {outcome(reply)}"
        assert time.monotonic() < deadline, f"still refused {timeout:.0f} s after the flood: {outcome(reply)}"
        await asyncio.sleep(1.0)


# 20 accounts × 500 pipelined requests saturate the server itself (one core routing some
# 20,000 stanzas, and the answers back). Measured on Prosody with a debug build: carol's
# pings spent at most 0.7 s inside the component (read to written) but up to 2.7 s end to
# end, the rest queued in the server. The bound for that phase is therefore the server's;
# what it guards is that she is answered, not refused, dropped or starved.
SATURATED_SERVER_LIMIT = 5.0
# How long carol keeps pinging after a flood's last answer (at 0.5 s a ping, enough for the four
# a PingMonitor wants however fast the server took the flood).
DRAIN_PINGS = 2.5


async def test_flood_disco_info(server, component):
    """mallory sends 5,000 disco#info without waiting; then 20 users send 500 each, all at
    once. Every request is answered (result or a limit error), within 120 s for the lot;
    carol's pings are answered all along."""
    async with connected(server, "mallory") as mallory:
        with PingMonitor(server) as pings:
            one = await flood(
                [(mallory, [(f"mal-{i}", disco_info(f"mal-{i}")) for i in range(5000)])], lambda n: "mal-"
            )
            check_flood(one, LIMIT_ERRORS, "one client × 5,000 disco#info")
            # ejabberd can take the flood in under 2 s: carol keeps pinging a little longer,
            # while the last answers drain, so that every phase has pings enough to judge.
            await asyncio.sleep(DRAIN_PINGS)
        pings.check()
        with PingMonitor(server, limit=SATURATED_SERVER_LIMIT) as pings:
            async with contextlib.AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(connected(server, user)) for user in FLOODERS]
                many = await flood(
                    [(c, [(f"fl{n}-{i}", disco_info(f"fl{n}-{i}")) for i in range(500)])
                     for n, c in enumerate(clients)],
                    lambda n: f"fl{n}-",
                )
                check_flood(many, LIMIT_ERRORS, "20 clients × 500 disco#info")
            await asyncio.sleep(DRAIN_PINGS)
        pings.check()
        await expect_served(mallory, lambda i: disco_info(i))
    assert_alive(component)


async def test_flood_pipelined_commands(server, component):
    """trudy sends 5,000 `execute` of get_history (multi-stage: without a form it answers the
    form and opens a session) without waiting: every one is answered."""
    # What one execute gets: the first stage of a multi-stage command.
    async with connected(server, "alice") as alice:
        replies = Replies(alice, "probe-")
        alice.send_raw(execute("probe-1", SOURCE, "get_history"))
        reply = await replies.one("probe-1", REPLY_TIMEOUT)
        assert reply is not None and outcome(reply) == ("result", ""), reply and describe(reply)
        command = reply.xml.find(f"{{{NS_COMMANDS}}}command")
        assert command is not None and command.get("status") == "executing", describe(reply)
        assert command.get("sessionid"), describe(reply)
    with PingMonitor(server) as pings:
        async with connected(server, "trudy") as trudy:
            tallies = await flood(
                [(trudy, [(f"cmd-{i}", execute(f"cmd-{i}", SOURCE, "get_history")) for i in range(5000)])],
                lambda n: "cmd-",
            )
            check_flood(tallies, LIMIT_ERRORS, "5,000 pipelined get_history execute")
            await expect_served(trudy, lambda i: disco_info(i))
        # The flood is refused fast: carol keeps pinging a little longer, so that her pings
        # cover the aftermath too (and are enough to judge).
        await asyncio.sleep(2.0)
    assert_alive(component)
    pings.check()


async def test_subscribe_thousands_of_own_full_jids(server, component):
    """alice (granted) subscribes 3,000 full JIDs of her own to one live node, without waiting:
    all answered, 16 accepted, the others refused (the 17th and later with
    too-many-subscriptions, some maybe by the rate limits); afterwards the link still answers
    and she holds exactly 16 subscriptions there."""
    with PingMonitor(server) as pings:
        async with connected(server, "alice") as alice:
            bare = alice.boundjid.bare
            stanzas = [(f"sub-{i}", subscribe(f"sub-{i}", UP1, LIVE, f"{bare}/e2e-{i:04d}")) for i in range(3000)]
            collector = Replies(alice, "sub-")
            send_pipelined(alice, [s for _, s in stanzas])
            await wait_all([collector], len(stanzas), timeout=FLOOD_TIMEOUT, stall=STALL)
            result = tally(collector, [i for i, _ in stanzas])
            try:
                assert len(result.missing) == 0 and result.duplicates == 0, str(result)
                too_many = [
                    s for s in collector.by_id.values()
                    if app_condition(s, NS_PUBSUB_ERRORS) == "too-many-subscriptions"
                ]
                assert result.results == SUBSCRIPTIONS_PER_NODE, str(result)
                assert not result.unexpected(LIMIT_ERRORS | {TOO_MANY_SUBSCRIPTIONS}), str(result)
                assert too_many, f"no too-many-subscriptions error: {result}"
                for s in too_many:
                    assert outcome(s) == TOO_MANY_SUBSCRIPTIONS, describe(s)
                # Listed afterwards: exactly the 16 accepted.
                listed = await expect_served(
                    alice,
                    lambda i: f"<iq type='get' id='{i}' to='{UP1}'><pubsub xmlns='http://jabber.org/"
                              f"protocol/pubsub'><subscriptions node='{LIVE}'/></pubsub></iq>",
                )
                mine = [s for s in subscriptions_of(listed) if s.get("node") == LIVE]
                assert len(mine) == SUBSCRIPTIONS_PER_NODE, mine
            finally:
                await asyncio.sleep(1.0)
                await unsubscribe_everything(alice, [UP1])
    assert_alive(component)
    pings.check()
