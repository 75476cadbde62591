"""What a device may claim in its AgentReports, and when its unread results end a stream:
the pure rules of framewire.ingest.reports."""

from __future__ import annotations

from framewire.common.protoutil import duration
from framewire.ingest.config import IngestConfig
from framewire.ingest.reports import (
    Rejection,
    ReportBooks,
    UnreadResults,
    judge,
    take_turn,
    too_many_unread,
)
from framewire.v1 import ingest_service_pb2

LIMITS = IngestConfig(report_interval=1.0, max_in_flight_cap=8).report_limits()
CARRY = LIMITS.carryover_frames  # 8 + 2 x 240 fps x 1 s = 488


def books(results_written: int = 0) -> ReportBooks:
    fresh = ReportBooks(opened_at=0.0, tokens=float(LIMITS.burst))
    for _ in range(results_written):
        fresh.results.wrote(0.0)
    return fresh


def report(**fields: object) -> ingest_service_pb2.AgentReport:
    return ingest_service_pb2.AgentReport(**fields)  # type: ignore[arg-type]


def test_the_carry_over_covers_a_window_and_two_intervals_at_the_capture_limit() -> None:
    assert CARRY == 8 + 2 * 240


def test_reports_beyond_the_rate_are_refused_and_the_allowance_refills() -> None:
    ledger = books()
    taken = [take_turn(ledger, LIMITS, now=0.0) for _ in range(LIMITS.burst + 2)]
    assert taken == [True] * LIMITS.burst + [False, False]
    assert take_turn(ledger, LIMITS, now=1.0 / LIMITS.reports_per_second)


def test_an_honest_report_is_accepted_and_acknowledges_what_was_read() -> None:
    ledger = books(results_written=10)
    honest = report(
        frames_captured=10,
        frames_sent=10,
        bytes_sent=10 * 20_000,
        end_to_end_latencies=[duration(0.05)] * 10,
        results_received=10,
    )
    assert judge(honest, ledger, LIMITS, now=1.0, received=10) is None
    assert ledger.frames_sent == 10
    assert ledger.results.unread == 0


def test_each_implausible_figure_is_named() -> None:
    huge = 2**64 - 1
    cases = {
        Rejection.CAPTURED: report(frames_captured=huge),
        Rejection.SENT: report(frames_sent=CARRY + 11),
        Rejection.BYTES: report(frames_sent=1, bytes_sent=LIMITS.max_frame_bytes + 1),
        Rejection.SKIPS: report(skips=[ingest_service_pb2.SkipCount(reason=1, count=CARRY + 1)]),
        Rejection.LATENCIES: report(end_to_end_latencies=[duration(LIMITS.max_latency + 1)]),
        Rejection.RESULTS: report(results_received=11),
    }
    for reason, lie in cases.items():
        ledger = books(results_written=10)
        assert judge(lie, ledger, LIMITS, now=1.0, received=10) is reason, reason
        assert ledger.frames_sent == 0  # nothing of a rejected report is believed
        assert ledger.results.acknowledged == 0


def test_more_latency_samples_than_results_written_are_refused() -> None:
    ledger = books(results_written=2)
    samples = report(end_to_end_latencies=[duration(0.01)] * (2 + CARRY + 1))
    assert judge(samples, ledger, LIMITS, now=1.0, received=2) is Rejection.LATENCIES


def test_without_results_received_the_latency_samples_acknowledge() -> None:
    ledger = books(results_written=5)
    assert judge(report(end_to_end_latencies=[duration(0.01)] * 3), ledger, LIMITS, now=1.0,
                 received=5) is None  # fmt: skip
    assert ledger.results.acknowledged == 3


def test_a_stream_is_cut_only_when_results_pile_up_and_the_oldest_is_old() -> None:
    unread = UnreadResults()
    for moment in range(100):
        unread.wrote(moment * 0.01)  # 100 results over a second
    assert not too_many_unread(unread, now=1.0, limit=50, max_age=5.0)  # many, but fresh
    assert too_many_unread(unread, now=6.0, limit=50, max_age=5.0)  # many and old
    unread.acknowledge(60)
    assert unread.unread == 40
    assert not too_many_unread(unread, now=6.0, limit=50, max_age=5.0)  # few
    unread.acknowledge(1000)  # more than written counts as all of them
    assert unread.unread == 0
    assert unread.oldest_age(now=7.0) == 0.0
