"""Small readers for what slixmpp returns, and the names the tests expect."""

from __future__ import annotations

from slixmpp.exceptions import IqError

DOMAIN = "quoalise.localhost"
SOURCE = f"demo@{DOMAIN}"
USAGE_POINTS = ["99999000000001", "99999000000002", "99999000000003"]
UP1 = f"{USAGE_POINTS[0]}@{DOMAIN}"
SERIES = [
    "consumption/energy/active/daily",
    "consumption/power/active/instant",
    "consumption/power/active/raw",
]

NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"
NS_DATA = "jabber:x:data"
NS_RSM = "http://jabber.org/protocol/rsm"


def identities(iq) -> set[tuple[str, str, str | None]]:
    """(category, type, name) of each identity of a disco#info result."""
    return {
        (i.get("category"), i.get("type"), i.get("name"))
        for i in iq.xml.iter(f"{{{NS_INFO}}}identity")
    }


def features(iq) -> set[str]:
    return {f.get("var") for f in iq.xml.iter(f"{{{NS_INFO}}}feature")}


def forms(iq) -> dict[str | None, dict[str, list[str]]]:
    """XEP-0128 forms of a disco#info result: FORM_TYPE → {var: [values]}."""
    result: dict[str | None, dict[str, list[str]]] = {}
    query = iq.xml.find(f"{{{NS_INFO}}}query")
    for x in query.findall(f"{{{NS_DATA}}}x") if query is not None else []:
        fields: dict[str, list[str]] = {}
        for field in x.findall(f"{{{NS_DATA}}}field"):
            fields[field.get("var")] = [v.text or "" for v in field.findall(f"{{{NS_DATA}}}value")]
        form_type = fields.get("FORM_TYPE", [None])[0]
        assert x.get("type") == "result", f"form {form_type} has type {x.get('type')!r}"
        assert form_type not in result, f"two forms with FORM_TYPE {form_type}"
        result[form_type] = fields
    return result


def items(iq) -> list[tuple[str, str | None, str | None]]:
    """(jid, node, name) of each item of a disco#items result, in document order."""
    return [
        (i.get("jid"), i.get("node"), i.get("name"))
        for i in iq.xml.iter(f"{{{NS_ITEMS}}}item")
    ]


def rsm_set(iq) -> dict[str, str | None]:
    s = iq.xml.find(f"{{{NS_ITEMS}}}query/{{{NS_RSM}}}set")
    assert s is not None, f"no RSM <set/> in {iq}"

    def text(name):
        e = s.find(f"{{{NS_RSM}}}{name}")
        return None if e is None else (e.text or "")

    return {"first": text("first"), "last": text("last"), "count": text("count")}


async def expect_error(awaitable, condition: str | None = None) -> IqError:
    """Await an iq that must fail; check its defined condition when given."""
    try:
        result = await awaitable
    except IqError as e:
        got = e.iq["error"]["condition"]
        if condition is not None:
            assert got == condition, f"expected error {condition}, got {got}: {e.iq}"
        return e
    raise AssertionError(f"expected an error {condition or ''}, got a result: {result}")
