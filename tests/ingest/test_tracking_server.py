"""Tracking through a real `framewire serve`: the server-wide flag, and a stream's own threshold."""

from __future__ import annotations

import argparse

import pytest

from framewire.common import settings
from framewire.ingest.serve_command import ServeConfig, start_serve
from framewire.ingest.server import IngestServer
from tests.harness import ServerThread
from tests.streaming import SyncStream, config_request, frame_request, vtest_jpegs

pytestmark = pytest.mark.slow


def parse(*flags: str) -> ServeConfig:
    """The settings `framewire serve FLAGS` would run with."""
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, ServeConfig)
    return settings.from_namespace(ServeConfig, parser.parse_args(list(flags)), environ={})


def test_track_flag_tracks_every_stream() -> None:
    config = parse(
        "--track", "--port", "0", "--host", "127.0.0.1", "--metrics-port", "-1",
        "--max-frame-age", "5s",
    )  # fmt: skip
    assert config.ingest.tracking.track
    with ServerThread[IngestServer](lambda: start_serve(config)) as serve:
        stream = SyncStream(serve.server.port)
        try:
            stream.send(config_request("asks-nothing", score_threshold=0.6))
            accepted = stream.read().accepted
            assert accepted.score_threshold == pytest.approx(0.6)
            results = []
            for seq, jpeg in enumerate(vtest_jpegs(count=6, step=1), 1):
                stream.send(frame_request(seq, jpeg))
                response = stream.read()
                while response.WhichOneof("kind") != "result":  # a FlowHint may come first
                    response = stream.read()
                results.append(response.result)
        finally:
            stream.close()
    detections = [d for result in results for d in result.detections]
    assert any(d.HasField("track_id") for d in detections)
    # The model was asked down to the tracker's low score; the stream still gets >= 0.6.
    assert all(d.score >= 0.6 for d in detections)
