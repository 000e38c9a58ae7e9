"""The cost meter: bytes, rounds and seconds of a protocol run, per layer, op class and phase.

One `CostMeter` belongs to one party. Channels record every frame they move into the meter's
current *scope*, a key (layer, op, phase) set with `meter.scope(...)`:

    with meter.scope(layer="conv1", phase="online"):
        with meter.scope(op="linear"):        # inner keys override outer ones
            chan.exchange_array(xhat)

What is counted (definitions used everywhere in the project):

- **bytes**: full frame bytes as they go into the TLS channel (16-byte frame header
  included; TLS record overhead and the TLS handshake excluded, see docs/transport.md).
  A party's report counts the bytes it *sent* (`online_bytes`, `offline_bytes`) and,
  separately, the bytes it received. Merging the reports of all parties adds the sent
  bytes, which is then the total traffic in both directions, each byte counted once.
- **rounds**: message flights. A party opens a new round when it sends a data frame after
  having received something since its previous send, or when its previous data send was in
  the other phase (its first send also opens one).
  Consecutive sends form one flight; `exchange_array` (both send, then both receive) is one
  round for each party. ERROR and BYE frames never open a round (nothing waits on them).
  The round is charged to the scope of the frame that opens it. A merged report takes the
  **maximum** over parties (per row and in total): for protocols where both parties send in
  each step this is the number of steps; for strict request/response it counts round trips.
- **seconds**: wall time spent inside scopes, charged to the innermost open scope only
  (exclusive time: nested scopes never double count). Time outside any scope is not
  charged to a row; `wall_seconds` is the time since the meter was created or reset.
  Scopes are tracked per thread. A merged report takes the maximum over parties (the
  parties run at the same time).

Bytes recorded while no scope is open go to layer "-", op "io", phase "online".
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, make_dataclass

KNOWN_OPS = frozenset({
    "linear",   # convolutions, dense layers, affine maps, additions
    "relu",     # exact ReLU gates
    "circa",    # stochastic (truncated-sign) ReLU
    "poly",     # polynomial activations
    "trunc",    # fixed-point truncation
    "pool",     # max / average pooling
    "io",       # input sharing, output reconstruction, plumbing
    "select",   # multiplexers, x * d
    "mul",      # generic Beaver multiplications
    "compare",  # sign tests / comparisons outside ReLU
    "argmax",   # label-only output
    "setup",    # session setup: hello, spec, keys
    "other",
})
PHASES = ("offline", "online")
DEFAULT_LAYER = "-"
DEFAULT_OP = "io"
DEFAULT_PHASE = "online"
REPORT_VERSION = 1


@dataclass(frozen=True)
class ScopeKey:
    layer: str
    op: str
    phase: str


@dataclass(frozen=True)
class CostRow:
    """Cost of one (layer, op, phase) key, from one party or merged over parties."""

    layer: str
    op: str
    phase: str
    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    rounds: int = 0
    seconds: float = 0.0

    @property
    def key(self) -> ScopeKey:
        return ScopeKey(self.layer, self.op, self.phase)

    def to_dict(self) -> dict:
        return asdict(self)

    def merged(self, other: CostRow) -> CostRow:
        """Same key, other party: bytes and messages add, rounds and seconds take the max."""
        return CostRow(self.layer, self.op, self.phase,
                       self.bytes_sent + other.bytes_sent,
                       self.bytes_received + other.bytes_received,
                       self.messages_sent + other.messages_sent,
                       self.messages_received + other.messages_received,
                       max(self.rounds, other.rounds), max(self.seconds, other.seconds))


# The meter's running counters of one key: CostRow's numbers, mutable (one list of fields).
_Counters = make_dataclass("_Counters", [(f.name, f.type, f.default) for f in fields(CostRow)
                                         if f.name not in {k.name for k in fields(ScopeKey)}])


def format_bytes(n: float) -> str:
    """Decimal units: 1 KB = 1000 B."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{int(n)} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.3f} s"


