"""The commands: `framewire token new`, `framewire demo --tls`, and the security flags."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from framewire import cli
from framewire.common.auth import hash_token, parse_token_file
from framewire.common.exits import ExitCode
from framewire.common.serving import SecurityConfig
from framewire.common.settings import add_arguments, from_namespace
from tests.conftest import vtest_path
from tests.harness import framewire_command


def test_token_new_prints_a_token_and_the_line_that_admits_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["token", "new", "--stream-id", "lobby-*", "--stream-id", "door-1"])
    assert code == ExitCode.OK
    token, line = capsys.readouterr().out.splitlines()
    (entry,) = parse_token_file(line)
    assert entry.digest == hash_token(token)
    assert entry.patterns == ("lobby-*", "door-1")
    assert entry.name == "token-" + entry.digest.removeprefix("sha256:")[:8]
    assert entry.covers("lobby-7")
    assert not entry.covers("door-2")


def test_token_new_refuses_a_pattern_that_is_no_stream_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["token", "new", "--stream-id", "lobby 1"]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "'lobby 1' is not a stream id" in captured.err


def test_security_flags_and_their_defaults() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser, SecurityConfig)
    defaults = from_namespace(SecurityConfig, parser.parse_args([]), environ={})
    assert defaults == SecurityConfig()
    assert defaults.reflection is False
    assert defaults.tls is False
    assert defaults.authenticator() is None
    given = from_namespace(
        SecurityConfig,
        parser.parse_args(["--tls-cert", "c.pem", "--tls-key", "k.pem", "--reflection"]),
        environ={"FRAMEWIRE_MAX_STREAMS_PER_TOKEN": "9"},
    )
    assert given.tls_cert == Path("c.pem")
    assert given.reflection is True
    assert given.max_streams_per_token == 9
    with pytest.raises(ValueError, match="--tls-cert and --tls-key go together"):
        SecurityConfig(tls_cert=Path("c.pem"))
    with pytest.raises(ValueError, match="--tls-client-ca \\(mTLS\\) needs server TLS"):
        SecurityConfig(tls_client_ca=Path("ca.pem"))


@pytest.mark.slow
def test_demo_runs_over_tls_with_a_throwaway_ca_and_a_token() -> None:
    video = vtest_path()
    done = subprocess.run(
        framewire_command("demo", "--tls", "--frames", "10", "--quiet", "--video", str(video)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == ExitCode.OK, output[-4000:]
    assert "tls: server certificate from a throwaway CA" in done.stdout
    assert "device token for stream 'demo'" in done.stdout
    assert "(TLS, token required)" in done.stdout
    assert "captured 10" in done.stdout
    assert "fwt_" not in output  # the token itself is never printed
