"""A fake Enedis Data Connect 2026 server on 127.0.0.1, for the tests of the `enedis` source.

It serves the fixtures of tests/fixtures/enedis/ (found from this file's own location), made up
by this project with tests/fixtures/enedis/make_fixtures.py, whose docstring explains the figures:
a consumer meter, PRM 09876543210987, over days 2026-09-29 and 2026-09-30 (Paris local time),
and a producer's load curve and daily energy, served for whichever PRM is asked. The error bodies
it answers with come from the same folder.

What it does (see `FakeDataConnect`):

- `POST /oauth2/v3/token`: client_credentials, credentials in the form body or in HTTP Basic.
- `GET /mesure_synchrone_auto/v2/<measure>`: the fixture for <measure>, `idPrm` and `periode` set
  to the request, points kept only for the requested days.
- `POST /subscribed_services/v1`: the service behind an `autorisation_id` handed out by the
  authorize page.
- `GET /dataconnect/v2/oauth2/authorize`: the customer consents at once; 302 to `callback_url`
  with `autorisation_id` + `state` (or, with `legacy = True`, v1's `code` + `usage_point_id`).

Error codes. The Swaggers document every error body as `{code, message}`, but the measure APIs
are known to answer `{"error": "ADAM-…", "error_description": …}` (ADAM-ERR0123: the period starts
before the meter's activation) and Enedis publishes no list of codes outside its DataHub. So:

- ADAM-DC-0008 (403, no consent for this PRM) is the code Data Connect has always used for it.
- Malformed or missing query parameters, an end date not after the start date, and a load-curve
  window over 7 days all answer 400 `ADAM-ERR0069` (`ERR_BAD_REQUEST`), each with its own
  description. This code is a plausible pick, not a verified one: community clients of the v5
  API see ADAM-ERR0069 on refused requests but disagree on its meaning. (The real gateway even
  answers some malformed requests with a 500; the fake prefers a 400.)
- A period with no measure at all: the Swagger documents 404 "Ressource non trouvée" with
  "Pas de mesure trouvée pour ce point"; v5 answered 404 `{"error": "no_data_found",
  "error_description": "no measure found for this usage point"}`. The fake answers that 404 by
  default; set `fake.no_data_status = 200` to get a 200 with an empty `points` list instead.
- Gateway (WSO2) errors keep WSO2's shapes: 401 `{"code": "900901", …}`, 429 `{"fault": …}`.

Run it by hand: `python testkit/python/quoalise_testkit/fake_dataconnect.py [--port N] [--fixtures DIR] [--callback URL]`.
"""

from __future__ import annotations

import argparse
import base64
import copy
import dataclasses
import datetime as dt
import hashlib
import json
import re
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "enedis"
DEFAULT_PRM = "09876543210987"

MEASURE_BASE = "/mesure_synchrone_auto/v2/"
TOKEN_PATH = "/oauth2/v3/token"
AUTHORIZE_PATH = "/dataconnect/v2/oauth2/authorize"
SUBSCRIBED_SERVICES_PATH = "/subscribed_services/v1"

# measure name -> (fixture file, kind of points, load curve?)
MEASURES = {
    "courbe_de_charge_consommation": "mesure_courbe_de_charge_consommation.json",
    "courbe_de_charge_production": "mesure_courbe_de_charge_production.json",
    "consommation_quotidienne": "mesure_consommation_quotidienne.json",
    "production_quotidienne": "mesure_production_quotidienne.json",
    "puissance_conso_max_quotidienne": "mesure_puissance_conso_max_quotidienne.json",
}
LOAD_CURVES = {"courbe_de_charge_consommation", "courbe_de_charge_production"}
MAX_POWER = "puissance_conso_max_quotidienne"
LOAD_CURVE_MAX_DAYS = 7

# Error bodies: 403 no consent, 404 no measure, and the templates of the ready-made bodies below.
NO_CONSENT = "erreur_ADAM-DC-0008.json"
NO_DATA = "erreur_aucune_mesure.json"
THROTTLED = "erreur_900807_quota.json"
BEFORE_ACTIVATION = "erreur_ADAM-ERR0123.json"
ERRORS = (NO_CONSENT, NO_DATA, THROTTLED, BEFORE_ACTIVATION)

