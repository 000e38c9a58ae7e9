"""The secure plan: a model as a list of secure ops over ring tensors.

Over 500 lines on purpose: the op types and the builder that checks their scales, states and
ring width are one contract; split, each half would restate the other's rules.

A `Plan` is public (what a client may know: shapes, op kinds, ReLU policy, fixed point); the
server's weights live apart in `ServerWeights`. `PlanBuilder` turns float layers into ops and
does the fixed-point bookkeeping: every tensor has a scale (fractional bits) and a sharing
state, and the builder inserts rescalings and conversions so that each op gets what it needs.

Sharing states (see docs/engine.md): the server holds `a`, the client `c`,
a + c = v·2^scale mod 2^l (l = the plan's `ring_bits`, 64 unless a narrower ring was chosen
from calibrated bounds), and the client's share is always known before the input arrives (it is built from
preprocessing only). In state MASKED the client's share is −s for a mask s the provider
chose (so the provider can build correlations on it); in state SHARED it is not.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from collections.abc import Iterator

import numpy as np

from protocols.fixed_point import MAX_VALUE_BITS, RING_BITS, FixedPoint, Ring
from protocols.site_kinds import CIRCA, CIRCA_MODES, IDENTITY, POLY, RELU, SITE_KINDS  # also re-exported
from protocols.wide import MAX_BITS as POLY_WORD_BITS

MASKED, SHARED = "masked", "shared"
# Format 2 added the ring width (format-1 plans ran in Z_(2^64)); older readers refuse it
# rather than run a narrow-ring plan at 64 bits.
PLAN_FORMAT = 2
READABLE_PLAN_FORMATS = (1, 2)
MIN_MAGNITUDE_BITS = 10     # values up to ±2^10 at the largest scale a plan reaches
# A calibrated ring is wide enough that the local truncations of one example all succeed
# except with at most this probability (each fails with probability |v|/2^l).
TRUNC_FAILURE_TARGET = 2.0 ** -20


class PlanError(ValueError):
    """A plan cannot be built or is inconsistent; the message names the op."""


@dataclass
class Tensor:
    id: int
    shape: tuple[int, ...]          # per example (no batch dimension)
    scale: int                      # fractional bits of the encoding
    state: str                      # MASKED or SHARED
    bound: float | None = None      # guaranteed max |value| (reals), from calibration, when known

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Op:
    name: str
    inputs: tuple[int, ...]
    output: int

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass
class Input(Op):
    pass


@dataclass
class Output(Op):
    label_only: bool = False


@dataclass
class Conv2d(Op):
    """Private-weight convolution (BatchNorm already folded in). Weights: ServerWeights[name]."""
    weight_shape: tuple[int, int, int, int] = (0, 0, 0, 0)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    bias: bool = False


@dataclass
class Linear(Op):
    weight_shape: tuple[int, int] = (0, 0)
    bias: bool = False


@dataclass
class SumPool(Op):
    """Window sums (public, local); average pooling is SumPool followed by MulConst."""
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)


@dataclass
class MulConst(Op):
    """Multiplication by a public integer constant (local)."""
    factor: int = 1


@dataclass
class Add(Op):
    pass


@dataclass
class Reshape(Op):
    pass


@dataclass
class Truncate(Op):
    """Arithmetic right shift by `shift` bits with the faithful FSS trunc gate (one opening)."""
    shift: int = 0


@dataclass
class ToMasked(Op):
    """Re-randomizes a SHARED tensor into MASKED form (costs offline traffic only)."""


@dataclass
class Activation(Op):
    """Per-site activation. Gate sites (ReLU, Circa, and the truncation in front of a
    polynomial) fuse a faithful truncation by `shift` (input scale − f); identity sites are
    rescaled locally to the output scale.

    kinds: None (all exact ReLU) or an int8 array over the per-example shape with SITE_KINDS
    codes. circa: (k, mode) for Circa sites. poly: per-channel (c0, c1, c2), public policy.
    """
    kinds: np.ndarray | None = None
    shift: int = 0
    circa_k: int | None = None
    circa_mode: str = "poszero"
    poly: np.ndarray | None = None
    value_bits: int = MAX_VALUE_BITS + 1   # inputs satisfy |x| < 2^(value_bits − 1)

    def gate_bits(self) -> int:
        """The input bit width n of this layer's gates (Circa needs k + 2 at least)."""
        n = self.value_bits
        if self.kinds is not None and self.circa_k is not None and bool((self.kinds == CIRCA).any()):
            n = max(n, self.circa_k + 2)
        return n

    def site_counts(self, size: int) -> dict[str, int]:
        if self.kinds is None:
            return {"relu": size, "identity": 0, "poly": 0, "circa": 0}
        flat = self.kinds.reshape(-1)
        return {k: int((flat == i).sum()) for i, k in enumerate(SITE_KINDS)}


