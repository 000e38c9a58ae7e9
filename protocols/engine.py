"""Runs a plan: the dealer's material generation, and each party's offline and online phases.

The engine is transport-agnostic: it talks through any object with `send_array(arr)` and
`recv_array(dtype=..., shape=...)` (protocols.transport channels), and records costs through
the channel's meter scopes when present.

A plan runs in Z_(2^l), l = plan.ring_bits: ring elements cross the wire in ceil(l/8) bytes,
and after every op each party's share of its output (the dealer: its mask) is reduced mod 2^l,
so every stored share is an l-bit value.
"""
from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pi_native

from protocols.layers import ClientState, DealerState, ServerState, build_layers, unpack_from_peer
from protocols.material import Material, SeedStream, fresh_seed, plan_digest
from protocols.plan import Plan, ServerWeights
from protocols.site_kinds import CIRCA, POLY
from protocols.transport.errors import ProtocolError

CLIENT_SEED = "client_seed"
MAX_ITEMS_PER_LAYER = 8     # offline items one layer may exchange (MaxPool: one per level)
OP_CLASSES = {"Conv2d": "linear", "Linear": "linear", "Activation": "relu", "MaxPool": "pool",
              "SumPool": "pool", "Truncate": "trunc", "ToMasked": "linear", "Input": "io", "Output": "io",
              "MulConst": "linear", "Add": "linear", "Reshape": "linear"}


def op_class(op) -> str:
    if op.kind == "Activation" and op.kinds is not None:
        kinds = set(np.unique(op.kinds).tolist())
        if kinds == {CIRCA}:
            return "circa"
        if kinds == {POLY}:
            return "poly"
    return OP_CLASSES.get(op.kind, "other")


def _scope(chan, op, phase: str):
    meter = getattr(chan, "meter", None)
    if meter is None:
        return contextlib.nullcontext()
    if op is None:   # the offline bundle exchanges that serve every layer
        return meter.scope(layer="offline-exchange", op="setup", phase=phase)
    return meter.scope(layer=op.name, op=op_class(op), phase=phase)


def deal(plan: Plan, batch: int, max_bytes: int | None = None) -> tuple[Material, Material]:
    """The dealer's job: one-time material for one inference of `plan` on `batch` inputs.

    Needs only the public plan; never sees inputs, weights or outputs. With `max_bytes`, the
    two halves together may not grow past it (MaterialTooLarge: building stops there)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    digest = plan_digest(plan.to_dict())
    seed = fresh_seed()
    client, server = Material.pair(digest, batch, max_bytes)
    client.put(CLIENT_SEED, seed)
    d = DealerState(plan, batch, client, server, SeedStream(seed))
    for layer in build_layers(plan, batch):
        layer.deal(d)
        _reduce_output(plan, d.masks, layer.op)
    return client, server


def _reduce_output(plan: Plan, shares: dict, op) -> None:
    """Reduces the share (or mask) of `op`'s output mod 2^l, where there is one."""
    if not plan.ring.full and shares.get(op.output) is not None:
        shares[op.output] = plan.ring.reduce(shares[op.output])


_SPENT: list = []              # pi_native.PageDiscard of finished online phases' material
_SPENT_LOCK = threading.Lock()
_DISCARD_MIN_BYTES = 1 << 20   # smaller buffers are freed as usual


def discard_spent(material: Material) -> None:
    """Returns the pages of a used bundle's buffer to the kernel on a native thread.

    A bundle that came over the wire is one buffer (hundreds of MB at batch 32) that its items
    are views of, and the Material holds it until the run is dropped: freeing it costs tens of
    ms with the GIL held (measured: 35 ms CPU for 470 MB), which used to fall inside the last
    gate layer of the online phase, where the last key view died. Called when a party's online
    phase is over; nothing reads the bundle afterwards (consume-once). Each PageDiscard keeps
    its buffer until its thread is done; finished ones are dropped here, at the next call."""
    buf = material.backing
    material.backing = None
    if buf is None or memoryview(buf).nbytes < _DISCARD_MIN_BYTES:
        return
    with _SPENT_LOCK:
        _SPENT[:] = [d for d in _SPENT if not d.done]
        _SPENT.append(pi_native.PageDiscard(buf))


def check_input(plan: Plan, x: np.ndarray, batch: int) -> None:
    """Refuses an input of the wrong shape, or beyond the calibrated range the plan's ring and
    gates were sized for (there results could wrap silently)."""
    expected = (batch,) + tuple(plan.input_shape)
    if x.shape != expected:
        raise ValueError(f"input has shape {x.shape}, the plan expects {expected}")
    bound = plan.tensor(plan.ops[0].output).bound
    if bound is not None and x.size and float(np.abs(x).max()) > bound:
        raise ValueError(f"input value {float(np.abs(x).max()):.4g} is outside ±{bound:.4g}, the calibrated "
                         f"range this plan (ring Z_2^{plan.ring_bits}) was compiled for; recompile with "
                         "calibration data that covers such inputs")


