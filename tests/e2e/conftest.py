"""Fixtures for the end-to-end tests: real servers, the real component, slixmpp clients.

- `server`: a Prosody or an ejabberd (every test runs on both unless marked
  `@pytest.mark.servers("prosody")`), session-scoped, with accounts alice, bob and admin.
- `component`: the component binary attached to that server, session-scoped; alice holds a
  grant on every usage point, bob none, admin is in `[access] admins`.
- `fresh_server`, `new_component`: factories for tests that need their own instances
  (server restarts, a second component).

`async def` tests are run by the small hook below, one event loop per test (slixmpp is asyncio).
A server or component that does not start makes the test fail (or error) with its log tail.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from quoalise_testkit.harness import (
    BINARY,
    HarnessError,
    PgCluster,
    start_component,
    start_server,
)

ALL_SERVERS = ("prosody", "ejabberd")


def pytest_configure(config):
    config.addinivalue_line("markers", "servers(*kinds): run only on these XMPP servers")


def pytest_generate_tests(metafunc):
    if "server" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("servers")
        kinds = marker.args if marker else ALL_SERVERS
        metafunc.parametrize("server", kinds, indirect=True, scope="session")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**args))
    return True


class Workspace:
    """A temporary directory readable by the servers' system users, removed at the end.

    pytest's own tmp_path lives under a root-only directory that `prosody` and `ejabberd` cannot
    enter. Set QUOALISE_E2E_KEEP=1 to keep the directory (logs, configs) after the run.
    """

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="quoalise-e2e-"))
        self.root.chmod(0o755)
        self._n = 0

    def mkdir(self, name: str) -> Path:
        self._n += 1
        path = self.root / f"{self._n:02d}-{name}"
        path.mkdir()
        return path

    def cleanup(self):
        if os.environ.get("QUOALISE_E2E_KEEP"):
            print(f"\nkept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def workspace():
    ws = Workspace()
    yield ws
    ws.cleanup()


def _fail(error: HarnessError):
    pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def server(request, workspace):
    kind = request.param
    try:
        srv = start_server(kind, workspace.mkdir(kind))
    except HarnessError as e:
        _fail(e)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def component(server, workspace):
    try:
        comp = start_component(server, workspace.mkdir(f"component-{server.kind}"))
    except HarnessError as e:
        _fail(e)
    yield comp
    comp.stop()


@pytest.fixture
def fresh_server(workspace):
    """Factory: a private server of the given kind, stopped at the end of the test."""
    started = []

    def make(kind: str):
        try:
            srv = start_server(kind, workspace.mkdir(f"{kind}-private"))
        except HarnessError as e:
            _fail(e)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def new_component(request, workspace):
    """Factory: one more component process, stopped at the end of the test (its log is shown
    when the test fails)."""
    started = []
    request.node._extra_components = started

    def make(server, **kwargs):
        try:
            comp = start_component(server, workspace.mkdir("component-extra"), **kwargs)
        except HarnessError as e:
            _fail(e)
        started.append(comp)
        return comp

    yield make
    for comp in started:
        comp.stop()


@pytest.fixture
def pg_cluster():
    """A throwaway PostgreSQL cluster (PostgreSQL refuses root: run as the `postgres` user),
    stopped and removed at the end of the test. Missing server binaries fail the test."""
    cluster = None
    try:
        cluster = PgCluster().start()
    except HarnessError as e:
        if cluster is not None:
            cluster.stop()
        _fail(e)
    yield cluster
    cluster.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or report.passed:
        return
    # A failing test shows the end of the component's and the server's logs.
    funcargs = getattr(item, "funcargs", {})
    comp = funcargs.get("component")
    if comp is not None:
        report.sections.append(("component log (tail)", comp.tail(40)))
    srv = funcargs.get("server")
    if srv is not None:
        from quoalise_testkit.harness import tail

        report.sections.append((f"{srv.kind} log (tail)", tail(srv.log_path, 30)))
    pg = funcargs.get("pg_cluster")
    if pg is not None:
        from quoalise_testkit.harness import tail

        report.sections.append(("postgresql log (tail)", tail(pg.log_path, 30)))
    for comp in getattr(item, "_extra_components", []):
        report.sections.append(("extra component log (tail)", comp.tail(40)))


def pytest_report_header(config):
    return f"component binary: {BINARY}"