@dataclass
class MaxPool(Op):
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    value_bits: int = MAX_VALUE_BITS + 1

    def gate_bits(self) -> int:
        return self.value_bits


def poly_output_shift(fp: FixedPoint, word_bits: int = POLY_WORD_BITS) -> int:
    """d: polynomial sites compute p(t) at scale 3f in Z_(2^(l+d)) and both parties shift their
    shares right by d, landing at scale 3f − d in Z_(2^l). Shares of a value mod 2^(l+d)
    shifted by d sum to the shifted value mod 2^l up to one ulp (a wrap past 2^(l+d) becomes
    2^l ≡ 0), so the truncation costs no round and never fails. d = 2f (output at scale f)
    wherever l + 2f fits the provider's words for p(t) (word_bits: 128 for the dealer's gate,
    every ring; 64 for the two-party products, rings up to 64 − 2f bits), less above."""
    return max(0, min(2 * fp.frac_bits, word_bits - fp.ring_bits))


def gate_width_fits(n: int, ring_bits: int) -> bool:
    """Whether gates of input width n run in Z_(2^ring_bits): they read the low n + 1 bits of
    the opened value (all 64 at n = 64), so a narrower ring must hold n + 1 bits."""
    return min(n + 1, RING_BITS) <= ring_bits


@dataclass
class Plan:
    """What both parties know: ops in execution order, tensors, fixed point."""
    ops: list[Op]
    tensors: dict[int, Tensor]
    fixed_point: FixedPoint
    input_shape: tuple[int, ...]
    format: int = PLAN_FORMAT
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        l = self.ring_bits
        for op in self.ops:
            if isinstance(op, (Activation, MaxPool)) and not gate_width_fits(op.gate_bits(), l):
                raise PlanError(f"{op.kind.lower()} {op.name}: its gates need {op.gate_bits() + 1} bits "
                                f"(inputs up to 2^{op.gate_bits() - 1}), more than the {l}-bit ring; "
                                "compile with a wider ring_bits")

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    @property
    def ring_bits(self) -> int:
        """l: every share lives in Z_(2^l)."""
        return self.fixed_point.ring_bits

    @property
    def ring(self) -> Ring:
        return self.fixed_point.ring

    # -- value ranges and the ring width they need ------------------------------------------
    def value_bounds(self) -> dict[int, float | None]:
        """A bound on |value| (reals) of every tensor, or None where unknown. Private linear
        outputs and the input take their calibrated bound (Tensor.bound); every other op's
        output is bounded from its inputs, and by its own calibrated bound where it has one
        (activations and adds: interval arithmetic alone compounds along a residual stream
        through polynomial sites, c2·b² block after block)."""
        out: dict[int, float | None] = {}
        for op in self.ops:
            if op.output < 0:
                continue
            t = self.tensor(op.output)
            ins = [out.get(i) for i in op.inputs]
            if isinstance(op, (Input, Conv2d, Linear)) or any(b is None for b in ins):
                out[op.output] = t.bound
                continue
            b = ins[0]
            if isinstance(op, SumPool):
                b = b * op.kernel[0] * op.kernel[1]
            elif isinstance(op, MulConst):
                b = b * op.factor / 2.0 ** (t.scale - self.tensor(op.inputs[0]).scale)
            elif isinstance(op, Add):
                b = ins[0] + ins[1]
            elif isinstance(op, Activation) and op.kinds is not None and bool((op.kinds == POLY).any()):
                c = np.abs(np.asarray(op.poly, dtype=np.float64))
                b = max(b, float((c[:, 2] * b * b + c[:, 1] * b + c[:, 0]).max()))
            # ReLU, Circa, identity, max, truncation, reshape: |y| ≤ |x|
            out[op.output] = b if t.bound is None else min(b, t.bound)
        return out

    def local_truncations(self) -> list[tuple[int, int]]:
        """(sites, value_bits) of every activation whose identity sites truncate locally."""
        out = []
        for op in self.ops:
            if isinstance(op, Activation) and self.tensor(op.inputs[0]).scale > self.tensor(op.output).scale:
                n_local = op.site_counts(self.tensor(op.inputs[0]).size)["identity"]
                if n_local:
                    out.append((n_local, op.value_bits))
        return out

    def truncation_failure_bound(self, ring_bits: int | None = None) -> float:
        """Upper bound on the probability that some local truncation of one example fails: a
        local shift of v fails with probability |v|/2^l ≤ 2^(b−1−l) when |v| < 2^(b−1)
        (b = the op's calibrated value bits, else the full range). Truncate ops and gates
        truncate faithfully and never fail."""
        l = self.ring_bits if ring_bits is None else ring_bits
        return min(1.0, sum(n * 2.0 ** (b - 1 - l) for n, b in self.local_truncations()))

    def required_ring_bits(self, failure_target: float | None = TRUNC_FAILURE_TARGET, cap: bool = True) -> int:
        """The narrowest ring this plan runs in: every tensor's calibrated values with the
        gates' headroom (|x|·2^s < 2^(l−3), so that comparisons of two values fit too), the
        builder's scale budget, Circa's k, and (failure_target not None) local truncations failing with probability at most
        failure_target per example. RING_BITS when some value is not bounded (no calibration);
        cap=False: the bits the values need even beyond RING_BITS."""
        need = 0
        for tid, b in self.value_bounds().items():
            t = self.tensor(tid)
            if b is None:
                return RING_BITS
            need = max(need, math.ceil(math.log2(b * 2.0 ** t.scale + 1)) + 3,
                       t.scale + MIN_MAGNITUDE_BITS + 2)
        for op in self.ops:   # (the gates' value widths follow from the bounds; Circa's k does not)
            if isinstance(op, Activation) and op.gate_bits() > op.value_bits:
                need = max(need, min(op.gate_bits() + 1, RING_BITS))
        local = sum(n * 2.0 ** (b - 1) for n, b in self.local_truncations())
        if local and failure_target is not None:
            need = max(need, math.ceil(math.log2(local / failure_target)))
        return min(RING_BITS, need) if cap else need

    def tensor(self, tid: int) -> Tensor:
        return self.tensors[tid]

    @property
    def output_op(self) -> Output:
        return self.ops[-1]  # type: ignore[return-value]

    def to_dict(self) -> dict:
        """Plain data (arrays as lists) for the public spec sent to peers."""
        def op_dict(op: Op) -> dict:
            d = {"kind": op.kind}
            for f in dataclasses.fields(op):
                v = getattr(op, f.name)
                if isinstance(v, np.ndarray):
                    v = {"dtype": str(v.dtype), "shape": list(v.shape), "data": v.reshape(-1).tolist()}
                elif isinstance(v, tuple):
                    v = list(v)
                d[f.name] = v
            return d
        return {"format": self.format, "frac_bits": self.fixed_point.frac_bits, "ring_bits": self.ring_bits,
                "input_shape": list(self.input_shape), "meta": self.meta,
                "tensors": [dataclasses.asdict(t) | {"shape": list(t.shape)} for t in self.tensors.values()],
                "ops": [op_dict(op) for op in self.ops]}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        if d.get("format") not in READABLE_PLAN_FORMATS:
            raise PlanError(f"plan format {d.get('format')!r} is not supported (expected one of "
                            f"{READABLE_PLAN_FORMATS})")
        kinds = {c.__name__: c for c in OP_TYPES}
        ops = []
        for od in d["ops"]:
            od = dict(od)
            kind = od.pop("kind")
            if kind not in kinds:
                raise PlanError(f"unknown op kind {kind!r} in plan")
            for k, v in list(od.items()):
                if isinstance(v, dict) and {"dtype", "shape", "data"} <= v.keys():
                    od[k] = np.asarray(v["data"], dtype=v["dtype"]).reshape(v["shape"])
                elif isinstance(v, list):
                    od[k] = tuple(v)
            ops.append(kinds[kind](**od))
        tensors = {t["id"]: Tensor(**{**t, "shape": tuple(t["shape"])}) for t in d["tensors"]}
        try:
            # Plans written before the ring width became a parameter ran in Z_(2^64).
            fp = FixedPoint(d["frac_bits"], d.get("ring_bits", RING_BITS))
        except ValueError as exc:
            raise PlanError(f"plan fixed point: {exc}") from None
        return cls(ops, tensors, fp, tuple(d["input_shape"]), meta=d.get("meta", {}))


