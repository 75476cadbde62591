"""Track ids at the agent: --track, JSON lines, --on-detect, and --on-enter (a person entered)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from framewire.edge_agent import EdgeAgent
from framewire.edge_agent.actions import EntryWatcher
from framewire.edge_agent.output import ResultEvent
from framewire.ingest.server import IngestServer
from framewire.v1 import common_pb2
from tests.conftest import vtest_path
from tests.harness import ServerThread


def person(track_id: int | None, label: str = "person") -> common_pb2.Detection:
    detection = common_pb2.Detection(label=label, score=0.9)
    if track_id is not None:
        detection.track_id = track_id
    return detection


def test_entry_watcher_reports_each_track_once() -> None:
    watcher = EntryWatcher(frozenset({"person"}))
    assert [d.track_id for d in watcher.entered([person(1), person(2), person(None)])] == [1, 2]
    assert watcher.entered([person(1), person(2)]) == []
    assert [d.track_id for d in watcher.entered([person(2), person(3)])] == [3]
    assert watcher.entered([person(4, "car")]) == []  # not a wanted class
    watcher.reset()  # a reconnect numbers tracks anew
    assert [d.track_id for d in watcher.entered([person(1)])] == [1]


def test_entry_watcher_memory_is_bounded() -> None:
    watcher = EntryWatcher(frozenset(), remember=3)
    for track_id in range(1, 10):
        watcher.entered([person(track_id)])
    assert [d.track_id for d in watcher.entered([person(9), person(8), person(1)])] == [1]


@pytest.mark.slow
def test_track_ids_reach_json_lines_and_the_hooks(
    serve: ServerThread[IngestServer], tmp_path: Path
) -> None:
    detected, entered = tmp_path / "detected.jsonl", tmp_path / "entered.jsonl"
    events: list[ResultEvent] = []
    agent = EdgeAgent(
        server=f"127.0.0.1:{serve.server.port}",
        source=str(vtest_path()),
        stream_id="tracked",
        track=True,
        frames=40,
        fps=10.0,
        resize=(640, 480),
        on_detect=f"cat >> {shlex.quote(str(detected))}; echo >> {shlex.quote(str(detected))}",
        on_enter=f"cat >> {shlex.quote(str(entered))}; echo >> {shlex.quote(str(entered))}",
    )
    summary = agent.run(on_result=events.append)
    assert summary.processed > 10

    lines = [event.to_json() for event in events if event.kind == "result"]
    ids = [d["track_id"] for line in lines for d in line["detections"]]
    assert any(track_id is not None for track_id in ids)
    # A person walking through vtest keeps one id over many frames.
    persistent = [i for i in set(ids) if i is not None and ids.count(i) >= 5]
    assert persistent, f"no track id lasted 5 results: {sorted(filter(None, ids))}"

    hooked = [json.loads(line) for line in detected.read_text().splitlines()]
    assert any(d["track_id"] is not None for event in hooked for d in event["detections"])

    arrivals = [json.loads(line) for line in entered.read_text().splitlines()]
    newcomers = [d for event in arrivals for d in event["entered"]]
    assert newcomers
    assert all(d["label"] == "person" for d in newcomers)
    newcomer_ids = [d["track_id"] for d in newcomers]
    assert len(newcomer_ids) == len(set(newcomer_ids)), "a person entered twice"
    person_ids = {
        d["track_id"]
        for line in lines
        for d in line["detections"]
        if d["label"] == "person" and d["track_id"] is not None
    }
    assert set(newcomer_ids) <= person_ids
    # Every person track that was delivered was announced (none was dropped: the queue is 8).
    assert summary.actions_dropped == 0
    assert set(newcomer_ids) == person_ids
