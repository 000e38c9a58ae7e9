"""Compiles a torch model into a secure plan: trace with torch.fx, fold BatchNorm, apply the
ReLU policy, and emit PlanBuilder ops (protocols.plan) with the server's weights.

Supported layers are listed in SUPPORTED (docs/supported_ops.md is generated from it).
"""
from __future__ import annotations

import copy
import math
import operator
import warnings
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from protocols.fixed_point import RING_BITS, FixedPoint
from protocols.plan import POLY_WORD_BITS, TRUNC_FAILURE_TARGET, Activation, Plan, PlanBuilder, PlanError, ServerWeights
from pi.ring_width import ValuesTooWide, calibrated_width, check_fits
from protocols.site_kinds import CIRCA, IDENTITY, POLY, RELU
from relu_budget.dapa import dapa_coefficients
from relu_budget.models import ReluSite
from relu_budget.policy import SitePolicy  # also public as pi.compiler.SitePolicy

# What the compiler understands: (torch op, how it is computed securely).
SUPPORTED: dict[str, str] = {
    "nn.Conv2d": "private-weight convolution (groups=1), BatchNorm2d that follows is folded in",
    "nn.Linear": "private-weight matrix product",
    "nn.BatchNorm2d": "folded into the preceding Conv2d; standalone: a private per-channel affine map",
    "nn.ReLU / F.relu / torch.relu / ReluSite": "per-site exact ReLU, Circa, polynomial or identity (policy)",
    "nn.AvgPool2d / F.avg_pool2d": "public window sum and scaling (local)",
    "nn.AdaptiveAvgPool2d / F.adaptive_avg_pool2d": "average pooling with the equivalent fixed window (local)",
    "nn.MaxPool2d / F.max_pool2d": "tree of secure comparisons (exact ReLU gates)",
    "operator.add / torch.add (residual add)": "local addition after scale alignment",
    "nn.Flatten / torch.flatten / Tensor.view / Tensor.reshape / Tensor.flatten": "local reshape",
    "nn.Dropout / nn.Identity": "identity (evaluation mode)",
}
RELU_CHOICES = {"exact": RELU, "circa": CIRCA, "poly": POLY, "identity": IDENTITY}


class UnsupportedOp(ValueError):
    """The model uses an op the secure engine cannot run; the message names node and op."""


class TrainModeWarning(UserWarning):
    """pi.compile got a model in training mode; it compiles the evaluation-mode network."""


class TruncationFailureWarning(UserWarning):
    """The plan's local truncations may fail (a wrong output) more often than the target."""


# Activations the engine has no gate for; they are replaced in the model, then fine-tuned.
_ACTIVATION_HINT = ("replace it with nn.ReLU (or a relu_budget ReluSite) and fine-tune for a few epochs; "
                    "relu-budget autorep can also learn degree-2 polynomial replacements")
_REPLACEMENT_HINTS = {name: _ACTIVATION_HINT for name in (
    "ReLU6", "GELU", "SiLU", "Hardswish", "Hardsigmoid", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "Mish",
    "Sigmoid", "Tanh", "Softplus", "relu6", "gelu", "silu", "hardswish", "leaky_relu", "elu", "selu",
    "sigmoid", "tanh", "softplus", "mish", "hardtanh", "Hardtanh")}
_REPLACEMENT_HINTS.update({
    "Softmax": "drop it: the client gets the logits (or the label with output='label'), whose argmax is the "
               "softmax's; apply softmax on the client",
    "softmax": "drop it and apply softmax to the logits on the client",
    "log_softmax": "drop it and apply log_softmax to the logits on the client",
    "LogSoftmax": "drop it and apply log_softmax to the logits on the client",
    "BatchNorm1d": "use it after a Linear as an affine layer folded into the Linear by hand, or remove it",
    "LayerNorm": "the engine has no secure normalization; use BatchNorm2d (folded into the convolution)",
    "GroupNorm": "the engine has no secure normalization; use BatchNorm2d (folded into the convolution)",
    "Upsample": "the engine has no upsampling; use a strided/transposed design with Conv2d only",
    "mean": "global averages over the spatial axes: use nn.AdaptiveAvgPool2d(1) followed by nn.Flatten",
    "cat": "the engine has no concatenation; sum the branches (residual add) or widen one convolution",
})


