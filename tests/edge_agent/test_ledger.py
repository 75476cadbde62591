"""The agent's books: every captured frame counted once, reports carry deltas."""

from __future__ import annotations

import collections

import numpy as np

from framewire.common.protoutil import seconds
from framewire.edge_agent.ledger import (
    DISCONNECTED,
    STALE,
    SUPERSEDED,
    LatestFrame,
    Ledger,
    SentFrame,
)
from framewire.edge_agent.output import Summary
from framewire.edge_agent.sources import CapturedFrame
from framewire.v1 import common_pb2, ingest_service_pb2


def captured(index: int) -> CapturedFrame:
    return CapturedFrame(index=index, image=np.zeros((2, 2, 3), np.uint8), capture_ns=index)


def sent(seq: int, capture_ns: int = 0) -> SentFrame:
    return SentFrame(
        seq=seq, capture_ns=capture_ns, sent_ns=0, size=100, width=2, height=2, keyframe=False
    )


def test_latest_frame_replaces_and_counts_by_connection_state() -> None:
    notified = []
    latest = LatestFrame(notify=lambda: notified.append(1))
    latest.put(captured(0))
    latest.put(captured(1))  # replaces 0 while disconnected
    latest.connected = True
    latest.put(captured(2))  # replaces 1 while connected
    taken = latest.take()
    assert taken is not None
    assert taken.index == 2
    assert latest.take() is None
    latest.put(captured(3))
    assert latest.discard()
    assert not latest.discard()
    total, replaced = latest.counts()
    assert total == 4
    assert replaced == {DISCONNECTED: 1, SUPERSEDED: 2}
    assert len(notified) == 4


def test_results_skips_and_disconnects_book_every_sent_frame_once() -> None:
    ledger = Ledger()
    for seq in range(1, 6):
        ledger.on_sent(sent(seq, capture_ns=1_000_000_000))
    result = ingest_service_pb2.FrameResult(seq=2)
    result.skipped.add(seq=1, reason=STALE)
    answer = ledger.on_result(result, now_ns=1_250_000_000)
    assert answer.frame is not None
    assert answer.frame.seq == 2
    assert [(frame.seq, reason) for frame, reason in answer.skipped] == [(1, STALE)]
    assert ledger.latencies[-1] == 0.25
    failed = ingest_service_pb2.FrameResult(seq=3, error=common_pb2.ErrorStatus(code=3))
    ledger.on_result(failed, now_ns=1_300_000_000)
    notice = ingest_service_pb2.SkipNotice()
    notice.skipped.add(seq=4, reason=SUPERSEDED)
    notice.skipped.add(seq=99, reason=SUPERSEDED)
    assert ledger.on_skip_notice(notice).unknown == [99]
    assert [frame.seq for frame in ledger.on_disconnect()] == [5]
    assert ledger.sent == 5
    assert (ledger.processed, ledger.failed, ledger.lost) == (1, 1, 1)
    assert ledger.server_skipped == {STALE: 1, SUPERSEDED: 1}
    assert ledger.answered == ledger.sent
    assert not ledger.in_flight


def test_reports_carry_deltas_and_lost_frames_as_disconnected() -> None:
    ledger = Ledger()
    ledger.on_sent(sent(1))
    ledger.on_sent(sent(2))
    ledger.on_result(ingest_service_pb2.FrameResult(seq=1), now_ns=50_000_000)
    replaced = collections.Counter({SUPERSEDED: 3})
    first = ledger.report(captured=6, replaced=replaced, max_samples=10)
    assert first is not None
    assert (first.frames_captured, first.frames_sent, first.bytes_sent) == (6, 2, 200)
    assert [seconds(latency) for latency in first.end_to_end_latencies] == [0.05]
    assert {(s.reason, s.count) for s in first.skips} == {(SUPERSEDED, 3)}
    assert ledger.report(captured=6, replaced=replaced, max_samples=10) is None
    ledger.on_disconnect()
    replaced[DISCONNECTED] += 2
    second = ledger.report(captured=9, replaced=replaced, max_samples=10)
    assert second is not None
    assert second.frames_captured == 3
    assert {(s.reason, s.count) for s in second.skips} == {(DISCONNECTED, 3)}  # 2 unsent + 1 lost


def test_reports_keep_the_newest_samples_within_the_limit() -> None:
    ledger = Ledger()
    for seq in range(1, 6):
        ledger.on_sent(sent(seq))
        ledger.on_result(ingest_service_pb2.FrameResult(seq=seq), now_ns=seq * 10_000_000)
    report = ledger.report(captured=5, replaced=collections.Counter(), max_samples=2)
    assert report is not None
    assert [round(seconds(d), 3) for d in report.end_to_end_latencies] == [0.04, 0.05]


def test_summary_check_finds_broken_books() -> None:
    summary = Summary(
        stream_id="s", seconds=1.0, captured=10, sent=8, processed=6, failed=1,
        skipped_edge={"superseded": 2}, skipped_server={"stale": 1}, lost=0,
        bytes_sent=800, latencies=[0.1, 0.2],
    )  # fmt: skip
    assert summary.check() == []
    summary.processed = 5
    assert summary.check() == ["sent 8 != answered 6 + skipped by the server 1 + lost 0"]
    assert "latency  capture to result p50 100 ms" in summary.format()


def test_a_frame_given_back_waits_again_or_is_counted_as_replaced() -> None:
    # The stream broke while a taken frame was being encoded: it is not lost.
    latest = LatestFrame()
    latest.put(captured(0))
    taken = latest.take()
    assert taken is not None
    latest.give_back(taken)
    again = latest.take()
    assert again is not None
    assert again.index == 0
    latest.put(captured(1))  # a newer capture arrives before the frame comes back
    latest.give_back(again)
    newest = latest.take()
    assert newest is not None
    assert newest.index == 1
    total, replaced = latest.counts()
    assert total == 2
    assert replaced == {DISCONNECTED: 1}