@dataclass(frozen=True)
class CostReport:
    """Totals and per-(layer, op, phase) rows of one party, or of several parties merged.

    `online_bytes` / `offline_bytes` are bytes *sent* by the parties this report covers (for
    a merged two-party report: all traffic). `rounds` is the online round count,
    `offline_rounds` the offline one."""

    parties: tuple[str, ...]
    online_bytes: int
    offline_bytes: int
    online_bytes_received: int
    offline_bytes_received: int
    rounds: int
    offline_rounds: int
    online_seconds: float
    offline_seconds: float
    wall_seconds: float
    per_layer: tuple[CostRow, ...] = field(default_factory=tuple)

    @property
    def total_bytes(self) -> int:
        return self.online_bytes + self.offline_bytes

    @classmethod
    def from_rows(cls, parties: Iterable[str], rows: Iterable[CostRow], wall_seconds: float = 0.0
                  ) -> CostReport:
        """Totals of a single party's rows (bytes, rounds and seconds all add)."""
        rows = tuple(rows)

        def total(attr: str, phase: str):
            return sum(getattr(r, attr) for r in rows if r.phase == phase)

        return cls(tuple(parties), total("bytes_sent", "online"), total("bytes_sent", "offline"),
                   total("bytes_received", "online"), total("bytes_received", "offline"),
                   total("rounds", "online"), total("rounds", "offline"),
                   float(total("seconds", "online")), float(total("seconds", "offline")),
                   float(wall_seconds), rows)

    def merge(self, other: CostReport) -> CostReport:
        """Combine the reports of different parties of the same run: bytes (and messages) add,
        rounds and seconds take the maximum over parties, per row and in total."""
        if not isinstance(other, CostReport):
            raise TypeError(f"merge needs a CostReport, got {type(other).__name__}")
        overlap = set(self.parties) & set(other.parties)
        if overlap:
            raise ValueError(f"both reports cover party {sorted(overlap)}; merge combines different "
                             f"parties of one run (give each party's CostMeter its own name)")
        rows: dict[ScopeKey, CostRow] = {r.key: r for r in self.per_layer}
        for r in other.per_layer:
            rows[r.key] = rows[r.key].merged(r) if r.key in rows else r
        return CostReport(
            self.parties + other.parties,
            self.online_bytes + other.online_bytes,
            self.offline_bytes + other.offline_bytes,
            self.online_bytes_received + other.online_bytes_received,
            self.offline_bytes_received + other.offline_bytes_received,
            max(self.rounds, other.rounds), max(self.offline_rounds, other.offline_rounds),
            max(self.online_seconds, other.online_seconds),
            max(self.offline_seconds, other.offline_seconds),
            max(self.wall_seconds, other.wall_seconds), tuple(rows.values()))

    def _aggregate(self, by: str, phase: str | None) -> list[CostRow]:
        if phase is not None and phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; use one of {PHASES} or None")
        out: dict[tuple[str, str], CostRow] = {}
        for r in self.per_layer:
            if phase is not None and r.phase != phase:
                continue
            k = (getattr(r, by), r.phase)
            base = out.get(k) or CostRow(r.layer if by == "layer" else "*", r.op if by == "op" else "*",
                                         r.phase)
            # rows of one report: sum everything (rounds of different rows are sequential)
            out[k] = CostRow(base.layer, base.op, base.phase,
                             base.bytes_sent + r.bytes_sent, base.bytes_received + r.bytes_received,
                             base.messages_sent + r.messages_sent,
                             base.messages_received + r.messages_received,
                             base.rounds + r.rounds, base.seconds + r.seconds)
        return list(out.values())

    def by_layer(self, phase: str | None = None) -> list[CostRow]:
        """Rows summed over op classes, one per (layer, phase), in first-seen order."""
        return self._aggregate("layer", phase)

    def by_op(self, phase: str | None = None) -> list[CostRow]:
        """Rows summed over layers, one per (op, phase), in first-seen order."""
        return self._aggregate("op", phase)

    def to_dict(self) -> dict:
        return {
            "version": REPORT_VERSION,
            "parties": list(self.parties),
            "online_bytes": self.online_bytes, "offline_bytes": self.offline_bytes,
            "online_bytes_received": self.online_bytes_received,
            "offline_bytes_received": self.offline_bytes_received,
            "rounds": self.rounds, "offline_rounds": self.offline_rounds,
            "online_seconds": self.online_seconds, "offline_seconds": self.offline_seconds,
            "wall_seconds": self.wall_seconds,
            "per_layer": [r.to_dict() for r in self.per_layer],
        }

    @classmethod
    def from_dict(cls, d: dict) -> CostReport:
        if not isinstance(d, dict):
            raise TypeError(f"a cost report must be a mapping, got {type(d).__name__}")
        if d.get("version") != REPORT_VERSION:
            raise ValueError(f"cost report version {d.get('version')!r} is not supported "
                             f"(this build reads version {REPORT_VERSION})")
        try:
            rows = tuple(CostRow(**r) for r in d["per_layer"])
            return cls(tuple(d["parties"]), int(d["online_bytes"]), int(d["offline_bytes"]),
                       int(d["online_bytes_received"]), int(d["offline_bytes_received"]),
                       int(d["rounds"]), int(d["offline_rounds"]), float(d["online_seconds"]),
                       float(d["offline_seconds"]), float(d["wall_seconds"]), rows)
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed cost report: {e}") from None

    def table(self) -> str:
        """A readable table: one line per (layer, op, phase) row, then the totals."""
        head = ("layer", "op", "phase", "sent", "received", "rounds", "time")
        lines = [head]
        for r in self.per_layer:
            lines.append((r.layer, r.op, r.phase, format_bytes(r.bytes_sent),
                          format_bytes(r.bytes_received), str(r.rounds), format_seconds(r.seconds)))
        widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
        right = {3, 4, 5, 6}

        def fmt(row):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths))).rstrip()

        who = "+".join(self.parties) or "?"
        whose = "these parties" if len(self.parties) > 1 else "this party"
        title = f"cost report: {who}  (bytes sent by {whose}; 1 KB = 1000 B)"
        out = [title, fmt(head), "  ".join("-" * w for w in widths)]
        out += [fmt(row) for row in lines[1:]]
        out.append(f"online : {format_bytes(self.online_bytes)} sent, {self.rounds} rounds, "
                   f"{format_seconds(self.online_seconds)}")
        out.append(f"offline: {format_bytes(self.offline_bytes)} sent, {self.offline_rounds} rounds, "
                   f"{format_seconds(self.offline_seconds)}")
        return "\n".join(out)