def _unsupported(node: fx.Node, what: str, hint: str | None = None) -> UnsupportedOp:
    fix = f" Fix: {hint}." if hint else ""
    return UnsupportedOp(f"node {node.name!r}: {what} is not supported by the secure engine.{fix} Supported: "
                         + "; ".join(SUPPORTED))


def _unsupported_call(node: fx.Node, what: str, name: str) -> UnsupportedOp:
    return _unsupported(node, what, _REPLACEMENT_HINTS.get(name))


def _conv_problems(m: nn.Conv2d) -> list[str]:
    """The settings of a Conv2d the engine cannot run, each with what to use instead."""
    out = []
    if m.groups != 1:
        out.append(f"groups={m.groups} (grouped/depthwise convolution; use groups=1)")
    if _pair(m.dilation) != (1, 1):
        out.append(f"dilation={m.dilation} (use dilation=1)")
    if m.padding_mode != "zeros":
        out.append(f"padding_mode={m.padding_mode!r} (use 'zeros')")
    if isinstance(m.padding, str):
        out.append(f"padding={m.padding!r} (give the padding as numbers)")
    return out


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, ReluSite) or super().is_leaf_module(m, qualname)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = w * scale.view(-1, 1, 1, 1)
    b = (b - bn.running_mean.double()) * scale + bn.bias.detach().double()
    return w.numpy(), b.numpy()


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def compile_plan(model: nn.Module, example_input: torch.Tensor, *, site_policy=None,
                 fixed_point: FixedPoint | None = None, calibration: torch.Tensor | None = None,
                 margin_bits: int = 6, label_only: bool = False,
                 ring_bits: int | str | None = None, max_ring_bits: int = RING_BITS,
                 poly_word_bits: int = POLY_WORD_BITS) -> tuple[Plan, ServerWeights]:
    """Traces `model` and builds (public plan, private weights).

    example_input: one input with or without a batch dimension. site_policy(name, shape) →
    SitePolicy decides each ReLU layer's sites (default: all exact). calibration: a batch of
    representative inputs; the largest |value| of every layer, times 2^margin_bits, bounds the
    gates' input bit widths and the ring. Without it the full ring is assumed.
    ring_bits: the ring Z_(2^l) the plan runs in: an int, or "calibrated" (the narrowest ring
    the calibrated bounds allow, Plan.required_ring_bits); default "calibrated" when
    calibration is given, else fixed_point's (64). max_ring_bits: the widest ring the provider
    runs in (two-party: 59); a calibrated width is capped there (with faithful truncations
    inserted where a scale needs them; local truncations may then fail more often than the
    target, see Plan.truncation_failure_bound). poly_word_bits: the widest words the provider
    computes polynomial sites in (protocols.plan.poly_output_shift; two-party: 64).
    A model in training mode is compiled as in evaluation mode (with a TrainModeWarning) and
    left in the mode it came in."""
    was_training = model.training
    if was_training:
        warnings.warn(f"{type(model).__name__} is in training mode; compiling its evaluation-mode network "
                      "(BatchNorm running statistics, no dropout). Call model.eval() before pi.compile.",
                      TrainModeWarning, stacklevel=3)
    f = (fixed_point or FixedPoint()).frac_bits
    try:
        # Scales carried through whole identity layers (PlanBuilder.activation) may make the
        # values too wide for 64 bits: then linear outputs are kept at or below 4f, 3f, 2f in turn
        # (faithful truncations where they would exceed it; at 2f no identity layer carries).
        for cap in (None, 4 * f, 3 * f, 2 * f):
            try:
                plan, weights = _compile_plan(model.eval(), example_input, site_policy=site_policy,
                                              fixed_point=fixed_point, calibration=calibration, margin_bits=margin_bits,
                                              label_only=label_only, ring_bits=ring_bits, max_ring_bits=max_ring_bits,
                                              scale_cap=cap, poly_word_bits=poly_word_bits)
                break
            except ValuesTooWide:
                if cap == 2 * f:
                    raise
    finally:
        model.train(was_training)
    bound = plan.truncation_failure_bound()
    if bound > TRUNC_FAILURE_TARGET:
        fix = "pass calibration inputs (a ring wide enough is chosen, up to 64 bits), " if calibration is None else ""
        warnings.warn(f"identity sites in layers with other sites truncate locally, and in this {plan.ring_bits}-bit "
                      f"ring one example's output is wrong with probability up to {bound:.2g} (target "
                      f"{TRUNC_FAILURE_TARGET:.2g}); {fix}make whole layers identity (they truncate nothing) or keep "
                      "fewer identity sites beside gate sites", TruncationFailureWarning, stacklevel=3)
    return plan, weights