class _Party:
    def __init__(self, plan: Plan, material: Material, batch: int) -> None:
        self.plan, self.batch = plan, batch
        self.digest = plan_digest(plan.to_dict())
        material.start(self.digest, batch)
        self.material = material
        self.layers = build_layers(plan, batch)
        self.ops = {layer.op.name: layer.op for layer in self.layers}
        self.timings: dict[str, float] = {}

    def _item_scope(self, chan, key: str):
        """Offline bundle items are named '<layer>/...': their bytes go to that layer's row (the
        bundle's one flight is charged to the exchange row that opens it)."""
        op = self.ops.get(key.split("/", 1)[0])
        return _scope(chan, op, "offline") if op is not None else contextlib.nullcontext()

    def _send_dict(self, chan, items: dict[str, np.ndarray]) -> None:
        chan.send_array(np.asarray(len(items), dtype=np.uint64).reshape(1))
        for key, arr in items.items():
            chan.send_array(np.frombuffer(key.encode(), dtype=np.uint8))
            with self._item_scope(chan, key):
                chan.send_array(self.plan.ring.pack(np.ascontiguousarray(arr)))

    def _recv_dict(self, chan) -> dict[str, np.ndarray]:
        """The peer's offline bundle. Its size is bounded by the plan before anything is kept
        (at most MAX_ITEMS_PER_LAYER items per layer, names unique); each item's dtype and
        shape are checked where it is used (layers.take_offline)."""
        n = int(chan.recv_array(dtype=np.uint64, shape=(1,))[0])
        if n > MAX_ITEMS_PER_LAYER * len(self.layers):
            raise ProtocolError(f"the peer announces {n} offline items; this plan has at most "
                                f"{MAX_ITEMS_PER_LAYER * len(self.layers)}")
        out = {}
        for _ in range(n):
            try:
                key = chan.recv_array(dtype=np.uint8, shape=(None,)).tobytes().decode()
            except UnicodeDecodeError:
                raise ProtocolError("an offline item's name is not UTF-8") from None
            if key in out or key.split("/", 1)[0] not in self.ops:
                raise ProtocolError(f"unexpected offline item {key[:80]!r} from the peer "
                                    f"({'a duplicate' if key in out else 'no layer of this plan has it'})")
            with self._item_scope(chan, key):
                wire = chan.recv_array(dtype=np.uint64 if self.plan.ring.full else np.uint8)
                out[key] = unpack_from_peer(self.plan.ring, wire)   # flat: the layer checks size and shape
        return out


class ServerRun(_Party):
    """The server's side of one inference."""

    def __init__(self, plan: Plan, weights: ServerWeights, material: Material, batch: int) -> None:
        super().__init__(plan, material, batch)
        self.state = ServerState(plan, batch, material, weights)

    def offline(self, chan) -> None:
        t0 = time.perf_counter()
        st = self.state
        # Pass 1: masked weights (and anything else) for the client.
        for layer in self.layers:
            if layer.op.kind in ("Conv2d", "Linear"):
                with _scope(chan, layer.op, "offline"):
                    layer.server_offline(st)
        with _scope(chan, None, "offline"):
            self._send_dict(chan, st.outbox)
            st.outbox.clear()
            # Pass 2: absorb the client's input-independent messages.
            st.inbox.update(self._recv_dict(chan))
        for layer in self.layers:
            if layer.op.kind not in ("Conv2d", "Linear"):
                with _scope(chan, layer.op, "offline"):
                    layer.server_offline(st)
        if st.inbox:
            raise ProtocolError(f"unexpected offline items from the client: {sorted(st.inbox)[:5]}")
        self.timings["offline_s"] = time.perf_counter() - t0

    def online(self, chan) -> None:
        t0 = time.perf_counter()
        for layer in self.layers:
            with _scope(chan, layer.op, "online"):
                layer.server_online(self.state, chan)
                _reduce_output(self.plan, self.state.shares, layer.op)
        discard_spent(self.material)
        self.timings["online_s"] = time.perf_counter() - t0


class ClientRun(_Party):
    """The client's side of one inference."""

    def __init__(self, plan: Plan, material: Material, batch: int) -> None:
        super().__init__(plan, material, batch)
        self.state = ClientState(plan, batch, material, SeedStream(material.take(CLIENT_SEED)))

    def offline(self, chan) -> None:
        t0 = time.perf_counter()
        st = self.state
        with _scope(chan, None, "offline"):
            st.inbox.update(self._recv_dict(chan))
        for layer in self.layers:
            with _scope(chan, layer.op, "offline"):
                layer.client_offline(st)
                _reduce_output(self.plan, st.shares, layer.op)
        with _scope(chan, None, "offline"):
            self._send_dict(chan, st.outbox)
        st.outbox.clear()
        self.timings["offline_s"] = time.perf_counter() - t0

    def online(self, chan, x: np.ndarray) -> np.ndarray:
        """x: real-valued input of shape (batch, *input_shape). Returns the decoded output
        (or, for a label-only plan, the int64 labels)."""
        plan = self.plan
        x = np.asarray(x, dtype=np.float64)
        check_input(plan, x, self.batch)
        t0 = time.perf_counter()
        self.state.keep["x"] = plan.fixed_point.encode(x)
        for layer in self.layers:
            with _scope(chan, layer.op, "online"):
                layer.client_online(self.state, chan)
        if plan.output_op.label_only:
            y = self.state.keep.pop("label")
        else:
            out_t = plan.tensor(plan.output_op.inputs[0])
            y = plan.fixed_point.decode(self.state.keep.pop("y"), scale=out_t.scale)
        discard_spent(self.material)
        self.timings["online_s"] = time.perf_counter() - t0
        return y
