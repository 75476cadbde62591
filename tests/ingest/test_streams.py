"""The per-stream rules: latest frame wins, skips counted and reported, answers in order."""

from __future__ import annotations

import random

import pytest

from framewire.common import errors
from framewire.ingest.streams import Outcome, StreamSession, StreamSettings
from framewire.v1 import common_pb2, ingest_service_pb2

SUPERSEDED = ingest_service_pb2.SKIP_REASON_SUPERSEDED
STALE = ingest_service_pb2.SKIP_REASON_STALE


def session(max_in_flight: int = 8) -> StreamSession:
    return StreamSession(
        1,
        StreamSettings(
            stream_id="cam",
            score_threshold=0.5,
            class_filter=(),
            max_in_flight=max_in_flight,
            client_version="test",
        ),
    )


def frame(seq: int) -> ingest_service_pb2.Frame:
    return ingest_service_pb2.Frame(seq=seq, encoding=common_pb2.ENCODING_JPEG, data=b"x")


def ok(seq: int) -> ingest_service_pb2.FrameResult:
    return ingest_service_pb2.FrameResult(seq=seq)


def drain(stream: StreamSession) -> list[ingest_service_pb2.StreamFramesResponse]:
    out = []
    while (response := stream.next_response()) is not None:
        stream.delivered_response(response)
        out.append(response)
    return out


def describe(responses: list[ingest_service_pb2.StreamFramesResponse]) -> list[tuple]:
    """(kind, seq, [(skipped seq, reason)]) per response, for readable asserts."""
    rows = []
    for response in responses:
        if response.HasField("result"):
            skipped = [(s.seq, s.reason) for s in response.result.skipped]
            rows.append(("result", response.result.seq, skipped))
        else:
            skipped = [(s.seq, s.reason) for s in response.skip_notice.skipped]
            rows.append(("notice", None, skipped))
    return rows


def test_a_frame_taken_and_completed_is_answered_once() -> None:
    stream = session()
    assert stream.accept(frame(1), now=0.0)
    taken = stream.take(now=0.1, max_age=0.5)
    assert taken is not None
    assert taken.seq == 1
    assert drain(stream) == []
    stream.complete(1, ok(1))
    assert describe(drain(stream)) == [("result", 1, [])]
    assert stream.outcomes == {Outcome.PROCESSED: 1}
    assert stream.unanswered == 0


def test_newer_frame_supersedes_the_waiting_one_and_the_next_result_says_so() -> None:
    stream = session()
    assert stream.accept(frame(1), now=0.0)
    assert not stream.accept(frame(2), now=0.01)  # slot was already full: no new place in line
    assert stream.slot_since == 0.0  # the stream keeps its place in the line
    taken = stream.take(now=0.02, max_age=0.5)
    assert taken is not None
    assert taken.seq == 2
    stream.complete(2, ok(2))
    assert describe(drain(stream)) == [("result", 2, [(1, SUPERSEDED)])]
    assert stream.outcomes == {Outcome.SUPERSEDED: 1, Outcome.PROCESSED: 1}


def test_stale_frame_with_nothing_pending_is_reported_at_once() -> None:
    stream = session()
    stream.accept(frame(5), now=0.0)
    assert stream.take(now=0.6, max_age=0.5) is None
    assert describe(drain(stream)) == [("notice", None, [(5, STALE)])]
    assert stream.outcomes == {Outcome.STALE: 1}
    assert stream.unanswered == 0


def test_stale_frame_rides_on_the_result_still_due() -> None:
    stream = session()
    stream.accept(frame(1), now=0.0)
    assert stream.take(now=0.0, max_age=0.5) is not None
    stream.accept(frame(2), now=0.1)
    assert stream.take(now=0.7, max_age=0.5) is None
    assert drain(stream) == []  # frame 1's result is due, the skip waits for it
    stream.complete(1, ok(1))
    assert describe(drain(stream)) == [("result", 1, [(2, STALE)])]


def test_results_leave_in_seq_order_whatever_order_batches_finish() -> None:
    stream = session()
    for seq in (1, 2, 3):
        stream.accept(frame(seq), now=0.0)
        assert stream.take(now=0.0, max_age=1.0) is not None
    stream.complete(3, ok(3))
    stream.complete(2, ok(2))
    assert drain(stream) == []
    stream.complete(1, ok(1))
    assert [row[1] for row in describe(drain(stream))] == [1, 2, 3]


