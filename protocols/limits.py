"""Resource limits of a deployment, in one place for the server and the dealer.

`Limits` holds the largest batch, the largest preprocessing bundle of one inference and the
memory a process may hold in bundles at once. The server and the dealer read the same
`limits:` section of the deployment configuration, so a batch one of them accepts is never
refused (or built) by the other alone.

`MemoryBudget` is the per-process ledger: a request reserves the bytes its material will
take before anything is built; when the budget is spent, it waits up to `budget_wait_s`
and is then refused with a message that says so. `MaterialEstimator` predicts a bundle's
size before it exists: it builds the material of one example once per plan (under the
per-inference cap, so a hostile plan is stopped as soon as it crosses it) and scales it by
the batch; the material of a plan is linear in the batch, the fixed part (seeds) is tiny.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from protocols.engine import deal

GiB = 1 << 30


class LimitError(ValueError):
    """A request exceeds a configured limit (the message names the limit and the fix)."""


class BudgetExhausted(LimitError):
    """The process's material budget stayed spent for longer than the request may wait."""


def _positive(name: str, value, kind=int) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if not ok or (kind is int and not isinstance(value, int)):
        raise ValueError(f"limits.{name} must be a positive {'int' if kind is int else 'number'}, got {value!r}")


@dataclass(frozen=True)
class Limits:
    """max_batch: inputs per inference. max_material_bytes: the material of one inference
    (both parties' halves). memory_budget_bytes: material one process holds at once.
    budget_wait_s: how long a request waits for the budget before it is refused."""

    max_batch: int = 64
    max_material_bytes: int = 1 * GiB
    memory_budget_bytes: int = 2 * GiB
    budget_wait_s: float = 10.0

    FIELDS = ("max_batch", "max_material_bytes", "memory_budget_bytes", "budget_wait_s")

    def __post_init__(self) -> None:
        _positive("max_batch", self.max_batch)
        _positive("max_material_bytes", self.max_material_bytes)
        _positive("memory_budget_bytes", self.memory_budget_bytes)
        _positive("budget_wait_s", self.budget_wait_s, float)
        if self.max_material_bytes > self.memory_budget_bytes:
            raise ValueError(f"limits.max_material_bytes ({self.max_material_bytes}) exceeds "
                             f"limits.memory_budget_bytes ({self.memory_budget_bytes}): no request could ever run")

    @classmethod
    def from_dict(cls, d: dict) -> Limits:
        if not isinstance(d, dict):
            raise ValueError(f"limits must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.FIELDS))
        if unknown:
            raise ValueError(f"unknown limits keys {unknown}; allowed: {', '.join(cls.FIELDS)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    def check_batch(self, batch: object) -> int:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise LimitError(f"batch must be a positive int, got {batch!r}")
        if batch > self.max_batch:
            raise LimitError(f"batch {batch} exceeds this deployment's limit of {self.max_batch} inputs per "
                             f"inference (limits.max_batch); split the input into smaller batches")
        return batch

    def check_material(self, nbytes: int, batch: int) -> None:
        if nbytes > self.max_material_bytes:
            raise LimitError(f"the preprocessing of this plan at batch {batch} needs about {nbytes / 1e6:.1f} MB, "
                             f"more than the limit of {self.max_material_bytes / 1e6:.1f} MB per inference "
                             f"(limits.max_material_bytes); use a smaller batch")


class Reservation:
    """Bytes held from a `MemoryBudget`; release them in parts or all at once (idempotent)."""

    def __init__(self, budget: MemoryBudget, nbytes: int) -> None:
        self._budget, self.nbytes = budget, nbytes

    def release(self, nbytes: int | None = None) -> None:
        n = self.nbytes if nbytes is None else min(nbytes, self.nbytes)
        if n > 0:
            self.nbytes -= n
            self._budget._give_back(n)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class MemoryBudget:
    """A per-process ledger of the bytes held in preprocessing material."""

    def __init__(self, limit_bytes: int, wait_s: float = 10.0) -> None:
        self.limit = int(limit_bytes)
        self.wait_s = wait_s
        self._used = 0
        self.peak = 0
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    def reserve(self, nbytes: int, what: str = "a request") -> Reservation:
        """Hold `nbytes`, waiting up to `wait_s` for others to release; BudgetExhausted otherwise."""
        nbytes = int(nbytes)
        if nbytes > self.limit:
            raise LimitError(f"{what} needs {nbytes / 1e6:.1f} MB of preprocessing, more than this process's "
                             f"whole budget of {self.limit / 1e6:.1f} MB (limits.memory_budget_bytes)")
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self._used + nbytes > self.limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BudgetExhausted(
                        f"busy: {what} needs {nbytes / 1e6:.1f} MB of preprocessing and this process holds "
                        f"{self._used / 1e6:.1f} of its {self.limit / 1e6:.1f} MB budget "
                        f"(limits.memory_budget_bytes) after waiting {self.wait_s:g} s; try again later")
                self._cond.wait(left)
            self._used += nbytes
            self.peak = max(self.peak, self._used)
        return Reservation(self, nbytes)

    def _give_back(self, nbytes: int) -> None:
        with self._cond:
            self._used -= nbytes
            self._cond.notify_all()


class MaterialEstimator:
    """Predicts (client bytes, server bytes) of one inference's material for a plan and batch:
    the serialized bundle (what crosses the wire) and the arrays parsed from it are each at
    most this large."""

    def __init__(self, limits: Limits, cache_size: int = 16) -> None:
        self.limits = limits
        self._cache: OrderedDict[str, tuple[tuple[int, int], tuple[int, int]]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def per_example(self, plan, digest: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """((client, server) bytes per example, (client, server) serialization overhead)."""
        with self._lock:
            if digest in self._cache:
                self._cache.move_to_end(digest)
                return self._cache[digest]
        halves = deal(plan, 1, max_bytes=self.limits.max_material_bytes)
        sizes = (tuple(m.nbytes for m in halves), tuple(len(m.to_bytes()) - m.nbytes for m in halves))
        with self._lock:
            self._cache[digest] = sizes
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return sizes

    def estimate(self, plan, digest: str, batch: int) -> tuple[int, int]:
        """Upper bounds on the two halves' sizes in bytes at this batch (LimitError when one
        inference would exceed limits.max_material_bytes). Material is linear in the batch;
        the fixed part (seeds, item headers) is counted once per example: an over-estimate."""
        per, overhead = self.per_example(plan, digest)
        sizes = tuple(p * batch + o + _SLACK_BYTES for p, o in zip(per, overhead))
        self.limits.check_material(sum(sizes), batch)
        return sizes   # type: ignore[return-value]


_SLACK_BYTES = 4096    # the zip directory grows with item names that carry longer numbers
