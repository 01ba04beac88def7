"""The producer command's choice of connection: a connection string or Entra, exactly one."""

from __future__ import annotations

import pytest

from localrun.produce import main


@pytest.mark.parametrize(
    "argv",
    [
        ["--job", "j", "--priority", "1"],  # neither
        [
            "--connection-string",
            "Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b",
            "--namespace",
            "x.servicebus.windows.net",
            "--job",
            "j",
        ],
    ],
)
def test_exactly_one_of_connection_string_or_namespace(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_an_invalid_message_is_refused_before_any_connection(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--namespace", "x.servicebus.windows.net", "--job", "bad id", "--priority", "1"]) == 1
    assert '"$.jobId"' in capsys.readouterr().out
