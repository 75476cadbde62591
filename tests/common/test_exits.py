"""One exit-code scheme: the table in code, in docs/exit-codes.md and in every --help agree."""

from __future__ import annotations

import re
import sys

import pytest

from framewire import cli
from framewire.common.exits import MEANINGS, ExitCode, describe
from framewire.demo import command as demo_command
from framewire.edge_agent.errors import EXIT_CODES as AGENT_EXIT_CODES
from framewire.inference import command as inference_command
from framewire.ingest import ingest_command, serve_command
from tests.harness import REPO_ROOT

COMMANDS = {
    "serve": serve_command.EXIT_CODES,
    "ingest": ingest_command.EXIT_CODES,
    "inference": inference_command.EXIT_CODES,
    "demo": demo_command.EXIT_CODES,
}


def documented() -> list[list[str]]:
    """The rows of the table in docs/exit-codes.md, cells stripped of markup."""
    text = (REPO_ROOT / "docs" / "exit-codes.md").read_text()
    rows = []
    for line in text.splitlines():
        if re.match(r"^\| \d+ \|", line):
            rows.append([cell.strip().replace("`", "") for cell in line.strip("|").split("|")])
    return rows


def test_every_code_has_a_meaning_and_the_docs_say_the_same() -> None:
    assert set(MEANINGS) == set(ExitCode)
    rows = documented()
    assert [(int(row[0]), row[1], row[2]) for row in rows] == [
        (code.value, code.name, code.meaning) for code in ExitCode
    ]


def test_the_docs_say_which_command_returns_which_code() -> None:
    columns = {"edge-agent": 3, "servers": 4, "demo": 5}
    rows = {int(row[0]): row for row in documented()}

    def marked(column: str) -> list[int]:
        return sorted(code for code, row in rows.items() if row[columns[column]] == "✔")

    assert marked("edge-agent") == sorted(AGENT_EXIT_CODES)
    for name in ("serve", "ingest", "inference"):
        assert marked("servers") == sorted(COMMANDS[name])
    assert marked("demo") == sorted(COMMANDS["demo"])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_help_ends_with_its_codes(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([name, "--help"])
    assert exited.value.code == ExitCode.OK
    assert capsys.readouterr().out.rstrip().endswith(describe(COMMANDS[name]))


def test_a_missing_extra_is_a_failure_that_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As on a device with only the agent extra: the server's metrics library is absent.
    monkeypatch.delitem(sys.modules, "framewire.demo.command")
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    assert cli.main(["demo"]) == ExitCode.FAILURE
    assert "pip install 'framewire[all]'" in capsys.readouterr().err


def test_usage_errors_of_the_framewire_command() -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["no-such-subcommand"])
    assert exited.value.code == ExitCode.USAGE