def _compile_plan(model, example_input, *, site_policy, fixed_point, calibration, margin_bits, label_only,
                  ring_bits, max_ring_bits=RING_BITS, check_fit=True, scale_cap=None, poly_word_bits=POLY_WORD_BITS):
    fixed_point = fixed_point or FixedPoint()
    if ring_bits is None:
        ring_bits = "calibrated" if calibration is not None else fixed_point.ring_bits
    if ring_bits == "calibrated":
        if calibration is None:
            raise PlanError("ring_bits='calibrated' needs calibration inputs")
        kw = {"site_policy": site_policy, "calibration": calibration, "margin_bits": margin_bits,
              "label_only": label_only, "check_fit": False, "scale_cap": scale_cap,
              "poly_word_bits": poly_word_bits}   # checked once, at the width chosen
        full = _compile_plan(model, example_input, fixed_point=fixed_point, ring_bits=RING_BITS, **kw)
        return calibrated_width(full, lambda width: _compile_plan(model, example_input, fixed_point=fixed_point,
                                                                  ring_bits=width, **kw),
                                max_ring_bits=max_ring_bits, poly_word_bits=poly_word_bits,
                                frac_bits=fixed_point.frac_bits, margin_bits=margin_bits)
    if not isinstance(ring_bits, int) or isinstance(ring_bits, bool):
        raise PlanError(f"ring_bits must be an integer or 'calibrated', got {ring_bits!r}")
    try:
        fixed_point = replace(fixed_point, ring_bits=ring_bits)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    if not list(model.children()):
        model = nn.Sequential(model)   # a bare layer: trace it as a one-layer network
    x = example_input if example_input.dim() == 4 or example_input.dim() == 2 else example_input.unsqueeze(0)
    x = x[:1].float()
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:
        raise UnsupportedOp(f"torch.fx could not trace the model: {exc}") from exc
    gm = fx.GraphModule(model, graph)
    modules = dict(gm.named_modules())

    # Shapes of every node from one plaintext run (also the calibration input).
    values: dict[str, torch.Tensor] = {}
    interp = fx.Interpreter(gm)
    orig_run_node = interp.run_node

    def run_node(n):
        out = orig_run_node(n)
        values[n.name] = out
        return out
    interp.run_node = run_node
    with torch.no_grad():
        interp.run(x)
    bounds: dict[str, float] = {}
    channel_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}   # for fitted polynomials
    act_inputs = {n.args[0].name for n in graph.nodes
                  if n.args and isinstance(n.args[0], fx.Node) and _is_activation(n, modules)}
    cal = fx.Interpreter(gm)
    cal_run_node = cal.run_node

    def record(n):
        out = cal_run_node(n)
        if isinstance(out, torch.Tensor):
            if calibration is not None:
                bounds[n.name] = out.detach().abs().max().item()
            if n.name in act_inputs and out.dim() >= 2:
                per_channel = out.detach().double().transpose(0, 1).reshape(out.shape[1], -1)
                channel_stats[n.name] = per_channel.mean(1), per_channel.std(1, correction=0)
        return out
    cal.run_node = record
    with torch.no_grad():
        cal.run(x if calibration is None else calibration.float())

    def build():
        b = PlanBuilder(tuple(x.shape[1:]), fixed_point, scale_cap=scale_cap, poly_word_bits=poly_word_bits)
        env: dict[str, int] = {}
        folded: set[str] = set()

        def arg(n):
            if not isinstance(n, fx.Node):
                raise UnsupportedOp(f"expected a tensor argument, got {n!r}")
            return env[n.name]

        def relu(node, name, shape):
            pol = site_policy(name, shape) if site_policy else SitePolicy()
            bound = bounds.get(node.args[0].name)
            poly = pol.poly
            if poly is None and pol.kinds is not None and bool((pol.kinds == POLY).any()):
                poly = _fitted_polynomial(channel_stats[node.args[0].name], name)
            return b.activation(arg(node.args[0]), kinds=pol.kinds, circa_k=pol.circa_k, circa_mode=pol.circa_mode,
                                poly=poly, name=name,
                                bound=None if bound is None else bound * 2.0 ** margin_bits)

        for node in graph.nodes:
            if node.op == "placeholder":
                if env:
                    raise _unsupported(node, "a second model input")
                env[node.name] = b.input
            elif node.op == "output":
                out = node.args[0]
                if not isinstance(out, fx.Node):
                    raise _unsupported(node, "a non-tensor or multiple outputs")
                plan = b.output(env[out.name], label_only=label_only)
                plan.meta["source"] = type(model).__name__
                if calibration is not None:
                    _annotate_bounds(plan, env, bounds, margin_bits)
                return plan, b.weights
            elif node.op == "call_module":
                m = modules[node.target]
                name = node.target
                shape = tuple(values[node.args[0].name].shape[1:]) if node.args and isinstance(node.args[0], fx.Node) else ()
                if isinstance(m, nn.Conv2d):
                    problems = _conv_problems(m)
                    if problems:
                        raise _unsupported(node, f"Conv2d {name} with {', '.join(problems)}")
                    nxt = list(node.users)
                    if len(nxt) == 1 and nxt[0].op == "call_module" and isinstance(modules[nxt[0].target], nn.BatchNorm2d):
                        w, bias = _fold_bn(m, modules[nxt[0].target])
                        folded.add(nxt[0].name)
                        env[nxt[0].name] = b.conv2d(arg(node.args[0]), w, bias, _pair(m.stride), _pair(m.padding), name=name)
                        env[node.name] = env[nxt[0].name]
                    else:
                        bias = None if m.bias is None else m.bias.detach().double().numpy()
                        env[node.name] = b.conv2d(arg(node.args[0]), m.weight.detach().double().numpy(), bias,
                                                  _pair(m.stride), _pair(m.padding), name=name)
                elif isinstance(m, nn.BatchNorm2d):
                    if node.name in folded:
                        continue
                    c = m.num_features
                    eye = np.eye(c).reshape(c, c, 1, 1)
                    scale = (m.weight.detach().double() / torch.sqrt(m.running_var.double() + m.eps)).numpy()
                    bias = (m.bias.detach().double() - m.running_mean.double() * torch.from_numpy(scale)).numpy()
                    env[node.name] = b.conv2d(arg(node.args[0]), eye * scale.reshape(c, 1, 1, 1), bias, name=name)
                elif isinstance(m, nn.Linear):
                    bias = None if m.bias is None else m.bias.detach().double().numpy()
                    env[node.name] = b.linear(arg(node.args[0]), m.weight.detach().double().numpy(), bias, name=name)
                elif isinstance(m, (nn.ReLU, ReluSite)):
                    if isinstance(m, ReluSite) and m.replacement is not None:
                        raise _unsupported(node, f"ReluSite {name} still has a training-time replacement")
                    env[node.name] = relu(node, name, shape)
                elif isinstance(m, nn.AvgPool2d):
                    bad = [f"{k}={v}" for k, v, ok in (("ceil_mode", m.ceil_mode, not m.ceil_mode),
                                                        ("count_include_pad", m.count_include_pad, m.count_include_pad))
                           if not ok]
                    if bad:
                        raise _unsupported(node, f"AvgPool2d {name} with {', '.join(bad)}",
                                           "use ceil_mode=False and count_include_pad=True")
                    env[node.name] = b.avgpool(arg(node.args[0]), _pair(m.kernel_size), _pair(m.stride or m.kernel_size),
                                               _pair(m.padding), name=name)
                elif isinstance(m, nn.AdaptiveAvgPool2d):
                    env[node.name] = _adaptive(b, node, arg(node.args[0]), shape, m.output_size, name)
                elif isinstance(m, nn.MaxPool2d):
                    bad = [f"{k}={v}" for k, v, ok in (("padding", m.padding, _pair(m.padding) == (0, 0)),
                                                        ("dilation", m.dilation, _pair(m.dilation) == (1, 1)),
                                                        ("ceil_mode", m.ceil_mode, not m.ceil_mode)) if not ok]
                    if bad:
                        raise _unsupported(node, f"MaxPool2d {name} with {', '.join(bad)}",
                                           "use padding=0, dilation=1, ceil_mode=False (pad with a Conv2d before)")
                    env[node.name] = b.maxpool(arg(node.args[0]), _pair(m.kernel_size), _pair(m.stride or m.kernel_size),
                                               name=name)
                elif isinstance(m, nn.Flatten):
                    env[node.name] = b.reshape(arg(node.args[0]), tuple(values[node.name].shape[1:]), name=name)
                elif isinstance(m, (nn.Dropout, nn.Identity)):
                    env[node.name] = arg(node.args[0])
                else:
                    raise _unsupported_call(node, f"module {type(m).__name__} ({name})", type(m).__name__)
            elif node.op == "call_function":
                fn = node.target
                if fn in (operator.add, torch.add, operator.iadd):
                    if len(node.args) != 2 or not all(isinstance(a, fx.Node) for a in node.args) or node.kwargs:
                        raise _unsupported(node, "add with a constant or alpha")
                    env[node.name] = b.add(arg(node.args[0]), arg(node.args[1]), name=node.name)
                elif fn in (F.relu, torch.relu):
                    shape = tuple(values[node.args[0].name].shape[1:])
                    env[node.name] = relu(node, node.name, shape)
                elif fn in (torch.flatten,):
                    env[node.name] = b.reshape(arg(node.args[0]), tuple(values[node.name].shape[1:]), name=node.name)
                elif fn is F.adaptive_avg_pool2d:
                    shape = tuple(values[node.args[0].name].shape[1:])
                    env[node.name] = _adaptive(b, node, arg(node.args[0]), shape, node.args[1], node.name)
                elif fn is F.dropout:
                    env[node.name] = arg(node.args[0])
                else:
                    fname = getattr(fn, "__name__", str(fn))
                    raise _unsupported_call(node, f"function {fname}", fname)
            elif node.op == "call_method":
                if node.target in ("view", "reshape", "flatten"):
                    env[node.name] = b.reshape(arg(node.args[0]), tuple(values[node.name].shape[1:]), name=node.name)
                elif node.target in ("contiguous",):
                    env[node.name] = arg(node.args[0])
                else:
                    raise _unsupported_call(node, f"method Tensor.{node.target}", str(node.target))
            elif node.op == "get_attr":
                raise _unsupported(node, f"a constant tensor attribute ({node.target})")
        raise UnsupportedOp("the traced graph has no output node")

    plan, weights = build()
    if calibration is not None:
        # Calibration ran the model as given; the plan's sites (polynomials, identity) may change
        # the values after them. Bound every tensor by what the compiled network itself computes
        # on the calibration data, and rebuild if that is larger, so that no gate is sized too
        # narrow (a too-narrow gate wraps: a wrong answer, not an error).
        twin = _compiled_bounds(gm, plan, calibration)
        if any(twin.get(k, 0.0) > v for k, v in bounds.items()):
            bounds.update({k: max(v, twin.get(k, 0.0)) for k, v in bounds.items()})
            plan, weights = build()
    if calibration is not None and check_fit:
        check_fits(plan, margin_bits)
    return plan, weights


