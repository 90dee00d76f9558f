"""A customer's consent through the enedis source and the fake Data Connect, as an application
and the customer's browser obtain it: `get_authorize_uri` over XMPP, the consent page, the
button to (fake) Enedis, which consents at once and redirects to the component's callback.

Tests that need a consent holder (a grant of origin `consent`) use it with a component whose
config has the `enedis` source of `enedis_source`.
"""

from __future__ import annotations

import html
import re
import urllib.error
import urllib.parse
import urllib.request

from quoalise_testkit.commands import NS_DATA, command_of, field_values, send_command
from quoalise_testkit.fake_dataconnect import FakeDataConnect

T = 30


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_get(url: str):
    """GET without following redirects: (status, headers (case-insensitive), body)."""
    try:
        with _OPENER.open(url, timeout=T) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def enedis_source(fake: FakeDataConnect, source_id: str = "enedis") -> str:
    """The `[[source]]` table of an enedis source on `fake`."""
    return f"""
[[source]]
type = "enedis"
id = "{source_id}"
api_url = "{fake.url}"
authorize_url = "{fake.authorize_url}"
client_id = "test-client"
client_secret = "test-secret"
max_quota_wait = "2s"
"""


async def authorize_uri(client, source_jid: str, **fields) -> str:
    """The consent page's URI an application gets from `get_authorize_uri`."""
    values = {"name": "Elec Expert", "logo_url": "https://example.org/logo.png",
              "description": "Energy advice", "redirect_uri": "http://127.0.0.1:9/app/back"}
    values.update(fields)
    values = {k: v for k, v in values.items() if v is not None}
    iq = await send_command(client, source_jid, "get_authorize_uri", values, timeout=T)
    cmd = command_of(iq)
    assert cmd.get("status") == "completed", cmd.attrib
    (uri,) = field_values(cmd.find(f"{{{NS_DATA}}}x"))["authorize_uri"]
    return uri


def button_href(page: str) -> str:
    """Where the consent page's button leads (Enedis' authorize page)."""
    m = re.search(r'<a id="authorize" class="button" href="([^"]+)"', page)
    assert m, page
    return html.unescape(m.group(1))


def consent_in_browser(fake: FakeDataConnect, uri: str, **params):
    """The customer's browser: the consent page (with `params` added to its query), its button
    to Enedis (which consents at once and redirects), the component's callback. Returns the
    callback's answer."""
    url = uri + ("&" + urllib.parse.urlencode(params) if params else "")
    status, headers, page = http_get(url)
    assert status == 200, (status, page)
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    target = button_href(page)
    assert target.startswith(fake.authorize_url + "?"), target
    status, headers, body = http_get(target)
    assert status == 302, (status, body)
    callback = headers["Location"]
    assert callback.startswith(fake.callback_url + "?"), callback
    return http_get(callback)