class CostMeter:
    """One party's meter. Thread-safe counters; scopes are tracked per thread."""

    def __init__(self, party: str = "party", *, extra_ops: Iterable[str] = (),
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if not isinstance(party, str) or not party:
            raise ValueError(f"party must be a non-empty name such as 'client' or 'server', got {party!r}")
        extra = tuple(extra_ops)
        for op in extra:
            if not isinstance(op, str) or not op.isidentifier():
                raise ValueError(f"extra op class {op!r} must be an identifier-like string")
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, got {clock!r}")
        self.party = party
        self._clock = clock
        self.ops = KNOWN_OPS | frozenset(extra)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._rows: dict[ScopeKey, _Counters] = {}
        self._round_open = True  # the next data send opens a round
        self._last_send_phase: str | None = None
        self._t0 = clock()

    # ------------------------------------------------------------------ scopes
    def _stack(self) -> list:
        st = getattr(self._local, "stack", None)
        if st is None:
            st = self._local.stack = []
        return st

    def current_key(self) -> ScopeKey:
        st = self._stack()
        return st[-1][0] if st else ScopeKey(DEFAULT_LAYER, DEFAULT_OP, DEFAULT_PHASE)

    def _validate(self, layer, op, phase) -> None:
        if layer is not None and (not isinstance(layer, str) or not layer or len(layer) > 256):
            raise ValueError(f"layer must be a non-empty string of at most 256 characters, got {layer!r}")
        if op is not None and op not in self.ops:
            raise ValueError(f"unknown op class {op!r}; known: {', '.join(sorted(self.ops))} "
                             f"(add more with CostMeter(extra_ops=...))")
        if phase is not None and phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; use one of {', '.join(PHASES)}")

    def _counters(self, key: ScopeKey) -> _Counters:  # caller holds the lock
        c = self._rows.get(key)
        if c is None:
            c = self._rows[key] = _Counters()
        return c

    @contextlib.contextmanager
    def scope(self, layer: str | None = None, op: str | None = None, phase: str | None = None
              ) -> Iterator[ScopeKey]:
        """Charge what happens inside to (layer, op, phase); unset keys inherit the enclosing
        scope's (or the defaults "-", "io", "online")."""
        self._validate(layer, op, phase)
        outer = self.current_key()
        key = ScopeKey(layer if layer is not None else outer.layer, op if op is not None else outer.op,
                       phase if phase is not None else outer.phase)
        st = self._stack()
        now = self._clock()
        with self._lock:
            if st:
                self._counters(st[-1][0]).seconds += now - st[-1][1]
            self._counters(key)
        st.append([key, now])
        try:
            yield key
        finally:
            now = self._clock()
            top = st.pop()
            with self._lock:
                self._counters(top[0]).seconds += now - top[1]
            if st:
                st[-1][1] = now

    # ------------------------------------------------------------------ recording (channels)
    @contextlib.contextmanager
    def _frame(self, nbytes: int):
        """(key, counters) of the current scope, under the lock, for one frame of nbytes."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        key = self.current_key()
        with self._lock:
            yield key, self._counters(key)

    def record_sent(self, nbytes: int, *, control: bool = False) -> None:
        """A frame of `nbytes` left this party. Data frames may open a round (see module doc);
        control frames (ERROR, BYE) never do."""
        with self._frame(nbytes) as (key, c):
            c.bytes_sent += nbytes
            c.messages_sent += 1
            if not control and (self._round_open or key.phase != self._last_send_phase):
                c.rounds += 1
                self._round_open = False
                self._last_send_phase = key.phase

    def record_received(self, nbytes: int) -> None:
        """A frame of `nbytes` arrived; the next data send opens a new round."""
        with self._frame(nbytes) as (_key, c):
            c.bytes_received += nbytes
            c.messages_received += 1
            self._round_open = True

    # ------------------------------------------------------------------ results
    @property
    def bytes_sent(self) -> int:
        with self._lock:
            return sum(c.bytes_sent for c in self._rows.values())

    @property
    def bytes_received(self) -> int:
        with self._lock:
            return sum(c.bytes_received for c in self._rows.values())

    @property
    def rounds(self) -> int:
        """Rounds of both phases."""
        with self._lock:
            return sum(c.rounds for c in self._rows.values())

    def report(self) -> CostReport:
        """A snapshot. Time of scopes still open is included up to now."""
        now = self._clock()
        with self._lock:
            rows = {k: _Counters(**asdict(c)) for k, c in self._rows.items()}
            wall = now - self._t0
        st = self._stack()  # this thread's open scopes: only the innermost one is running
        if st:
            rows.setdefault(st[-1][0], _Counters()).seconds += now - st[-1][1]
        return CostReport.from_rows(
            (self.party,), (CostRow(k.layer, k.op, k.phase, **asdict(c)) for k, c in rows.items()), wall)

    def reset(self) -> None:
        """Forget all counts. This thread's open scopes keep running and charge from now on."""
        now = self._clock()
        with self._lock:
            self._rows.clear()
            self._round_open = True
            self._last_send_phase = None
            self._t0 = now
        for entry in self._stack():
            entry[1] = now

    def __repr__(self) -> str:
        return (f"CostMeter(party={self.party!r}, sent={self.bytes_sent} B, "
                f"received={self.bytes_received} B, rounds={self.rounds})")