def _is_activation(n: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """A traced ReLU: a ReLU/ReluSite module or F.relu/torch.relu (the compiler's activation sites)."""
    return (n.op == "call_module" and isinstance(modules[n.target], (nn.ReLU, ReluSite))) or \
        (n.op == "call_function" and n.target in (F.relu, torch.relu))


def _compiled_bounds(gm: fx.GraphModule, plan: Plan, calibration: torch.Tensor) -> dict[str, float]:
    """max |value| of every traced node when the activations compute what `plan`'s sites do
    (polynomial, identity; Circa as exact ReLU), run on the calibration data."""
    acts = {op.name: op for op in plan.ops if isinstance(op, Activation) and op.kinds is not None}
    modules = dict(gm.named_modules())
    out: dict[str, float] = {}
    interp = fx.Interpreter(gm)
    run_node = interp.run_node

    def record(n):
        op = acts.get(n.target if n.op == "call_module" else n.name) if _is_activation(n, modules) else None
        if op is None:
            v = run_node(n)
        else:
            site = ReluSite()
            site.set_kinds(torch.from_numpy(np.asarray(op.kinds)),
                           None if op.poly is None else torch.from_numpy(np.asarray(op.poly)))
            v = site(interp.fetch_args_kwargs_from_env(n)[0][0])
        if isinstance(v, torch.Tensor):
            out[n.name] = float(v.detach().abs().max())
        return v
    interp.run_node = record
    with torch.no_grad():
        interp.run(torch.as_tensor(calibration).float())
    return out


def plaintext_twin(model: nn.Module, plan: Plan) -> nn.Module:
    """A copy of `model` that computes in plaintext what `plan` computes securely: every
    ReLU layer's sites get the plan's kinds and polynomial coefficients (Circa sites stay
    exact ReLU: their faults are the secure side's). The reference for secure outputs."""
    twin = copy.deepcopy(model).eval()
    modules = dict(twin.named_modules())
    for op in plan.ops:
        if not isinstance(op, Activation) or op.kinds is None:
            continue
        site = modules.get(op.name)
        if not isinstance(site, ReluSite):
            raise ValueError(f"activation {op.name}: the model has no ReluSite of that name to carry its site "
                             "kinds (build the model from relu_budget.models)")
        poly = None if op.poly is None else torch.from_numpy(np.asarray(op.poly))
        site.set_kinds(torch.from_numpy(np.asarray(op.kinds)), poly)
    return twin


def _fitted_polynomial(stats: tuple[torch.Tensor, torch.Tensor], name: str) -> np.ndarray:
    """Per-channel DaPa coefficients (c0, c1, c2): the least-squares degree-2 fit of ReLU
    under N(μ_c, σ_c²), with μ_c and σ_c of the activation's input on the calibration data."""
    mean, std = stats
    if not bool((std > 0).all()):
        raise PlanError(f"activation {name}: a channel's input is constant on the calibration data, so no "
                        "polynomial can be fitted; pass more (varied) calibration inputs or a relu-budget policy")
    return dapa_coefficients(mean, std).numpy()


def _annotate_bounds(plan: Plan, env: dict[str, int], bounds: dict[str, float], margin_bits: int) -> None:
    """Stores each calibrated tensor's bound (times 2^margin_bits, rounded up to a power of two:
    the public plan reveals no more than the bit widths derived from it)."""
    for name, tid in env.items():
        if name in bounds:
            bound = 2.0 ** math.ceil(math.log2(max(bounds[name] * 2.0 ** margin_bits, plan.fixed_point.ulp)))
            t = plan.tensors[tid]
            t.bound = bound if t.bound is None else max(t.bound, bound)


def _adaptive(b: PlanBuilder, node, tid: int, shape, output_size, name: str) -> int:
    oh, ow = _pair(output_size)
    _, h, w = shape
    if h % oh or w % ow:
        raise _unsupported(node, f"AdaptiveAvgPool2d from {h}×{w} to {oh}×{ow} (sizes must divide)")
    k = (h // oh, w // ow)
    return b.avgpool(tid, k, k, name=name)


def supported_ops_markdown() -> str:
    """docs/supported_ops.md, generated from SUPPORTED (`python -m pi.compiler > docs/supported_ops.md`)."""
    lines = ["# Supported operations", "",
             "Generated from `pi.compiler.SUPPORTED` by `python -m pi.compiler > docs/supported_ops.md`;",
             "a test keeps this file in sync with the code. Anything else raises `UnsupportedOp` naming",
             "the node and the op.", "", "| torch op | secure computation |", "|---|---|"]
    lines += [f"| {op} | {how} |" for op, how in SUPPORTED.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(supported_ops_markdown(), end="")
