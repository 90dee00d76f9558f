"""XEP-0030 discovery, XEP-0199 ping, XEP-0092 version, as a client sees them through the server."""

import pytest

from quoalise_testkit.harness import connected
from quoalise_testkit.xmpp import (
    DOMAIN,
    SERIES,
    SOURCE,
    UP1,
    USAGE_POINTS,
    expect_error,
    features,
    forms,
    identities,
    items,
    rsm_set,
)

TIMEOUT = 10


def disco(client):
    return client.plugin["xep_0030"]


async def test_domain_info(server, component):
    async with connected(server, "alice") as alice:
        iq = await disco(alice).get_info(jid=DOMAIN, timeout=TIMEOUT)
    assert ("component", "generic", "Quoalise") in identities(iq)
    for feature in [
        "urn:quoalise:0",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "http://jabber.org/protocol/commands",
        "urn:xmpp:ping",
        "jabber:iq:version",
    ]:
        assert feature in features(iq), f"missing feature {feature}: {sorted(features(iq))}"


async def test_domain_items(server, component):
    async with connected(server, "alice") as alice:
        iq = await disco(alice).get_items(jid=DOMAIN, timeout=TIMEOUT)
    assert (SOURCE, None, "Demo meters") in items(iq), items(iq)


@pytest.mark.parametrize("user, visible", [("alice", "3"), ("bob", "0"), ("admin", "3")])
async def test_source_info(server, component, user, visible):
    async with connected(server, user) as client:
        iq = await disco(client).get_info(jid=SOURCE, timeout=TIMEOUT)
    assert ("automation", "command-list", None) in {(c, t, None) for c, t, _ in identities(iq)}
    form = forms(iq).get("urn:quoalise:0#source")
    assert form is not None, f"no urn:quoalise:0#source form: {iq}"
    assert form["kind"] == ["demo"]
    assert form["title"] == ["Demo meters"]
    assert form["description"] == ["Simulated Linky-like electricity meters"]
    assert form["usage-points"] == [visible]


async def test_source_items_alice(server, component):
    expected = [(f"{up}@{DOMAIN}", None, f"Demo meter {n}") for n, up in enumerate(USAGE_POINTS, 1)]
    async with connected(server, "alice") as alice:
        iq = await disco(alice).get_items(jid=SOURCE, timeout=TIMEOUT)
        assert sorted(items(iq)) == expected

        # XEP-0059: two by two.
        page = alice.make_iq_get(ito=SOURCE)
        page["disco_items"]["rsm"]["max"] = "2"
        first = await page.send(timeout=TIMEOUT)
        assert items(first) == expected[:2]
        rsm = rsm_set(first)
        assert rsm["count"] == "3"
        assert rsm["first"] and rsm["last"]

        page = alice.make_iq_get(ito=SOURCE)
        page["disco_items"]["rsm"]["max"] = "2"
        page["disco_items"]["rsm"]["after"] = rsm["last"]
        second = await page.send(timeout=TIMEOUT)
        assert items(second) == expected[2:]


async def test_source_items_bob_sees_nothing(server, component):
    async with connected(server, "bob") as bob:
        iq = await disco(bob).get_items(jid=SOURCE, timeout=TIMEOUT)
    assert items(iq) == []


async def test_source_items_admin_sees_all(server, component):
    async with connected(server, "admin") as admin:
        iq = await disco(admin).get_items(jid=SOURCE, timeout=TIMEOUT)
    assert sorted(jid for jid, _, _ in items(iq)) == [f"{up}@{DOMAIN}" for up in USAGE_POINTS]


@pytest.mark.parametrize("resource", ["", "/proxy"])
async def test_usage_point_info(server, component, resource):
    async with connected(server, "alice") as alice:
        iq = await disco(alice).get_info(jid=UP1 + resource, timeout=TIMEOUT)
    kinds = {(c, t) for c, t, _ in identities(iq)}
    assert ("pubsub", "service") in kinds, kinds
    assert ("automation", "command-list") in kinds, kinds
    assert "http://jabber.org/protocol/pubsub" in features(iq)
    form = forms(iq).get("urn:quoalise:0#usage-point")
    assert form is not None, f"no urn:quoalise:0#usage-point form: {iq}"
    assert form["source"] == ["demo"]
    assert form["device-type"] == ["electricity-meter"]
    assert form["identifier-authority"] == ["demo"]
    assert form["identifier-type"] == ["prm"]
    assert form["identifier-value"] == ["99999000000001"]
    for path in SERIES:
        assert path in form["series"], form["series"]


async def test_usage_point_items(server, component):
    async with connected(server, "alice") as alice:
        iq = await disco(alice).get_items(jid=UP1, timeout=TIMEOUT)
    got = items(iq)
    assert sorted(node for _, node, _ in got) == SERIES
    for jid, node, name in got:
        assert jid == UP1
        assert name, f"node {node} has no name"


async def test_series_node_info(server, component):
    async with connected(server, "alice") as alice:
        iq = await disco(alice).get_info(jid=UP1, node="consumption/power/active/raw", timeout=TIMEOUT)
        assert ("pubsub", "leaf") in {(c, t) for c, t, _ in identities(iq)}
        meta = forms(iq).get("http://jabber.org/protocol/pubsub#meta-data")
        assert meta is not None, f"no pubsub#meta-data form: {iq}"
        assert meta["pubsub#type"] == ["urn:quoalise:0"]
        assert meta["pubsub#title"] and meta["pubsub#title"][0]
        assert meta["quoalise#unit"] == ["W"]
        assert meta["quoalise#direction"] == ["consumption"]
        assert meta["quoalise#quantity"] == ["power"]
        assert meta["quoalise#type"] == ["electrical"]
        assert meta["quoalise#aggregation"] == ["mean"]
        assert meta["quoalise#sampling-interval"] == ["PT30M"]

        await expect_error(
            disco(alice).get_info(jid=UP1, node="consumption/power/active/nope", timeout=TIMEOUT),
            "item-not-found",
        )


@pytest.mark.parametrize("target", [UP1, f"12345678901234@{DOMAIN}"])
async def test_bob_gets_item_not_found(server, component, target):
    async with connected(server, "bob") as bob:
        await expect_error(disco(bob).get_info(jid=target, timeout=TIMEOUT), "item-not-found")
        await expect_error(disco(bob).get_items(jid=target, timeout=TIMEOUT), "item-not-found")


async def test_ping(server, component):
    async with connected(server, "bob") as bob:
        await bob.plugin["xep_0199"].send_ping(DOMAIN, timeout=TIMEOUT)


async def test_version(server, component):
    async with connected(server, "bob") as bob:
        iq = await bob.plugin["xep_0092"].get_version(DOMAIN, timeout=TIMEOUT)
    assert iq["software_version"]["name"] == "quoalise-component"
    assert iq["software_version"]["version"]


async def test_unknown_iq_is_service_unavailable(server, component):
    async with connected(server, "bob") as bob:
        # XEP-0012 Last Activity: not implemented by the component.
        await expect_error(
            bob.plugin["xep_0012"].get_last_activity(DOMAIN, timeout=TIMEOUT),
            "service-unavailable",
        )
