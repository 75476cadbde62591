"""FlowHints end to end: a stream whose frames the server keeps skipping is told to send fewer,
and an agent with --follow-hints does, so the bytes thrown away stop.

The real edge-agent against a real `framewire serve` (the default SSD model),
capturing at 60 fps with a fixed window of 8: it sends every capture the
window lets through, far more than the model serves, so the server supersedes
most of them. What is asserted is what happens to the stream (the hint, the
send rate against the hinted one, the share skipped), not how fast the model is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from framewire.edge_agent import EdgeAgent
from framewire.edge_agent.output import ResultEvent
from framewire.ingest.serve_command import start_serve
from framewire.ingest.server import IngestServer
from framewire.v1 import ingest_service_pb2
from tests.conftest import vtest_path
from tests.harness import ServerThread, metric_value, scrape
from tests.ingest.conftest import serve_config

pytestmark = pytest.mark.slow

# Reviews every second (the default is 2 s), so the test is short.
HINT_INTERVAL = 1.0
# After the first hint: a moment for frames sent before it to be answered, then the
# stretch judged.
SETTLE = 1.0
JUDGED = 4.0


@pytest.fixture(scope="module")
def hinting_serve() -> Iterator[ServerThread[IngestServer]]:
    server = ServerThread(lambda: start_serve(serve_config(hint_interval=HINT_INTERVAL)))
    yield server
    server.stop()


@dataclass
class Watch:
    """What the agent's answers showed, and when (time.monotonic)."""

    started: float
    answered: set[int] = field(default_factory=set)
    skipped: set[int] = field(default_factory=set)
    hints: list[tuple[float, ingest_service_pb2.FlowHint]] = field(default_factory=list)
    sent: list[tuple[float, int]] = field(default_factory=list)  # frames sent so far, by then
    stopped_at: float = 0.0

    def sent_by(self, moment: float) -> int:
        """Frames sent by ``moment``, as seen at the first answer after it."""
        return next((sent for when, sent in self.sent if when >= moment), self.sent[-1][1])

    def skip_share(self, seqs: range) -> float:
        skipped = len(self.skipped.intersection(seqs))
        answered = len(self.answered.intersection(seqs))
        assert skipped + answered, f"no answers for seqs {seqs}"
        return skipped / (skipped + answered)


def test_a_stream_whose_frames_keep_being_skipped_is_hinted_and_the_agent_sends_less(
    hinting_serve: ServerThread[IngestServer],
) -> None:
    server = hinting_serve.server
    before = scrape(server.metrics_port)
    agent = EdgeAgent(
        server=f"127.0.0.1:{server.port}",
        source=str(vtest_path()),
        stream_id="hinted-rate",
        resize=(480, 270),  # under twice the model's input: no scale advice, only the rate
        fps=60.0,
        loop=True,
        duration=60.0,  # a bound only: the run stops SETTLE + JUDGED after the first hint
        max_in_flight=8,
        fixed_window=True,
        follow_hints=True,
    )
    watch = Watch(started=time.monotonic())

    def on_answer(event: ResultEvent) -> None:  # on the agent's network thread
        now = time.monotonic()
        watch.sent.append((now, agent.ledger.sent))
        if event.kind == "result" and event.seq is not None:
            watch.answered.add(event.seq)
        watch.skipped.update(seq for seq, _ in event.skipped)
        hint = agent.last_hint
        if hint is not None and (not watch.hints or watch.hints[-1][1] is not hint[1]):
            watch.hints.append((hint[0], hint[1]))
        if watch.hints and not watch.stopped_at and now > watch.hints[0][0] + SETTLE + JUDGED:
            watch.stopped_at = now
            agent.stop()

    summary = agent.run(on_result=on_answer)
    assert summary.check() == []
    assert summary.lost == 0
    assert watch.stopped_at, f"no FlowHint within 60 s:\n{summary.format()}"
    assert summary.hints >= len(watch.hints) >= 1

    # The hint came from the server, advising a frame rate because frames were skipped.
    after = scrape(server.metrics_port)
    assert metric_value(after, "framewire_flow_hints_total") > metric_value(
        before, "framewire_flow_hints_total"
    )
    hinted_at, first = watch.hints[0]
    assert first.HasField("target_fps"), first
    assert first.target_fps > 0, first
    assert "skipped" in first.reason, first.reason

    # Before it: the agent sent as fast as the window let it, and the server threw
    # much of that away.
    sent_before = watch.sent_by(hinted_at)
    rate_before = sent_before / (hinted_at - watch.started)
    share_before = watch.skip_share(range(1, sent_before + 1))
    assert share_before >= 0.25, (share_before, summary.format())

    # After it: the agent sends at about the hinted rate, and little is thrown away.
    rate_after = (summary.sent - sent_before) / (watch.stopped_at - hinted_at)
    hinted_fps = [hint.target_fps for _, hint in watch.hints]
    assert rate_after < rate_before, (rate_after, rate_before)
    assert rate_after <= 1.2 * max(hinted_fps), (rate_after, hinted_fps)
    share_after = watch.skip_share(range(watch.sent_by(hinted_at + SETTLE) + 1, summary.sent + 1))
    assert share_after < 0.25, (share_after, share_before, summary.format())
    assert share_after < share_before / 2, (share_after, share_before)
    # The captures not sent were skipped at the edge, where they cost no bytes.
    assert summary.skipped_edge.get("superseded", 0) > 0, summary.skipped_edge


def test_a_stream_whose_skips_are_all_at_the_edge_needs_no_hint(
    hinting_serve: ServerThread[IngestServer],
) -> None:
    # The default agent (adaptive window) at 60 fps on loopback: it keeps one frame
    # in flight, so the newer captures are replaced at the edge before any byte is
    # sent, the server skips nothing, and it has nothing to advise.
    summary = EdgeAgent(
        server=f"127.0.0.1:{hinting_serve.server.port}",
        source=str(vtest_path()),
        stream_id="edge-skips",
        resize=(480, 270),
        fps=60.0,
        loop=True,
        duration=5.0,  # 4 reviews or more at HINT_INTERVAL
        follow_hints=True,
    ).run()
    assert summary.check() == []
    assert summary.skipped_edge.get("superseded", 0) > 0, summary.format()
    assert sum(summary.skipped_server.values()) == 0, summary.format()
    assert summary.hints == 0, summary.format()
