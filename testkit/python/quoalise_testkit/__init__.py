"""Test kit of quoalise-component: what the end-to-end tests (tests/e2e) and the benchmark
scripts (scripts/bench_*.py) share.

- `harness`: real Prosody / ejabberd / PostgreSQL servers and the real component binary.
- `xmpp`, `commands`, `live`: slixmpp helpers (discovery, ad-hoc commands, PubSub).
- `abuse`: hostile clients (floods, oversized stanzas) and what they measure.
- `fake_dataconnect`: a local Enedis Data Connect server over tests/fixtures/enedis.
- `xaal_bus`, `xaal_devices`: an xAAL bus in a network namespace with real xaal-lib devices.

Not installed: tests/e2e/pytest.ini and the scripts put testkit/python on sys.path, so that each
checkout uses its own kit, which resolves the binary and server templates from its own location.
"""
