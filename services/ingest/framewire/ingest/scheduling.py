"""Deadline-aware batching decisions, as pure functions over a learned cost model.

Ingest is model-agnostic: it does not know whether a batch of eight costs
eight times a batch of one (a CPU) or about the same (a GPU). It learns it,
per target, from the batches it sends (:class:`CostModel`), and decides with
that knowledge before any model time is spent:

- A frame whose age plus the expected time of the batch it would join exceeds
  the latency budget cannot be answered in time: it is skipped (``stale``)
  now rather than after costing model time (Deep-Framework's rule).
- A batch grows only while its oldest frame still makes the budget at the
  larger size, so on a CPU batches stay small under load and on a GPU, where
  a larger batch costs little more, they grow to the limit.
- Where batching saves little (a CPU), the frames waiting are spread over the
  model slots, so several small batches run at once and keep every core
  busy, instead of one large batch leaving a slot idle.
- A batch waits for more frames only where a fuller batch is cheaper per
  image, and never longer than it is expected to run (:func:`batch_wait`).
- How many batches run at once at a target follows the same knowledge: all
  its slots where batching saves little, two where it pays
  (:func:`useful_in_flight`). Where it pays, the second batch leaves only
  shortly before the target is expected to be free (:func:`pipelined_send_at`),
  so frames that arrive meanwhile join it instead of a later, smaller one.
- What a batch cost the target is the target time that passed while it was
  out, a clock that runs at 1/n of the wall clock while n batches are out
  (:class:`TargetLoad`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from framewire.common.contract import PIPELINE_DEPTH

# How much each new observation moves the estimate (an EWMA): recent enough to
# follow a model that warms up or a machine that gets busier, steady enough
# that one slow batch does not swing decisions.
SMOOTHING = 0.2


@dataclass
class _Curve:
    """Seconds per batch size, smoothed, with a line for the sizes not seen."""

    smoothing: float
    estimates: dict[int, float] = field(default_factory=dict)
    # The fitted line, until the estimates change: the batcher asks several times per batch.
    _line: tuple[float, float] | None = None

    def observe(self, size: int, seconds: float) -> None:
        previous = self.estimates.get(size)
        self.estimates[size] = (
            seconds if previous is None else previous + self.smoothing * (seconds - previous)
        )
        self._line = None

    def forget(self, size: int) -> None:
        """Drops the estimate for ``size`` (it describes other conditions)."""
        if self.estimates.pop(size, None) is not None:
            self._line = None

    def expected(self, size: int) -> float:
        if size in self.estimates:
            return self.estimates[size]
        if not self.estimates:
            return 0.0
        if len(self.estimates) == 1:
            ((seen, cost),) = self.estimates.items()
            return cost * size / seen
        if self._line is None:
            self._line = self._fit()
        fixed, per_image = self._line
        return max(0.0, fixed + per_image * size)

    def _fit(self) -> tuple[float, float]:
        """Least-squares line through the estimates: (fixed cost, cost per image)."""
        sizes = list(self.estimates)
        costs = [self.estimates[size] for size in sizes]
        count = len(sizes)
        mean_size = sum(sizes) / count
        mean_cost = sum(costs) / count
        spread = sum((size - mean_size) ** 2 for size in sizes)
        covariance = sum(
            (size - mean_size) * (cost - mean_cost) for size, cost in zip(sizes, costs, strict=True)
        )
        per_image = covariance / spread
        # A cost can only grow with the batch; noise must not make it look free.
        per_image = max(per_image, 0.0)
        return mean_cost - per_image * mean_size, per_image


@dataclass
class CostModel:
    """What a batch of each size costs at one target, learned online.

    Two curves, each the smoothed observation for sizes seen and, for others,
    a line fitted through the sizes seen (cost = fixed + per image x size);
    with only one size seen, cost is taken as proportional to size, the
    pessimistic assumption that is right on a CPU and corrects itself on a
    GPU as soon as a second size is observed:

    - :meth:`expected`: how long a batch takes, wall clock, for the deadline rule;
    - :meth:`share`: what it costs the target's throughput, which is its time
      divided by the batches that ran beside it. Two batches that overlapped
      on a CPU each take about twice as long without costing twice as much;
      judged by their wall clock, single images measured while another batch
      ran look twice as dear as they are, batching then looks worth it, and
      once every batch holds every frame the singles are never measured again
      to correct it (measured: singles learned at 39 ms against 18 ms alone,
      and all four cameras' frames in one batch, one core idle).
    """

    smoothing: float = SMOOTHING
    _wall: _Curve = field(init=False)
    _share: _Curve = field(init=False)
    _observations: int = 0
    _last_seen: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._wall = _Curve(self.smoothing)
        self._share = _Curve(self.smoothing)

    def observe(self, size: int, seconds: float, concurrency: float = 1.0) -> None:
        """Records that a batch of ``size`` images took ``seconds`` with ``concurrency``
        batches (itself included, on average) running at the target meanwhile."""
        if size < 1 or seconds < 0 or concurrency < 1:
            raise ValueError(
                f"a batch of {size} cannot take {seconds} s beside {concurrency} batches"
            )
        if self.stale(size):  # an old estimate describes other conditions: start afresh
            self._wall.forget(size)
            self._share.forget(size)
        self._wall.observe(size, seconds)
        self._share.observe(size, seconds / concurrency)
        self._observations += 1
        self._last_seen[size] = self._observations

    def stale(self, size: int) -> bool:
        """Whether ``size`` was last observed over :data:`REFRESH_AFTER` batches ago (or
        never, once anything has been): its estimate may describe another machine load."""
        if not self._observations:
            return False
        return self._observations - self._last_seen.get(size, 0) > REFRESH_AFTER

    @property
    def known(self) -> bool:
        """Whether anything has been observed yet."""
        return bool(self._wall.estimates)

    def expected(self, size: int) -> float:
        """The expected seconds for a batch of ``size``; 0.0 while nothing is known."""
        return self._wall.expected(size)

    def share(self, size: int) -> float:
        """The target time a batch of ``size`` uses up (its seconds over its concurrency)."""
        return self._share.expected(size)


# An estimate not refreshed for this many batches is tried again: a choice made on it
# (batching, say) would otherwise never observe the alternative, and an estimate made
# under other conditions (a cold model, a busier machine) would decide for ever.
REFRESH_AFTER = 50

# Batching must save at least this share of the time per image to be worth
# holding frames in one batch rather than spreading them over the slots.
BATCHING_PAYS = 0.8


def cheaper_per_image(cost: CostModel, small: int, large: int) -> bool:
    """Whether a batch of ``large`` costs the target less per image than one of ``small``,
    by more than the :data:`BATCHING_PAYS` margin (in target time, :meth:`CostModel.share`)."""
    return cost.share(large) / large < BATCHING_PAYS * cost.share(small) / small


def batch_limit(waiting: int, slots: int, cost: CostModel, max_batch: int) -> int:
    """The largest batch worth sending now, with ``waiting`` frames and ``slots`` batch slots
    in all (busy or free) at the usable targets.

    When a batch of all the waiting frames costs nearly as much per image as
    one image alone (in target time, :meth:`CostModel.share`), a batch takes
    only its share of the waiting frames over all the slots; the rest go to
    the next slot that frees, rather than lengthening this run (where a run of
    three costs about three runs, its first frames would wait for its last).
    When no single image has gone for :data:`REFRESH_AFTER` batches, one goes
    alone, to refresh the estimate this rule compares with.
    """
    limit = max(1, min(max_batch, waiting))
    if slots <= 1 or limit <= 1 or not cost.known:
        return limit
    if cost.stale(1) and not cost.stale(limit):
        return 1  # the rule leans on one image's cost: measure it again now and then
    if cheaper_per_image(cost, 1, limit):
        return limit
    return max(1, math.ceil(limit / slots))


def useful_in_flight(capacity: int, cost: CostModel, max_batch: int) -> int:
    """How many of a target's ``capacity`` batch slots to use.

    Where batching saves little (a CPU model), all of them: several small
    runs at once keep every core busy, as a thread-pooled server does. Where a
    full batch is cheaper per image (a GPU), and while nothing is learned,
    :data:`PIPELINE_DEPTH`, so that frames wait for a slot together and share
    a batch: more in flight splits them into smaller batches, each paying the
    fixed cost (on the GPU-like bench model, 4 in flight against 2: mean batch
    23 against 29, 0.88 of the frames served).
    """
    if capacity <= PIPELINE_DEPTH or max_batch <= 1:
        return capacity
    if not cost.known or cheaper_per_image(cost, 1, max_batch):
        # Until something is learned, as for a GPU: a cost learned with every slot busy
        # there would be skewed by the queueing.
        return PIPELINE_DEPTH
    return capacity


def batch_wait(
    waiting: int,
    cost: CostModel,
    *,
    max_delay: float,
    max_batch: int,
    reports_queue: bool | None = None,
) -> float:
    """How long the oldest of ``waiting`` frames may wait for others to join its batch.

    Waiting pays only where a fuller batch costs less per image (in target
    time, :meth:`CostModel.share`) than the batch as it stands, by the same
    :data:`BATCHING_PAYS` margin as :func:`batch_limit`; elsewhere (a CPU model)
    the frames go now. Where it pays (a GPU), they wait at most ``max_delay``,
    and never longer than the batch as it stands is expected to run: a frame
    that arrives later joins the next batch at no greater cost than the wait.
    While nothing is learned the wait is ``max_delay``, as configured.

    Measured on a fast model, the fixed wait was the whole of a frame's stay:
    a stream's next frames arrived meanwhile and replaced the waiting one.

    A target whose answers say nothing of how long batches wait for its model
    (``reports_queue`` False: the null model, another implementation of the
    contract) gets its frames at once, as it gets no held batch
    (:class:`PipelineLead`): what a fuller batch saves there may be ingest's
    own overhead rather than model time (the null model's "cost" is the hop
    to its worker thread), and waiting to save it only let each stream's next
    frame replace the waiting one (measured at 4 streams: 1.14-1.43 times the
    frames without the wait).
    """
    if reports_queue is False:
        return 0.0
    if not cost.known:
        return max_delay
    size = max(1, min(waiting, max_batch))
    if size >= max_batch:
        return 0.0
    if not cheaper_per_image(cost, size, max_batch):
        return 0.0
    return min(max_delay, cost.expected(size))


def misses_deadline(age: float, expected: float, budget: float) -> bool:
    """Whether a frame of ``age`` seconds, sent now into a batch expected to take
    ``expected`` seconds, would be answered after its ``budget`` (the drop rule)."""
    return age + expected > budget


@dataclass(frozen=True)
class BatchPlan:
    """Which of the candidates (by index, in turn order) to send, and which to skip."""

    send: tuple[int, ...]
    skip: tuple[int, ...]


def plan_batch(
    ages: Sequence[float], cost: CostModel, *, budget: float, max_batch: int
) -> BatchPlan:
    """Chooses the batch from candidates given in turn order (``ages`` in seconds).

    A candidate that would miss its budget even alone is skipped. The others
    join in turn order while the batch, at its new size, still lets every
    member make its budget; the rest wait for the next batch. When the model
    cannot make the budget even for a fresh frame alone, frames go one at a
    time and only those already older than the budget are skipped.
    """
    send: list[int] = []
    skip: list[int] = []
    oldest = 0.0
    alone = cost.expected(1)
    # A model that cannot answer even a fresh frame within the budget (a slow
    # model, or an estimate thrown by one slow batch) still gets fresh frames:
    # only frames already past the budget are skipped then. Skipping all of
    # them would starve the stream and, with nothing sent, never correct the
    # estimate either.
    model_can_make_it = alone < budget
    for index, age in enumerate(ages):
        if age > budget or (model_can_make_it and misses_deadline(age, alone, budget)):
            skip.append(index)
            continue
        if len(send) >= max_batch:
            continue
        size = len(send) + 1
        if send and (
            not model_can_make_it or misses_deadline(max(oldest, age), cost.expected(size), budget)
        ):
            continue
        send.append(index)
        oldest = max(oldest, age)
    return BatchPlan(send=tuple(send), skip=tuple(skip))


@dataclass
class TargetLoad:
    """The batches out at one target, and the target time each of them used.

    Target time runs at 1/n of the wall clock while n batches are out (a
    processor-sharing clock). A batch's share of the target is the target
    time that passed while it was out; summed over all batches it is exactly
    the time the target was busy, however the batches overlapped, so the cost
    model learns what each batch costs the target's throughput. (Halving a
    batch's wall time when another ran beside it at its start and end only, as
    before, missed overlaps in between: a batch sent just before another
    finished looked half as dear as it was.)
    """

    _virtual: float = 0.0  # target time at _changed_at
    _changed_at: float = 0.0
    # token -> (wall time sent, size, target time when sent)
    _out: dict[int, tuple[float, int, float]] = field(default_factory=dict)
    _tokens: itertools.count[int] = field(default_factory=itertools.count)
    last_done: float = -math.inf  # wall time the last batch came back

    @property
    def count(self) -> int:
        """Batches out now."""
        return len(self._out)

    def _advance(self, now: float) -> None:
        if self._out:
            self._virtual += max(0.0, now - self._changed_at) / len(self._out)
        self._changed_at = now

    def sent(self, now: float, size: int) -> int:
        """A batch of ``size`` left at ``now``; returns its token for :meth:`ended`."""
        self._advance(now)
        token = next(self._tokens)
        self._out[token] = (now, size, self._virtual)
        return token

    def is_out(self, token: int) -> bool:
        """Whether the batch ``token`` is still out."""
        return token in self._out

    def sent_at(self, token: int) -> float:
        """The wall time the batch ``token`` was sent."""
        return self._out[token][0]

    def ended(self, token: int, now: float) -> float:
        """The batch came back (or failed) at ``now``; returns the target time it used."""
        self._advance(now)
        _, _, virtual_then = self._out.pop(token)
        self.last_done = now
        return self._virtual - virtual_then

    def ahead(self) -> list[tuple[float, int]]:
        """The batches out, as (wall time sent, size), oldest first."""
        return [(sent, size) for sent, size, _ in self._out.values()]


# A batch for a target that is still busy leaves when the work ahead of it has
# about this share of its last batch's expected time left: early enough to be
# there when the target frees, late enough that frames arriving meanwhile
# still join it. This is where it starts; PipelineLead then follows how long
# such batches waited at the model, within MIN_LEAD and MAX_LEAD.
PIPELINE_LEAD = 0.25
MIN_LEAD = 0.05
MAX_LEAD = 1.0
# A hold shorter than this is not worth a timer and another pass of the
# batcher over the waiting streams: the batch goes at once.
MIN_HOLD = 0.001
# A held batch should wait at the model about this share of a batch's time,
# within a factor of 2 either way: enough that the model never waits for it,
# little enough that newer frames could still have joined it.
WANTED_QUEUE = 0.1


@dataclass
class PipelineLead:
    """How early a held batch leaves (:func:`pipelined_send_at`), learned per target.

    The InferenceService reports, for each image, how long its prepared batch
    waited for the model (``StageTimings.queue``). A batch sent while another
    was out that barely waited may have come late, after the model had gone
    idle (the network, or preparing it on the server, took longer than the
    lead): the lead grows by a quarter. One that waited long could have left
    later and taken more frames: the lead shrinks by a tenth. Growing faster
    than shrinking keeps the model from idling for long.

    Batches are held only while the answers report that queue time
    (``reports_queue``): a server that does not say how long batches wait for
    its model (the null model, another implementation of the contract) may run
    them side by side, where holding one back only delays it, and the lead
    could not be tuned.
    """

    share: float = PIPELINE_LEAD
    reports_queue: bool | None = None  # None until the target first answered

    def answered(self, queued: float | None, batch_share: float, *, timed: bool) -> None:
        """A batch came back: it waited ``queued`` seconds for the model (None: not
        reported), where a batch of its size uses ``batch_share`` seconds of it; ``timed``:
        it was sent while another was out, so its departure was the lead's business."""
        self.reports_queue = queued is not None
        if queued is None or not timed or batch_share <= 0:
            return
        if queued < WANTED_QUEUE * batch_share / 2:
            self.share = min(MAX_LEAD, self.share * 1.25)
        elif queued > WANTED_QUEUE * batch_share * 2:
            self.share = max(MIN_LEAD, self.share * 0.9)


def pipelined_send_at(
    load: TargetLoad, cost: CostModel, max_batch: int, lead: float = PIPELINE_LEAD
) -> float | None:
    """When the next batch is worth sending to a target with ``load`` out; None: now.

    Only where a full batch is cheaper per image (a GPU): there a batch sent
    at once waits in the target's queue, beyond the reach of newer frames,
    while frames that arrive during that wait make a later, smaller batch that
    pays the fixed cost again. The target is taken to work through the
    batches out one after another, starting when it last answered (or when
    the oldest was sent, if later), each taking its share
    (:meth:`CostModel.share`); the next batch leaves ``lead`` times the last
    one's share before that (:class:`PipelineLead`). Where batching saves
    little (a CPU), batches run side by side and go at once.
    """
    ahead = load.ahead()
    if not ahead or not cost.known or not cheaper_per_image(cost, 1, max_batch):
        return None
    free_at = max(ahead[0][0], load.last_done)
    last = 0.0
    for sent, size in ahead:
        last = cost.share(size)
        free_at = max(free_at, sent) + last
    return free_at - lead * last