OP_TYPES = (Input, Output, Conv2d, Linear, SumPool, MulConst, Add, Reshape, Truncate, ToMasked,
            Activation, MaxPool)


@dataclass
class ServerWeights:
    """The server's private ring-encoded weights and biases, keyed by op name."""
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    biases: dict[str, np.ndarray] = field(default_factory=dict)


class PlanBuilder:
    """Builds a Plan from float layers, tracking scale and sharing state of every tensor.

    Rules: inputs enter at scale f, MASKED. A private linear op needs a MASKED input (a
    ToMasked is inserted otherwise) and adds f to the scale. An activation brings its output
    to scale f (the gates fuse the shift; identity sites are truncated locally), except a layer of
    identity sites only, which keeps its input's scale (no truncation at all). Add aligns
    scales by exact multiplication by a power of two.
    """

    def __init__(self, input_shape: tuple[int, ...], fixed_point: FixedPoint | None = None,
                 scale_cap: int | None = None, poly_word_bits: int = POLY_WORD_BITS) -> None:
        """scale_cap: the largest scale a private linear output (or a scaling by a public real) may
        reach before its input is truncated to f, where the ring would allow more. poly_word_bits:
        the widest words the provider computes polynomial sites in (poly_output_shift)."""
        self.fp = fixed_point or FixedPoint()
        self.scale_cap = scale_cap
        self.poly_word_bits = poly_word_bits
        self.ops: list[Op] = []
        self.tensors: dict[int, Tensor] = {}
        self.weights = ServerWeights()
        self._names: set[str] = set()
        self._rescaled: dict[tuple[int, int], int] = {}   # (tensor, scale) → its truncation
        self.input_shape = tuple(input_shape)
        self.input = self._new(self.input_shape, self.fp.frac_bits, MASKED)
        self.ops.append(Input("input", (), self.input))

    # -- helpers -------------------------------------------------------------------------
    def _new(self, shape, scale: int, state: str) -> int:
        tid = len(self.tensors)
        self.tensors[tid] = Tensor(tid, tuple(int(s) for s in shape), scale, state)
        return tid

    def _name(self, name: str | None, default: str) -> str:
        base = name or default
        n, i = base, 1
        while n in self._names:
            i += 1
            n = f"{base}_{i}"
        self._names.add(n)
        return n

    def _t(self, tid: int) -> Tensor:
        if tid not in self.tensors:
            raise PlanError(f"unknown tensor id {tid}")
        return self.tensors[tid]

    @property
    def _max_scale(self) -> int:
        # At least MIN_MAGNITUDE_BITS of the ring must remain for the values' integer part.
        return self.fp.ring.max_value_bits - MIN_MAGNITUDE_BITS

    @property
    def _carry_limit(self) -> int:
        return self._max_scale if self.scale_cap is None else min(self._max_scale, self.scale_cap)

    def _check_scale(self, scale: int, where: str) -> None:
        if scale > self._max_scale:
            raise PlanError(f"{where}: fixed-point scale 2^{scale} leaves fewer than {MIN_MAGNITUDE_BITS} bits "
                            f"for the values in the {self.fp.ring_bits}-bit ring; insert an activation or a "
                            "truncation, lower frac_bits, or use a wider ring_bits")

    def masked(self, tid: int) -> int:
        t = self._t(tid)
        if t.state == MASKED:
            return tid
        out = self._new(t.shape, t.scale, MASKED)
        self.ops.append(ToMasked(self._name(None, f"to_masked{out}"), (tid,), out))
        return out

    def rescale(self, tid: int, scale: int) -> int:
        """Brings a tensor to `scale`: up by an exact multiplication, down by a truncation (once
        per tensor: a residual stream's conv and shortcut share it, and its round)."""
        t = self._t(tid)
        if scale == t.scale:
            return tid
        if (tid, scale) in self._rescaled:
            return self._rescaled[(tid, scale)]
        if scale > t.scale:
            out = self._new(t.shape, scale, t.state)
            self.ops.append(MulConst(self._name(None, f"upscale{out}"), (tid,), out, factor=1 << (scale - t.scale)))
        else:
            out = self._new(t.shape, scale, MASKED)
            self.ops.append(Truncate(self._name(None, f"trunc{out}"), (tid,), out, shift=t.scale - scale))
            self._rescaled[(tid, scale)] = out
        return out

    # -- private linear ops ---------------------------------------------------------------
    def _linear_input(self, tid: int) -> int:
        """A private linear op adds f to the scale: inputs whose scale would then leave too
        little room for the values are truncated to f first (faithfully), then MASKED."""
        t = self._t(tid)
        if t.scale + self.fp.frac_bits > self._carry_limit:
            tid = self.rescale(tid, self.fp.frac_bits)
        return self.masked(tid)

    def conv2d(self, tid: int, weight: np.ndarray, bias: np.ndarray | None = None, stride=(1, 1),
               padding=(0, 0), name: str | None = None) -> int:
        tid = self._linear_input(tid)
        t = self._t(tid)
        weight = np.asarray(weight, dtype=np.float64)
        if weight.ndim != 4 or len(t.shape) != 3 or weight.shape[1] != t.shape[0]:
            raise PlanError(f"conv2d {name}: weight {weight.shape} does not fit input {t.shape}")
        _, h, w = t.shape
        oh = (h + 2 * padding[0] - weight.shape[2]) // stride[0] + 1
        ow = (w + 2 * padding[1] - weight.shape[3]) // stride[1] + 1
        if oh < 1 or ow < 1:
            raise PlanError(f"conv2d {name}: kernel {weight.shape[2:]} larger than padded input {t.shape[1:]}")
        scale = t.scale + self.fp.frac_bits
        self._check_scale(scale, f"conv2d {name}")
        out = self._new((weight.shape[0], oh, ow), scale, SHARED)
        op = Conv2d(self._name(name, "conv"), (tid,), out, tuple(weight.shape), tuple(stride), tuple(padding),
                    bias is not None)
        self._store(op.name, weight, bias, scale)
        self.ops.append(op)
        return out

    def linear(self, tid: int, weight: np.ndarray, bias: np.ndarray | None = None, name: str | None = None) -> int:
        tid = self._linear_input(tid)
        t = self._t(tid)
        weight = np.asarray(weight, dtype=np.float64)
        if weight.ndim != 2 or len(t.shape) != 1 or weight.shape[1] != t.shape[0]:
            raise PlanError(f"linear {name}: weight {weight.shape} does not fit input {t.shape}")
        scale = t.scale + self.fp.frac_bits
        self._check_scale(scale, f"linear {name}")
        out = self._new((weight.shape[0],), scale, SHARED)
        op = Linear(self._name(name, "linear"), (tid,), out, tuple(weight.shape), bias is not None)
        self._store(op.name, weight, bias, scale)
        self.ops.append(op)
        return out

    def _store(self, name: str, weight, bias, out_scale: int) -> None:
        self.weights.weights[name] = self.fp.encode(weight)
        if bias is not None:
            self.weights.biases[name] = self.fp.encode(np.asarray(bias, dtype=np.float64), scale=out_scale)

    # -- public ops -----------------------------------------------------------------------
    def avgpool(self, tid: int, kernel, stride=None, padding=(0, 0), name: str | None = None) -> int:
        """Average pooling (count_include_pad=True): window sum, then × round(2^f / k)."""
        kernel = tuple(kernel)
        stride = tuple(stride or kernel)
        summed = self.sumpool(tid, kernel, stride, padding, name)
        return self.mul_const(summed, 1.0 / (kernel[0] * kernel[1]), name)

    def sumpool(self, tid: int, kernel, stride, padding=(0, 0), name: str | None = None) -> int:
        t = self._t(tid)
        c, h, w = t.shape
        oh = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
        ow = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
        out = self._new((c, oh, ow), t.scale, t.state)
        self.ops.append(SumPool(self._name(name, "sumpool"), (tid,), out, tuple(kernel), tuple(stride), tuple(padding)))
        return out

    def mul_const(self, tid: int, value: float, name: str | None = None) -> int:
        """× a public positive real. Integers and 2^-j are exact (a division by 2^j only
        relabels the scale); other values are encoded at scale f, which adds f."""
        t = self._t(tid)
        if value <= 0:
            raise PlanError(f"mul_const {name}: only positive constants are supported, got {value}")
        j = -np.log2(value)
        if not float(value).is_integer() and t.scale + (int(j) if j.is_integer() else self.fp.frac_bits) > \
                self._carry_limit and t.scale > self.fp.frac_bits:
            # a scale carried through identity layers: truncate faithfully to f first
            tid = self.rescale(tid, self.fp.frac_bits)
            t = self._t(tid)
        if float(value).is_integer():
            factor, scale = int(value), t.scale
        elif j.is_integer():
            factor, scale = 1, t.scale + int(j)
        else:
            factor, scale = int(round(value * 2 ** self.fp.frac_bits)), t.scale + self.fp.frac_bits
        self._check_scale(scale, f"mul_const {name}")
        out = self._new(t.shape, scale, t.state)
        self.ops.append(MulConst(self._name(name, "mulconst"), (tid,), out, factor=factor))
        return out

    def add(self, a: int, b: int, name: str | None = None) -> int:
        ta, tb = self._t(a), self._t(b)
        if ta.shape != tb.shape:
            raise PlanError(f"add {name}: shapes {ta.shape} and {tb.shape} differ")
        scale = max(ta.scale, tb.scale)
        a, b = self.rescale(a, scale), self.rescale(b, scale)
        state = MASKED if ta.state == tb.state == MASKED else SHARED
        out = self._new(ta.shape, scale, state)
        self.ops.append(Add(self._name(name, "add"), (a, b), out))
        return out

    def reshape(self, tid: int, shape, name: str | None = None) -> int:
        t = self._t(tid)
        if int(np.prod(shape)) != t.size:
            raise PlanError(f"reshape {name}: cannot view {t.shape} as {tuple(shape)}")
        out = self._new(shape, t.scale, t.state)
        self.ops.append(Reshape(self._name(name, "reshape"), (tid,), out))
        return out

    def truncate(self, tid: int, scale: int) -> int:
        return self.rescale(tid, scale)

    # -- non-linear ops -------------------------------------------------------------------
    def activation(self, tid: int, kinds: np.ndarray | None = None, circa_k: int | None = None,
                   circa_mode: str = "poszero", poly: np.ndarray | None = None, name: str | None = None,
                   bound: float | None = None) -> int:
        """bound: a guaranteed max |input| (reals); it narrows the comparison gates' bit width."""
        t = self._t(tid)
        if kinds is not None:
            kinds = np.broadcast_to(np.asarray(kinds, dtype=np.int8), t.shape).copy()
            if kinds.min() < 0 or kinds.max() >= len(SITE_KINDS):
                raise PlanError(f"activation {name}: site codes must be in 0..{len(SITE_KINDS) - 1}")
            if (kinds == RELU).all():
                kinds = None
        if kinds is not None and (kinds == CIRCA).any():
            if circa_k is None:
                raise PlanError(f"activation {name}: Circa sites need circa_k")
            if circa_mode not in CIRCA_MODES:
                raise PlanError(f"activation {name}: circa_mode must be one of {CIRCA_MODES}, got {circa_mode!r}")
        if kinds is not None and (kinds == POLY).any():
            if poly is None or np.asarray(poly).shape != (t.shape[0], 3):
                raise PlanError(f"activation {name}: polynomial sites need coefficients of shape ({t.shape[0]}, 3)")
        f = self.fp.frac_bits
        if t.scale < f:
            tid = self.rescale(tid, f)
            t = self._t(tid)
        # Gate sites come out MASKED; identity sites keep the input's state (local rescaling).
        # Polynomial sites compute p(x) at scale 3f (x at scale f times coefficients at scale f
        # and 2f) and output it at 3f − d (poly_output_shift); the other sites of such a layer
        # are scaled up exactly to match.
        has_identity = kinds is not None and bool((kinds == IDENTITY).any())
        has_poly = kinds is not None and bool((kinds == POLY).any())
        out_scale = 3 * f - poly_output_shift(self.fp, self.poly_word_bits) if has_poly else f
        if has_identity and bool((kinds == IDENTITY).all()):
            # Nothing to compute: the layer passes its input on at its scale. A local truncation
            # would fail with probability |v|/2^l; the next gate (or Truncate) truncates by the
            # accumulated amount faithfully, and a private linear op whose output scale would
            # leave the ring too few bits truncates its input first (_linear_input).
            out_scale = t.scale
        if has_poly:
            self._check_scale(out_scale, f"activation {name} (polynomial sites output at scale {out_scale})")
        out = self._new(t.shape, out_scale, t.state if has_identity else MASKED)
        value_bits = self.fp.ring.max_value_bits + 1          # the full ring
        if bound is not None and bound > 0:
            value_bits = min(value_bits, int(np.ceil(np.log2(bound * 2.0 ** t.scale))) + 2)
        op = Activation(self._name(name, "act"), (tid,), out, kinds=kinds, shift=t.scale - f,
                        circa_k=circa_k, circa_mode=circa_mode,
                        poly=None if poly is None else np.asarray(poly, dtype=np.float64), value_bits=value_bits)
        if not gate_width_fits(op.gate_bits(), self.fp.ring_bits):
            raise PlanError(f"activation {name}: its gates need {op.gate_bits() + 1} bits, more than the "
                            f"{self.fp.ring_bits}-bit ring; use a wider ring_bits" +
                            (" or a smaller circa_k" if op.gate_bits() > value_bits else ""))
        self.ops.append(op)
        return out

    def maxpool(self, tid: int, kernel, stride=None, padding=(0, 0), name: str | None = None) -> int:
        t = self._t(tid)
        kernel = tuple(kernel)
        stride = tuple(stride or kernel)
        if tuple(padding) != (0, 0):
            raise PlanError(f"maxpool {name}: padding is not supported (pad with -inf has no ring encoding)")
        c, h, w = t.shape
        oh, ow = (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
        out = self._new((c, oh, ow), t.scale, t.state)
        self.ops.append(MaxPool(self._name(name, "maxpool"), (tid,), out, kernel, stride, (0, 0),
                                value_bits=self.fp.ring.max_value_bits + 1))
        return out

    def output(self, tid: int, label_only: bool = False) -> Plan:
        self.ops.append(Output("output", (tid,), -1, label_only=label_only))
        return Plan(self.ops, self.tensors, self.fp, self.input_shape)
