"""--on-detect: runs for matching classes only, never blocks the caller, counts failures."""

from __future__ import annotations

import json
import logging
import shlex
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from framewire.edge_agent.actions import ActionRunner
from tests.harness import wait_until


def event(seq: int, *labels: str) -> dict[str, Any]:
    return {
        "seq": seq,
        "detections": [
            {"label": label, "score": 0.9, "box": [0.1, 0.1, 0.2, 0.2]} for label in labels
        ],
    }


def test_runs_only_for_matching_classes_with_the_event_on_stdin(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    runner = ActionRunner(
        f"cat >> {shlex.quote(str(log))}; echo >> {shlex.quote(str(log))}",
        frozenset({"person", "dog"}),
    )
    offered = [
        runner.offer(event(1, "car")),
        runner.offer(event(2, "person", "car")),
        runner.offer(event(3)),
        runner.offer(event(4, "dog")),
        runner.offer(event(5, "cat", "bicycle")),
    ]
    runner.close()
    assert offered == [False, True, False, True, False]
    lines = log.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [event(2, "person", "car"), event(4, "dog")]
    assert (runner.runs, runner.failures, runner.dropped, runner.skipped_no_match) == (2, 0, 0, 3)


def test_empty_class_set_matches_any_detection(tmp_path: Path) -> None:
    log = tmp_path / "seqs"
    runner = ActionRunner(
        f"python3 -c 'import json,sys; print(json.load(sys.stdin)[\"seq\"])' >> {log}",
        frozenset(),
    )
    assert runner.offer(event(1, "kite"))
    assert not runner.offer(event(2))  # a result with no detections is not a detection
    assert runner.offer(event(3, "person"))
    runner.close()
    assert log.read_text().split() == ["1", "3"]
    assert runner.skipped_no_match == 1


def test_a_slow_command_never_blocks_offer(tmp_path: Path) -> None:
    started = tmp_path / "started"
    # The command outlives the test unless close() kills it: offer() must not wait for it.
    runner = ActionRunner(f"echo >> {started}; sleep 60", frozenset(), queue_size=2, timeout=120)
    assert runner.offer(event(0, "person"))
    wait_until(started.exists, 10, "the first command to start")
    results = [True]
    offering = threading.Thread(
        target=lambda: results.extend(runner.offer(event(seq, "person")) for seq in range(1, 10))
    )
    offering.start()
    offering.join(timeout=30)
    assert not offering.is_alive(), "offer() waited for the running command"
    # One run in progress, two queued; the other seven were dropped. What an offer
    # costs is measured by `python -m bench edge` (goal: under 0.05 s each).
    assert results.count(True) == 3
    assert runner.dropped == 7
    assert runner.pending == 2
    runner.close(timeout=0.5)
    # close() gave up on the queue: the running command was killed, the queued
    # ones abandoned and counted.
    assert runner.dropped == 9
    assert runner.runs == 1
    assert runner.failures == 1
    assert len(started.read_text().splitlines()) == 1


def test_failures_and_timeouts_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="framewire.edge_agent.actions")
    failing = ActionRunner("echo 'camera relay offline' >&2; exit 3", frozenset({"person"}))
    for seq in range(3):
        assert failing.offer(event(seq, "person"))
    failing.close()
    assert (failing.runs, failing.failures) == (3, 3)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3
    assert "exited with status 3" in messages[0]
    assert "stderr: camera relay offline" in messages[0]

    caplog.clear()
    # The command's own children die with it: `sleep` keeps no pipe open.
    hanging = ActionRunner("sleep 30 & sleep 30; wait", frozenset(), timeout=0.3)
    before = time.perf_counter()
    assert hanging.offer(event(1, "person"))
    hanging.close(timeout=10)
    assert time.perf_counter() - before < 5
    assert (hanging.runs, hanging.failures, hanging.dropped) == (1, 1, 0)
    assert "timed out after 0.3 s" in caplog.records[0].getMessage()


def test_close_waits_for_queued_runs(tmp_path: Path) -> None:
    log = tmp_path / "log"
    runner = ActionRunner(f"sleep 0.1; echo done >> {log}", frozenset())
    for seq in range(4):
        assert runner.offer(event(seq, "cup"))
    runner.close(timeout=10)
    assert log.read_text().split() == ["done"] * 4
    assert (runner.runs, runner.failures, runner.dropped) == (4, 0, 0)
    with pytest.raises(RuntimeError, match=r"offer\(\) after close\(\)"):
        runner.offer(event(9, "cup"))


def test_offer_from_many_threads_at_once(tmp_path: Path) -> None:
    log = tmp_path / "log"
    runner = ActionRunner(f"cat >> {log}; echo >> {log}", frozenset({"person"}), queue_size=64)
    threads = [
        threading.Thread(target=lambda: [runner.offer(event(n, "person")) for n in range(8)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runner.close(timeout=20)
    assert runner.runs + runner.dropped == 32
    assert len(log.read_text().splitlines()) == runner.runs


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="command is empty"):
        ActionRunner("  ", frozenset())
    with pytest.raises(ValueError, match="queue_size 0"):
        ActionRunner("true", frozenset(), queue_size=0)
    with pytest.raises(ValueError, match="timeout 0"):
        ActionRunner("true", frozenset(), timeout=0)
    with pytest.raises(ValueError, match="NUL"):
        ActionRunner("echo \0", frozenset())
    runner = ActionRunner("true", frozenset())
    with pytest.raises(TypeError, match="not JSON serializable"):
        runner.offer({"detections": [{"label": "person", "when": object()}]})
    runner.close()


def test_a_dead_worker_is_reported_to_the_caller(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runner = ActionRunner("true", frozenset())

    def broken(payload: bytes) -> None:
        raise RuntimeError("bug in the worker")

    # Fault injection: a bug in the worker must reach the agent, not vanish with its thread.
    monkeypatch.setattr(runner, "_run", broken)
    assert runner.offer(event(1, "person"))
    runner._worker.join(timeout=5)  # the bug ends the worker thread
    with pytest.raises(RuntimeError, match="the --on-detect worker died: RuntimeError"):
        runner.offer(event(2, "person"))
    assert "the --on-detect worker died" in caplog.text
    runner.close()
