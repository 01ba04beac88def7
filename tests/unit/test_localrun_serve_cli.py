"""`python -m localrun serve | watch | fault`: options, usage errors before anything
starts, and local.settings.json.example agreeing with what `serve` prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import localrun.serve as serve
from localrun.__main__ import main
from localrun.produce import main as produce
from standins.identity.endpoint import TOKEN_PATH

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    async def must_not_run(*args: Any) -> int:
        raise AssertionError("serve started despite a usage error")

    monkeypatch.setattr(serve, "serve", must_not_run)


def test_the_example_settings_are_what_serve_prints_with_its_fixed_ports() -> None:
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    ports = serve._ports(serve.parse_args([]))
    assert ports == serve.PORTS
    from standins.servicebus import LocalBroker

    broker = LocalBroker(port=ports["broker"])
    broker._port = ports["broker"]  # not started: only its connection string is wanted
    printed = serve.local_settings_file(
        serve.app_settings(
            connection_string=broker.connection_string,
            batch_endpoint=f"https://localhost:{ports['batch']}",
            # serve writes the absolute path of this file; the example cannot know it.
            ca_path=".localrun/batch-ca.pem",
            identity_endpoint=f"http://127.0.0.1:{ports['identity']}{TOKEN_PATH}",
        )
    )
    assert example == printed


def test_ports_are_fixed_free_or_given() -> None:
    assert serve._ports(serve.parse_args(["--free-ports"])) == dict.fromkeys(serve.PORTS, 0)
    assert serve._ports(serve.parse_args(["--free-ports", "--batch-port", "9443"]))["batch"] == 9443
    assert serve._ports(serve.parse_args(["--broker-port", "5673"]))["broker"] == 5673


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["serve", "--jobs", "{tmp}/missing.jsonl"], "missing.jsonl"),
        (["serve", "--fault", "teapot"], "--fault 'teapot'"),
        (["serve", "--setting", "NO_EQUALS_SIGN"], "expected NAME=VALUE"),
        (["watch", "--state", "{tmp}/none.json"], "start `python -m localrun serve` first"),
        (["watch", "--state", "{tmp}/bad.json"], "unreadable"),
        (["watch", "--connection-string", "Endpoint=sb://x;", "--count", "0"], "--count must be at least 1"),
        (["fault", "--state", "{tmp}/none.json"], "start `python -m localrun serve` first"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m localrun {argv[0]}: error: ") and err.count("\n") == 1, err
    assert says in err


def test_the_main_job_keeps_its_options_and_its_usage_errors() -> None:
    # No subcommand: exactly the old parser (its flags, its exit 2 for a bad option).
    with pytest.raises(SystemExit) as exited:
        main(["--timeout"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0


def test_produce_local_reads_the_state_file_and_state_needs_local(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert produce(["--local", "--state", str(tmp_path / "none.json"), "--job", "j", "--priority", "1"]) == 2
    assert "start `python -m localrun serve` first" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        produce(["--connection-string", "x", "--state", "y", "--job", "j", "--priority", "1"])
    assert exited.value.code == 2