ERR_BAD_REQUEST = "ADAM-ERR0069"  # plausible, unverified: see the module docstring

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_STEP = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# ---------------------------------------------------------------------------------------------
# ready-made bodies for FakeDataConnect.fail()


def error_fixture(name: str, fixtures_dir: Path = DEFAULT_FIXTURES) -> dict:
    """An error body of the fixtures folder, e.g. `erreur_ADAM-DC-0008.json`."""
    return json.loads((fixtures_dir / name).read_text(encoding="utf-8"))


def throttled_body(next_access_time_epoch: float) -> dict:
    """WSO2's 429 body (erreur_900807_quota.json), with `nextAccessTime` set to that instant and
    formatted like the gateway does it (UTC)."""
    t = dt.datetime.fromtimestamp(next_access_time_epoch, tz=dt.timezone.utc)
    when = f"{t.year:04d}-{_MONTHS[t.month - 1]}-{t.day:02d} {t:%H:%M:%S}+0000 UTC"
    body = error_fixture(THROTTLED)
    fault = body["fault"]
    fault["description"] = fault["description"].replace(fault["nextAccessTime"], when)
    fault["nextAccessTime"] = when
    return body


def adam_error_body(code: str | None = None, description: str | None = None) -> dict:
    """A measure API error body: by default ADAM-ERR0123 (erreur_ADAM-ERR0123.json: 400, the
    period starts before the meter's activation)."""
    body = error_fixture(BEFORE_ACTIVATION)
    if code is not None:
        body["error"] = code
    if description is not None:
        body["error_description"] = description
    return body


# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: str
    status: int
    at: float


@dataclasses.dataclass
class _Failure:
    prefix: str
    status: int
    body: dict | str
    times: int | None
    headers: dict[str, str]


