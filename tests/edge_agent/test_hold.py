"""The agent's hold against a real `framewire serve` whose model several agents share.

With one model run of one frame at a time (``--batches-in-flight 1
--max-batch-size 1``) and three agents at 30 fps, each frame waits at ingest while
the others' frames run (frames that shared a batch would not be held). Each agent learns
that from the queue time in its results and holds its next frame back after an
answer (framewire.edge_agent.window), so the frame it sends is a newer capture.
What is asserted is that the hold engages and is kept, never how fast anything
went (`python -m bench ingest -- --only plain` measures that).
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from framewire.edge_agent import EdgeAgent
from framewire.edge_agent.output import ResultEvent, Summary
from framewire.edge_agent.window import QUEUE_TARGET
from framewire.ingest.serve_command import start_serve
from framewire.ingest.server import IngestServer
from tests.conftest import vtest_path
from tests.harness import ServerThread
from tests.ingest.conftest import serve_config

pytestmark = pytest.mark.slow

AGENTS = 3
# The first answers build the hold up; the agents are judged from this answer on.
SETTLED_AFTER = 8


@pytest.fixture(scope="module")
def one_run_at_a_time() -> Iterator[ServerThread[IngestServer]]:
    server = ServerThread(lambda: start_serve(serve_config(batches_in_flight=1, max_batch_size=1)))
    yield server
    server.stop()


class Watched:
    """One agent, and for each of its results: when it was delivered (ns) and the hold then."""

    def __init__(self, port: int, name: str) -> None:
        self.agent = EdgeAgent(
            server=f"127.0.0.1:{port}",
            source=str(vtest_path()),
            stream_id=name,
            resize=(480, 270),
            fps=30.0,
            frames=90,
        )
        self.answers: list[tuple[ResultEvent, int, float]] = []
        self.summary: Summary | None = None

    def watch(self, event: ResultEvent) -> None:
        if event.kind == "result" and event.frame is not None:
            self.answers.append((event, time.time_ns(), self.agent.hold))

    def run(self) -> None:
        self.summary = self.agent.run(on_result=self.watch)


def test_agents_sharing_a_busy_model_hold_their_next_frame_back_by_the_learned_hold(
    one_run_at_a_time: ServerThread[IngestServer],
) -> None:
    agents = [Watched(one_run_at_a_time.server.port, f"held-{n}") for n in range(AGENTS)]
    threads = [threading.Thread(target=watched.run) for watched in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for watched in agents:
        summary = watched.summary
        assert summary is not None
        assert summary.check() == [], summary.format()
        assert summary.lost == 0
        settled = watched.answers[SETTLED_AFTER:]
        assert len(settled) > 5, summary.format()
        holds = [hold for _, _, hold in settled]
        # Frames waited for the other agents' runs: more than the queue the hold leaves.
        assert statistics.median(holds) > QUEUE_TARGET, holds
        # The next frame left no sooner than the hold after the answer before it (the
        # callback runs after the hold is set, so the gap measured from it is a little
        # shorter than the real one).
        gaps = [
            (after.frame.sent_ns - delivered_ns) / 1e9 / hold
            for (_, delivered_ns, hold), (after, _, _) in itertools.pairwise(settled)
            if hold > QUEUE_TARGET and after.frame is not None
        ]
        assert gaps, settled
        assert statistics.median(gaps) > 0.8, gaps
        # The summary says so, for people and in JSON.
        assert summary.held > 0, summary.format()
        assert summary.mean_hold is not None
        assert summary.mean_hold > 0
        assert f"{summary.held} frames held back after an answer" in summary.format()
        assert summary.to_json()["held"] == summary.held