def test_rejected_frame_waits_for_earlier_results() -> None:
    stream = session()
    stream.accept(frame(1), now=0.0)
    assert stream.take(now=0.0, max_age=1.0) is not None
    stream.reject(frame(2), errors.invalid_argument("not a JPEG"))
    assert drain(stream) == []
    stream.complete(1, ok(1))
    responses = drain(stream)
    assert [row[1] for row in describe(responses)] == [1, 2]
    assert responses[1].result.error.code == 3
    assert responses[1].result.error.message == "not a JPEG"
    assert stream.outcomes == {Outcome.PROCESSED: 1, Outcome.FAILED: 1}


def test_window_stops_reading_until_answers_are_written() -> None:
    stream = session(max_in_flight=2)
    stream.accept(frame(1), now=0.0)
    assert stream.may_read()
    stream.take(now=0.0, max_age=1.0)
    stream.accept(frame(2), now=0.0)
    assert not stream.may_read()
    stream.complete(1, ok(1))
    assert not stream.may_read()  # answered only once written
    drain(stream)
    assert stream.may_read()


def test_completing_an_unknown_frame_is_a_bug_not_a_silent_no_op() -> None:
    stream = session()
    with pytest.raises(ValueError, match="no pending frame 9"):
        stream.complete(9, ok(9))


def test_finished_only_when_input_closed_and_everything_answered() -> None:
    stream = session()
    stream.accept(frame(1), now=0.0)
    stream.close_input()
    assert not stream.finished
    stream.take(now=0.0, max_age=1.0)
    stream.complete(1, ok(1))
    assert not stream.finished  # the result is not written yet
    drain(stream)
    assert stream.finished


def test_a_newer_hint_replaces_an_unsent_one() -> None:
    stream = session()
    stream.hint(ingest_service_pb2.FlowHint(target_fps=5))
    stream.hint(ingest_service_pb2.FlowHint(target_fps=3))
    responses = drain(stream)
    assert len(responses) == 1
    assert responses[0].hint.target_fps == 3


@pytest.mark.parametrize("seed", range(20))
def test_every_frame_is_answered_exactly_once_in_any_interleaving(seed: int) -> None:
    # A random mix of arrivals, batch takes, out-of-order completions,
    # rejections and writes. Whatever happens, at the end: every frame was
    # answered exactly once, results came in seq order, and the counts add up.
    rng = random.Random(seed)
    stream = session(max_in_flight=4)
    now = 0.0
    seq = 0
    in_flight: list[int] = []
    responses: list[ingest_service_pb2.StreamFramesResponse] = []
    for _ in range(400):
        now += rng.uniform(0.0, 0.2)
        action = rng.random()
        if action < 0.4 and stream.may_read():
            seq += rng.randint(1, 3)  # gaps are allowed
            if rng.random() < 0.1:
                stream.reject(frame(seq), errors.invalid_argument("bad"))
            else:
                stream.accept(frame(seq), now)
        elif action < 0.6:
            taken = stream.take(now, max_age=0.3)
            if taken is not None:
                in_flight.append(taken.seq)
        elif action < 0.8 and in_flight:
            done = in_flight.pop(rng.randrange(len(in_flight)))
            stream.complete(done, ok(done))
        else:
            responses += drain(stream)
    stream.close_input()
    taken = stream.take(now, max_age=0.3)
    if taken is not None:
        in_flight.append(taken.seq)
    for done in in_flight:
        stream.complete(done, ok(done))
    responses += drain(stream)
    assert stream.finished

    result_seqs = [r.result.seq for r in responses if r.HasField("result")]
    skipped = [s.seq for r in responses for s in (r.result.skipped or r.skip_notice.skipped)]
    assert result_seqs == sorted(result_seqs)
    answered = result_seqs + skipped
    assert len(answered) == len(set(answered)) == stream.received
    counts = stream.outcomes
    assert stream.received == (
        counts[Outcome.PROCESSED]
        + counts[Outcome.FAILED]
        + counts[Outcome.SUPERSEDED]
        + counts[Outcome.STALE]
    )
    assert len(skipped) == counts[Outcome.SUPERSEDED] + counts[Outcome.STALE]
    assert stream.unanswered == 0


def test_a_stream_that_ends_with_a_frame_waiting_counts_it_abandoned() -> None:
    counted: list[Outcome] = []
    stream = StreamSession(
        7,
        StreamSettings("cam", 0.5, (), 4, "test"),
        on_outcome=counted.append,
    )
    stream.accept(frame(1), now=0.0)
    taken = stream.take(now=0.0, max_age=1.0)
    assert taken is not None
    stream.accept(frame(2), now=0.1)
    stream.abandon()
    assert stream.slot is None
    # The frame already in a batch is still counted when its batch returns.
    stream.complete(1, ok(1))
    assert counted == [Outcome.ABANDONED, Outcome.PROCESSED]
    assert stream.received == sum(stream.outcomes.values())
