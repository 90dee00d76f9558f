"""README command 1: scripts/demo.sh starts Prosody + the component and shows the tree."""

import re
import subprocess
from pathlib import Path

import pytest

from harness import REPO


@pytest.mark.timeout(600)
def test_demo_script_once():
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh"), "--once"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=540,
        cwd=REPO,
    )
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
