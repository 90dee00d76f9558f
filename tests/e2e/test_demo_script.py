"""README command 1: scripts/demo.sh starts Prosody + the component, shows the tree, then the
readings arriving live."""

import re
import subprocess
from pathlib import Path

import pytest

from quoalise_testkit.harness import REPO

LIVE_FOR = 5  # seconds of live readings (the demo publishes every 2 s per meter)
# 21:47:15  99999000000001  consumption/power/active/instant     218 W[  (last published)]
LIVE_LINE = re.compile(
    r"^\d\d:\d\d:\d\d  (9999900000000[123])  consumption/power/active/instant +\d+ W( {2}\(last published\))?$",
    re.MULTILINE,
)


def run_demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh"), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=540,
        cwd=REPO,
    )


def check_tree_and_cleanup(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "quoalise.localhost — Quoalise (component/generic)" in result.stdout, output
    assert "demo@quoalise.localhost — Demo meters" in result.stdout, output
    for n in (1, 2, 3):
        assert f"9999900000000{n}@quoalise.localhost — Demo meter {n}" in result.stdout, output
    assert result.stdout.count("consumption/power/active/raw") == 3, output
    # Everything is stopped and the temporary directory is gone.
    match = re.search(r"its log: (/tmp/quoalise-demo\.[^/]+)/", result.stderr)
    assert match, output
    assert not Path(match.group(1)).exists(), f"{match.group(1)} was not removed"
    return output


@pytest.mark.timeout(600)
def test_demo_script_once():
    result = run_demo("--once")
    output = check_tree_and_cleanup(result)
    assert not LIVE_LINE.search(result.stdout), f"--once printed live readings\n{output}"


@pytest.mark.timeout(600)
def test_demo_script_shows_live_readings():
    result = run_demo("--live-for", str(LIVE_FOR))
    output = check_tree_and_cleanup(result)
    lines = LIVE_LINE.findall(result.stdout)
    last_published = [up for up, delayed in lines if delayed]
    live = [up for up, delayed in lines if not delayed]
    assert sorted(last_published) == ["99999000000001", "99999000000002", "99999000000003"], output
    assert len(live) >= 1, f"no live reading within {LIVE_FOR} s\n{output}"