class _Answer(Exception):
    """Raised by a route to answer at once."""

    def __init__(self, status: int, body: Any = b"", headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _bad_request(description: str) -> _Answer:
    return _Answer(400, {"error": ERR_BAD_REQUEST, "error_description": description})


def _step_of(p: str) -> dt.timedelta:
    m = _STEP.fullmatch(p or "")
    if not m or not any(m.groups()):
        raise ValueError(f"unknown step {p!r}")
    h, mi, s = (int(x or 0) for x in m.groups())
    return dt.timedelta(hours=h, minutes=mi, seconds=s)


def _parse_date(value: str | None, name: str) -> dt.date:
    if value is None or value == "":
        raise _bad_request(f"The parameter {name} is mandatory")
    if not _DATE.fullmatch(value):
        raise _bad_request(f"The parameter {name} must be a date formatted YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _bad_request(f"The parameter {name} is not a valid date") from None


class FakeDataConnect:
    """The fake server. `start()` binds 127.0.0.1:0 and serves from a daemon thread."""

    def __init__(
        self,
        fixtures_dir: str | Path | None = None,
        client_id: str = "test-client",
        client_secret: str = "test-secret",
        prm: str = DEFAULT_PRM,
        token_lifetime: int = 12600,
    ):
        self.fixtures_dir = Path(fixtures_dir) if fixtures_dir is not None else DEFAULT_FIXTURES
        self.client_id = client_id
        self.client_secret = client_secret
        self.prm = prm
        self.token_lifetime = token_lifetime
        self.callback_url: str | None = None
        self.legacy = False
        self.no_data_status = 404  # 200: answer an empty `points` list instead (module docstring)

        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._failures: list[_Failure] = []
        self._tokens: dict[str, float] = {}  # token -> expiry (time.monotonic())
        self._revoked: set[str] = set()
        self._autorisations: dict[int, tuple[str, dt.date]] = {}  # id -> (prm, consent day)
        self._fixtures: dict[str, Any] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> "FakeDataConnect":
        return self.start_on(0)

    def start_on(self, port: int) -> "FakeDataConnect":
        self._load_fixtures()
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name="fake-dataconnect", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeDataConnect":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _load_fixtures(self) -> None:
        wanted = set(MEASURES.values()) | set(ERRORS)
        missing = [name for name in sorted(wanted) if not (self.fixtures_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"fake Data Connect: fixtures missing in {self.fixtures_dir}: {missing}"
            )
        self._fixtures = {
            name: json.loads((self.fixtures_dir / name).read_text(encoding="utf-8"))
            for name in wanted
        }

    # -- properties and controls --------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("fake Data Connect not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def authorize_url(self) -> str:
        return self.url + AUTHORIZE_PATH

    @property
    def autorisation_id(self) -> int:
        """The id the authorize page hands out for the PRM (stable, as on Enedis)."""
        return self._autorisation_id_for(self.prm)

    @staticmethod
    def _autorisation_id_for(prm: str) -> int:
        digest = hashlib.sha256(f"fake-dataconnect:{prm}".encode()).hexdigest()
        return 100_000_000 + int(digest[:12], 16) % 900_000_000

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def count(self, prefix: str) -> int:
        with self._lock:
            return sum(1 for c in self._calls if c.path.startswith(prefix))

    def fail(
        self,
        prefix: str,
        status: int,
        body: dict | str,
        times: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `times` requests (None: until `clear_failures()`) whose path starts with
        `prefix` get this answer, before any other check (even authentication)."""
        if times is not None and times <= 0:
            return
        with self._lock:
            self._failures.append(_Failure(prefix, status, body, times, dict(headers or {})))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def revoke(self, prm: str) -> None:
        with self._lock:
            self._revoked.add(prm)

    def consent(self) -> int:
        """What the authorize page does, without HTTP: returns the PRM's autorisation id."""
        with self._lock:
            return self._consent_locked()

    def _consent_locked(self) -> int:
        aid = self._autorisation_id_for(self.prm)
        self._autorisations[aid] = (self.prm, dt.date.today())
        self._revoked.discard(self.prm)
        return aid

    # -- request handling (called from the handler threads) -----------------------------------

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for f in self._failures:
                if path.startswith(f.prefix):
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._failures.remove(f)
                    return f
        return None

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def handle(self, method: str, path: str, query: dict[str, str], headers, body: bytes) -> _Answer:
        failure = self._take_failure(path)
        if failure is not None:
            return _Answer(failure.status, failure.body, failure.headers)
        try:
            if path == TOKEN_PATH:
                self._only(method, "POST")
                return self._token(query, headers, body)
            if path == AUTHORIZE_PATH:
                self._only(method, "GET")
                return self._authorize(query)
            if path.startswith(MEASURE_BASE):
                self._check_bearer(headers)
                self._only(method, "GET")
                return self._measure(path[len(MEASURE_BASE):], query)
            if path.rstrip("/") == SUBSCRIBED_SERVICES_PATH:
                self._check_bearer(headers)
                self._only(method, "POST")
                return self._subscribed_services(body)
            raise _Answer(404, {
                "fault": {
                    "code": 404,
                    "type": "Status report",
                    "message": "Runtime Error",
                    "description": "No matching resource found for given API Request",
                }
            })
        except _Answer as answer:
            return answer

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            raise _Answer(405, {"code": "405", "message": f"Method not allowed: use {allowed}"},
                          {"Allow": allowed})

    # -- token --------------------------------------------------------------------------------

    def _token(self, query: dict[str, str], headers, body: bytes) -> _Answer:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                                          keep_blank_values=True).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(auth[6:].strip()).decode("utf-8")
                basic_id, _, basic_secret = decoded.partition(":")
                client_id = urllib.parse.unquote_plus(basic_id)
                client_secret = urllib.parse.unquote_plus(basic_secret)
            except (ValueError, UnicodeDecodeError):
                pass
        grant = form.get("grant_type")
        if not grant:
            raise _Answer(400, {"error": "invalid_request",
                                "error_description": "Missing grant_type parameter value"})
        if grant != "client_credentials":
            raise _Answer(400, {"error": "unsupported_grant_type",
                                "error_description": f"Unsupported grant_type value: {grant}"})
        if client_id != self.client_id or client_secret != self.client_secret:
            raise _Answer(401, {"error": "invalid_client",
                                "error_description": "A valid OAuth client could not be found "
                                                     f"for client_id: {client_id}"},
                          {"WWW-Authenticate": 'Basic realm="fake-dataconnect"'})
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_lifetime
        return _Answer(200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "scope": "am_application_scope default",
        })

    def _check_bearer(self, headers) -> None:
        auth = headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        with self._lock:
            expiry = self._tokens.get(token)
            valid = expiry is not None and time.monotonic() < expiry
            if expiry is not None and not valid:
                del self._tokens[token]
        if not valid:
            raise _Answer(401, {
                "code": "900901",
                "message": "Invalid Credentials",
                "description": "Invalid Credentials. Make sure you have provided the correct "
                               "security credentials",
            }, {"WWW-Authenticate": 'OAuth2 realm="WSO2 API Manager", error="invalid_token"'})

    # -- measures -----------------------------------------------------------------------------

    def _measure(self, name: str, query: dict[str, str]) -> _Answer:
        fixture = MEASURES.get(name)
        if fixture is None:
            raise _Answer(404, {"fault": {
                "code": 404, "type": "Status report", "message": "Runtime Error",
                "description": "No matching resource found for given API Request"}})
        point_id = query.get("pointId")
        if not point_id:
            raise _bad_request("The parameter pointId is mandatory")
        if not re.fullmatch(r"\d{14}", point_id):
            raise _bad_request("The parameter pointId must be made of 14 digits")
        start = _parse_date(query.get("dateDebut"), "dateDebut")
        end = _parse_date(query.get("dateFin"), "dateFin")
        if name == MAX_POWER:
            if query.get("mesuresPas") not in ("P1D", "P1M"):
                raise _bad_request("The parameter mesuresPas is mandatory and must be P1D or P1M")
            if query.get("grandeurPhysique") not in ("PMA", "TOUT"):
                raise _bad_request(
                    "The parameter grandeurPhysique is mandatory and must be PMA or TOUT")
        if end <= start:
            raise _bad_request("Start date should be before end date.")
        if name in LOAD_CURVES and (end - start).days > LOAD_CURVE_MAX_DAYS:
            raise _bad_request(
                f"The requested period cannot exceed {LOAD_CURVE_MAX_DAYS} consecutive days")
        with self._lock:
            consented = point_id == self.prm and point_id not in self._revoked
        if not consented:
            raise _Answer(403, copy.deepcopy(self._fixtures[NO_CONSENT]))

        data = copy.deepcopy(self._fixtures[fixture])
        data["idPrm"] = point_id
        data["periode"] = {"dateDebut": start.isoformat(), "dateFin": end.isoformat()}
        kept = 0
        for grandeur in data.get("grandeur", []):
            points = [p for p in grandeur.get("points", [])
                      if start <= self._day_of(name, p) < end]
            grandeur["points"] = points
            kept += len(points)
        if kept == 0 and self.no_data_status != 200:
            raise _Answer(self.no_data_status, copy.deepcopy(self._fixtures[NO_DATA]))
        return _Answer(200, data)

    @staticmethod
    def _day_of(name: str, point: dict) -> dt.date:
        d = point["d"]
        if name in LOAD_CURVES:
            # `d` is the end of the interval: the point belongs to the day its interval starts.
            end = dt.datetime.strptime(d, "%Y-%m-%d %H:%M:%S")
            return (end - _step_of(point.get("p", "PT30M"))).date()
        return dt.date.fromisoformat(d[:10])

    # -- consent ------------------------------------------------------------------------------

    def _authorize(self, query: dict[str, str]) -> _Answer:
        if query.get("client_id") != self.client_id:
            raise _Answer(400, "invalid client_id\n")
        for name in ("response_type", "state", "duration"):
            if not query.get(name):
                raise _Answer(400, f"missing parameter {name}\n")
        if query["response_type"] != "code":
            raise _Answer(400, "unsupported response_type\n")
        if not re.fullmatch(r"P\d+[DWMY]", query["duration"]):
            raise _Answer(400, "invalid duration\n")
        callback = self.callback_url
        if not callback:
            raise _Answer(500, "fake Data Connect: no callback_url set\n")
        with self._lock:
            aid = self._consent_locked()
        if self.legacy:
            params = {"code": secrets.token_urlsafe(16), "usage_point_id": self.prm,
                      "state": query["state"]}
        else:
            params = {"autorisation_id": str(aid), "state": query["state"]}
        sep = "&" if urllib.parse.urlsplit(callback).query else "?"
        location = callback + sep + urllib.parse.urlencode(params)
        return _Answer(302, b"", {"Location": location})

    def _subscribed_services(self, body: bytes) -> _Answer:
        try:
            request = json.loads(body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _Answer(400, {"code": "400", "message": "Le corps de la requête n'est pas un JSON valide"}) from None
        if not isinstance(request, dict):
            raise _Answer(400, {"code": "400", "message": "Le corps de la requête doit être un objet JSON"})
        if not isinstance(request.get("comptage"), bool):
            raise _Answer(400, {"code": "400", "message": "Le paramètre comptage est obligatoire"})
        raw = request.get("autorisationId")
        if isinstance(raw, bool) or raw is None:
            raise _Answer(400, {"code": "400", "message": "Le paramètre autorisationId est obligatoire"})
        try:
            aid = int(raw) if isinstance(raw, (int, str)) else None
        except ValueError:
            aid = None
        if aid is None:
            raise _Answer(400, {"code": "400", "message": "Le paramètre autorisationId doit être un entier"})
        with self._lock:
            known = self._autorisations.get(aid)
            revoked = known is not None and known[0] in self._revoked
        if known is None:
            raise _Answer(404, {"code": "404", "message": "Aucune autorisation trouvée pour cet identifiant"})
        prm, since = known
        if request["comptage"]:
            return _Answer(200, {"nbTotalServices": 1})
        try:
            until = since.replace(year=since.year + 1)
        except ValueError:  # 29 February
            until = since + dt.timedelta(days=365)
        service = {
            "id": f"{aid}-1",
            "pointId": prm,
            "serviceCode": "ACCES",
            "mesuresTypeCode": "CDC",
            "mesuresPas": "PT30M",
            "mesuresCorrigees": False,
            "etatCode": "TERMINE" if revoked else "ACTIF",
            "etatLibelle": "Terminé" if revoked else "Actif",
            "dateDebut": since.isoformat(),
            "dateFin": until.isoformat(),
            "soutirage": True,
            "injection": False,
            "autorisation": {
                "autorisationId": aid,
                "autorisationLibelle": "Autorisation Data Connect",
                "autorisationType": "EXPLICITE",
            },
        }
        return _Answer(200, {"nbTotalServices": 1, "serviceSouscrit": [service]})


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeDataConnect
    protocol_version = "HTTP/1.1"
    server_version = "fake-dataconnect/1"

    def log_message(self, format, *args):  # noqa: A002  (quiet: no request log on stderr)
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self):
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        query = {k: v[0] for k, v in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
        status = 500
        body = b""
        try:
            body = self._read_body()
            answer = self.server_fake.handle(self.command, path, query, self.headers, body)
        except Exception as e:  # a bug in the fake: say so rather than hang the client
            answer = _Answer(500, f"fake Data Connect error: {e!r}\n")
        status = answer.status
        payload = answer.body
        if isinstance(payload, (dict, list)):
            data, ctype = json.dumps(payload).encode(), "application/json"
        elif isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = bytes(payload or b""), None
        # Recorded before the answer goes out, so a client that got its answer sees the call.
        self.server_fake._record(Call(
            method=self.command, path=path, query=query,
            body=body.decode("utf-8", "replace"), status=status, at=time.time(),
        ))
        self.close_connection = True
        try:
            self.send_response(status)
            if ctype and (data or status != 302):
                self.send_header("Content-Type", ctype)
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Enedis Data Connect 2026 server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fixtures", default=None, help=f"default: {DEFAULT_FIXTURES}")
    parser.add_argument("--callback", default="http://127.0.0.1:8081/enedis/callback")
    parser.add_argument("--client-id", default="test-client")
    parser.add_argument("--client-secret", default="test-secret")
    parser.add_argument("--prm", default=DEFAULT_PRM)
    args = parser.parse_args()
    fake = FakeDataConnect(fixtures_dir=args.fixtures, client_id=args.client_id,
                           client_secret=args.client_secret, prm=args.prm)
    fake.callback_url = args.callback
    fake.start_on(args.port)
    print(f"listening on {fake.url}", flush=True)
    print(f"authorize: {fake.authorize_url}?client_id={args.client_id}"
          "&response_type=code&state=demo&duration=P1Y", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
