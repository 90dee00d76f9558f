"""Self-test of the fake Enedis Data Connect server (fake_dataconnect.py): its contract with the
e2e tests, checked over real HTTP with urllib. No XMPP server, no component."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from quoalise_testkit.fake_dataconnect import FakeDataConnect, adam_error_body, throttled_body

PRM = "09876543210987"  # the consumer of tests/fixtures/enedis/
CDC = "/mesure_synchrone_auto/v2/courbe_de_charge_consommation"
DAILY = "/mesure_synchrone_auto/v2/consommation_quotidienne"
PMAX = "/mesure_synchrone_auto/v2/puissance_conso_max_quotidienne"
CALLBACK = "http://127.0.0.1:8081/enedis/callback"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def http(method, url, *, data=None, headers=None, json_body=None):
    """(status, headers, parsed body): JSON when the answer is JSON, text otherwise."""
    headers = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    elif isinstance(data, dict):
        data = urllib.parse.urlencode(data).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with _opener.open(req, timeout=5) as resp:
            status, hdrs, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, e.headers, e.read()
    if (hdrs.get("Content-Type") or "").startswith("application/json"):
        return status, hdrs, json.loads(raw)
    return status, hdrs, raw.decode()


@pytest.fixture
def fake():
    f = FakeDataConnect().start()
    f.callback_url = CALLBACK
    yield f
    f.stop()


def token(fake, client_id="test-client", client_secret="test-secret"):
    return http("POST", fake.url + "/oauth2/v3/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret,
    })


def bearer(fake):
    status, _, body = token(fake)
    assert status == 200, body
    return {"Authorization": "Bearer " + body["access_token"]}


def measure(fake, path, auth, start, end, point_id=PRM, **extra):
    query = urllib.parse.urlencode({"pointId": point_id, "dateDebut": start, "dateFin": end, **extra})
    return http("GET", f"{fake.url}{path}?{query}", headers=auth)


def test_token(fake):
    status, _, body = token(fake)
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["expires_in"] == 12600 and body["access_token"]
    status, _, body = token(fake, client_secret="wrong")
    assert (status, body["error"]) == (401, "invalid_client")
    basic = base64.b64encode(b"test-client:test-secret").decode()
    status, _, body = http("POST", fake.url + "/oauth2/v3/token",
                           data={"grant_type": "client_credentials"},
                           headers={"Authorization": "Basic " + basic})
    assert status == 200, body
    status, _, body = http("POST", fake.url + "/oauth2/v3/token", data={
        "grant_type": "authorization_code", "client_id": "test-client", "client_secret": "test-secret"})
    assert (status, body["error"]) == (400, "unsupported_grant_type")


def test_data_call_needs_a_token(fake):
    status, _, body = measure(fake, CDC, {}, "2026-09-29", "2026-09-30")
    assert (status, body["code"]) == (401, "900901")
    status, _, body = measure(fake, CDC, {"Authorization": "Bearer nope"}, "2026-09-29", "2026-09-30")
    assert status == 401


def test_load_curve_filtered_by_day(fake):
    auth = bearer(fake)
    status, _, body = measure(fake, CDC, auth, "2026-09-29", "2026-10-01")
    assert status == 200, body
    points = body["grandeur"][0]["points"]
    assert len(points) == 96
    assert points[0]["d"] == "2026-09-29 00:30:00" and points[-1]["d"] == "2026-10-01 00:00:00"
    assert body["idPrm"] == PRM
    assert body["periode"] == {"dateDebut": "2026-09-29", "dateFin": "2026-10-01"}

    status, _, body = measure(fake, CDC, auth, "2026-09-29", "2026-09-30")
    points = body["grandeur"][0]["points"]
    assert status == 200 and len(points) == 48
    assert points[0]["d"] == "2026-09-29 00:30:00" and points[-1]["d"] == "2026-09-30 00:00:00"
    assert body["periode"] == {"dateDebut": "2026-09-29", "dateFin": "2026-09-30"}

    status, _, body = measure(fake, CDC, auth, "2026-09-30", "2026-10-03")
    assert status == 200 and len(body["grandeur"][0]["points"]) == 48
    assert body["grandeur"][0]["points"][0]["d"] == "2026-09-30 00:30:00"

    # The production fixture belongs to another meter (09876543210994): served for the consented one.
    status, _, body = measure(fake, CDC.replace("consommation", "production"), auth,
                              "2026-09-29", "2026-09-30")
    assert status == 200 and body["idPrm"] == PRM and len(body["grandeur"][0]["points"]) == 48


def test_daily_and_max_power(fake):
    auth = bearer(fake)
    status, _, body = measure(fake, DAILY, auth, "2026-09-29", "2026-10-01")
    assert status == 200 and [p["d"] for p in body["grandeur"][0]["points"]] == ["2026-09-29", "2026-09-30"]
    status, _, body = measure(fake, DAILY, auth, "2026-09-30", "2026-10-15")
    assert status == 200 and len(body["grandeur"][0]["points"]) == 1

    status, _, body = measure(fake, PMAX, auth, "2026-09-29", "2026-10-01")
    assert (status, body["error"]) == (400, "ADAM-ERR0069")  # mesuresPas, grandeurPhysique missing
    status, _, body = measure(fake, PMAX, auth, "2026-09-30", "2026-10-01",
                              mesuresPas="P1D", grandeurPhysique="PMA")
    assert status == 200 and [p["d"] for p in body["grandeur"][0]["points"]] == ["2026-09-30 20:12:34"]


def test_bad_requests(fake):
    auth = bearer(fake)
    status, _, body = measure(fake, CDC, auth, "2026-09-29", "2026-10-07")
    assert (status, body["error"]) == (400, "ADAM-ERR0069")  # 8 days of load curve
    status, _, body = measure(fake, CDC, auth, "2026-09-29", "2026-10-06")
    assert status == 200  # 7 days is fine
    status, _, body = measure(fake, DAILY, auth, "2026-09-29", "2026-09-29")
    assert status == 400 and body["error"].startswith("ADAM-")
    status, _, body = measure(fake, DAILY, auth, "2026-09-29", "29/09/2026")
    assert status == 400
    status, _, body = measure(fake, DAILY, auth, "2026-09-29", "2026-09-30", point_id="09876543210994")
    assert (status, body["error"]) == (403, "ADAM-DC-0008")
    # No measure at all in the period: 404 no_data_found by default, 200 empty when asked.
    status, _, body = measure(fake, DAILY, auth, "2026-08-01", "2026-08-05")
    assert (status, body["error"]) == (404, "no_data_found")
    fake.no_data_status = 200
    status, _, body = measure(fake, DAILY, auth, "2026-08-01", "2026-08-05")
    assert status == 200 and body["grandeur"][0]["points"] == []


def test_fail_then_back_to_normal(fake):
    auth = bearer(fake)
    next_access = time.time() + 60
    fake.fail(CDC, 429, throttled_body(next_access), times=2)
    for _ in range(2):
        status, _, body = measure(fake, CDC, {}, "2026-09-29", "2026-09-30")  # even without a token
        assert status == 429 and body["fault"]["code"] == 900807
        assert body["fault"]["description"].endswith("nextAccessTime : " + body["fault"]["nextAccessTime"])
    assert time.strftime("%Y-", time.gmtime(next_access)) in body["fault"]["nextAccessTime"]
    status, _, _ = measure(fake, CDC, auth, "2026-09-29", "2026-09-30")
    assert status == 200

    fake.fail("/mesure_synchrone_auto/", 400, adam_error_body())
    fake.fail("/oauth2/", 503, "maintenance")
    for _ in range(2):
        status, _, body = measure(fake, DAILY, auth, "2026-09-29", "2026-09-30")
        assert (status, body["error"]) == (400, "ADAM-ERR0123")
    status, hdrs, body = token(fake)
    assert (status, body) == (503, "maintenance") and hdrs["Content-Type"].startswith("text/plain")
    fake.clear_failures()
    assert measure(fake, DAILY, auth, "2026-09-29", "2026-09-30")[0] == 200

    failed = [c for c in fake.calls if c.status >= 400]
    assert len(failed) == 5 and failed[0].path == CDC and failed[0].query["pointId"] == PRM


def test_expire_tokens_and_revoke(fake):
    auth = bearer(fake)
    assert measure(fake, DAILY, auth, "2026-09-29", "2026-09-30")[0] == 200
    fake.expire_tokens()
    assert measure(fake, DAILY, auth, "2026-09-29", "2026-09-30")[0] == 401
    auth = bearer(fake)
    assert measure(fake, DAILY, auth, "2026-09-29", "2026-09-30")[0] == 200
    fake.revoke(PRM)
    status, _, body = measure(fake, DAILY, auth, "2026-09-29", "2026-09-30")
    assert (status, body["error"]) == (403, "ADAM-DC-0008")


def test_token_lifetime():
    with FakeDataConnect(token_lifetime=0) as fake:
        auth = bearer(fake)
        assert measure(fake, DAILY, auth, "2026-09-29", "2026-09-30")[0] == 401


def authorize(fake, **params):
    query = {"client_id": "test-client", "response_type": "code", "state": "s t&ate=1",
             "duration": "P1Y", **params}
    return http("GET", fake.authorize_url + "?" + urllib.parse.urlencode(query))


def test_authorize_and_subscribed_services(fake):
    status, hdrs, _ = authorize(fake)
    assert status == 302
    location = urllib.parse.urlsplit(hdrs["Location"])
    assert location._replace(query="").geturl() == CALLBACK
    params = urllib.parse.parse_qs(location.query)
    assert params["state"] == ["s t&ate=1"] and "code" not in params
    aid = params["autorisation_id"][0]
    assert aid == str(fake.autorisation_id)

    auth = bearer(fake)
    url = fake.url + "/subscribed_services/v1"
    status, _, body = http("POST", url, headers=auth, json_body={"autorisationId": aid, "comptage": False})
    assert status == 200, body
    assert body["nbTotalServices"] == 1
    service = body["serviceSouscrit"][0]
    assert service["pointId"] == PRM and service["etatCode"] == "ACTIF"
    assert service["soutirage"] is True and service["injection"] is False
    assert service["autorisation"]["autorisationId"] == int(aid)
    start, end = service["dateDebut"], service["dateFin"]
    assert int(end[:4]) == int(start[:4]) + 1 and end[4:] == start[4:]

    status, _, body = http("POST", url, headers=auth, json_body={"autorisationId": 1, "comptage": False})
    assert status == 404 and set(body) == {"code", "message"}
    status, _, _ = http("POST", url, json_body={"autorisationId": aid, "comptage": False})
    assert status == 401

    # A second consent gives the same id.
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(authorize(fake)[1]["Location"]).query)[
        "autorisation_id"] == [aid]


def test_authorize_refusals_and_legacy(fake):
    status, _, body = authorize(fake, client_id="other")
    assert status == 400 and isinstance(body, str)
    status, _, _ = authorize(fake, state="")
    assert status == 400

    fake.legacy = True
    status, hdrs, _ = authorize(fake, state="xyz")
    assert status == 302
    params = urllib.parse.parse_qs(urllib.parse.urlsplit(hdrs["Location"]).query)
    assert params["usage_point_id"] == [PRM] and params["state"] == ["xyz"] and params["code"][0]
    assert "autorisation_id" not in params


def test_count_and_calls(fake):
    auth = bearer(fake)
    for _ in range(3):
        measure(fake, CDC, auth, "2026-09-29", "2026-09-30")
    measure(fake, DAILY, auth, "2026-09-29", "2026-09-30")
    assert fake.count(CDC) == 3
    assert fake.count("/mesure_synchrone_auto/v2/") == 4
    assert fake.count("/oauth2/v3/token") == 1
    token_call = fake.calls[0]
    assert token_call.method == "POST" and token_call.status == 200
    assert "grant_type=client_credentials" in token_call.body
