"""The command line's own wiring: serve's defaults are config.Settings' (stated
there only), and the options of every command come out as before."""

from __future__ import annotations

import os

import pytest

from service import cli, cli_serve
from service.cli_common import ENV_PREFIX
from service.config import Settings


@pytest.fixture
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_environment")
def test_serve_defaults_are_the_settings_defaults() -> None:
    assert cli_serve.settings_from_args(cli.parser().parse_args(["serve"])) == Settings()


@pytest.mark.usefixtures("no_environment")
def test_the_help_names_the_settings_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    d = Settings()
    for said in (
        f"(default {d.host})",
        f"port (default {d.port})",
        f"(default {d.workers}); more than 1 needs --redis-url",
        f"(default {d.max_body_bytes})",
        f"(default {d.limits.max_chars})",
        f"(default {d.limits.max_retention_s} = 13 months; 0 = none)",
        f"(default {d.emporix_idle_ttl_s} = 30 days; 0 = never)",
        f"(default {d.durability.timeout_ms})",
        f"(default {d.header_timeout_s:g}; 0 = none)",
        f"(default {d.body_timeout_s:g}; 0 = none)",
        f"(default {d.keep_alive_timeout_s:g})",
    ):
        assert said in text, said


def test_an_option_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PREFIX + "MAX_PROPERTIES", "7")
    monkeypatch.setenv(ENV_PREFIX + "ACCESS_LOG", "yes")
    settings = cli_serve.settings_from_args(cli.parser().parse_args(["serve"]))
    assert settings.limits.max_properties == 7 and settings.access_log
    assert cli.parser().parse_args(["serve", "--max-properties", "9"]).max_properties == 9  # the option wins


@pytest.mark.usefixtures("no_environment")
def test_the_timeouts_reach_the_server_and_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PREFIX + "BODY_TIMEOUT", "7.5")
    args = cli.parser().parse_args(["serve", "--header-timeout", "3", "--keep-alive-timeout", "60"])
    settings = cli_serve.settings_from_args(args)
    assert (settings.header_timeout_s, settings.body_timeout_s, settings.keep_alive_timeout_s) == (3, 7.5, 60)
    for refused in (["--header-timeout", "-1"], ["--body-timeout", "-1"], ["--keep-alive-timeout", "0"]):
        assert "timeout" in (cli_serve.refusal(cli.parser().parse_args(["serve", *refused])) or ""), refused
