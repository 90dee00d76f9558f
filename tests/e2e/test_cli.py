"""The command line: check-config and print-default-config."""

from quoalise_testkit.harness import REPO, run_cli


def test_check_config_accepts_example():
    result = run_cli("check-config", "--config", str(REPO / "component.toml.example"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_config_names_unknown_key(tmp_path):
    text = (REPO / "component.toml.example").read_text()
    text = text.replace("[xmpp]\n", "[xmpp]\nreconect_delay = \"5s\"\n", 1)
    config = tmp_path / "component.toml"
    config.write_text(text)
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode != 0, result.stdout
    assert "reconect_delay" in result.stdout + result.stderr, result.stdout + result.stderr


def test_print_default_config_is_the_example():
    result = run_cli("print-default-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (REPO / "component.toml.example").read_text()
