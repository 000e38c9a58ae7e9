"""The two-party sessions beyond the conformance suite: bundles made ahead and consumed once in
order, every site kind and mixes per site, what the client stores, the online rounds, the local
truncation law in the two-party ring, and peers that send malformed or mismatched messages."""
import dataclasses
import threading

import numpy as np
import pytest
import torch
from torch import nn

import pi
from protocols.cost import CostMeter
from protocols.fixed_point import FixedPoint
from protocols.plan import CIRCA, IDENTITY, RELU, PlanBuilder, PlanError
from protocols.transport.channel import InProcessChannel
from protocols.transport.errors import PeerDisconnected, ProtocolError, TransportError
from protocols.two_party import ClientSession, ServerSession, local
from protocols.two_party.gates import gc_spec



def both(server_fn, client_fn, chans=None):
    """Runs server_fn(chan) on a thread and client_fn(chan) here; returns (server result or
    exception, client result or exception). A side that fails closes its channel."""
    chan_s, chan_c = chans or InProcessChannel.pair()
    out = {}

    def serve():
        try:
            out["s"] = server_fn(chan_s)
        except BaseException as exc:  # noqa: BLE001 -- returned to the test, which checks its type
            out["s"] = exc
            chan_s.close()
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        c = client_fn(chan_c)
    except BaseException as exc:  # noqa: BLE001 -- returned to the test, which checks its type
        c = exc
        chan_c.close()
    th.join(60)
    assert not th.is_alive()
    return out["s"], c


def small_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4)).eval()


def test_bundles_made_ahead_are_consumed_once_in_order():
    model = small_model()
    xs = [torch.randn(2, 6) for _ in range(3)]
    sm = pi.compile(model, xs[0][:1], provider="two-party", calibration=torch.cat(xs))
    server, client = ServerSession(sm.plan, sm.weights), ClientSession(sm.plan)

    def serve(chan):
        server.setup(chan)
        bundles = [server.offline(chan, 2) for _ in xs]
        for b in bundles:
            server.online(chan, b)
        return bundles

    def use(chan):
        client.setup(chan)
        bundles = [client.offline(chan, 2) for _ in xs]
        return bundles, [client.online(chan, b, x.numpy()) for b, x in zip(bundles, xs)]
    s_bundles, (c_bundles, ys) = both(serve, use)
    for x, y in zip(xs, ys):
        assert np.abs(y - model(x).detach().double().numpy()).max() < 2 ** -7
    assert len({b.stored_bytes for b in c_bundles}) == 1 and c_bundles[0].stored_bytes > 0
    with pytest.raises(ProtocolError, match="already consumed"):
        client.online(None, c_bundles[0], xs[0].numpy())
    with pytest.raises(ProtocolError, match="already consumed"):
        server.online(None, s_bundles[0])
    other = ClientSession(sm.plan)
    fresh = dataclasses.replace(c_bundles[1], consumed=False)
    with pytest.raises(ProtocolError, match="another session"):
        other.online(None, fresh, xs[0].numpy())


def test_bundles_used_out_of_order_are_refused():
    model = small_model()
    x = torch.randn(1, 6)
    sm = pi.compile(model, x, provider="two-party", calibration=x)
    server, client = ServerSession(sm.plan, sm.weights), ClientSession(sm.plan)

    def serve(chan):
        server.setup(chan)
        first, _second = server.offline(chan, 1), server.offline(chan, 1)
        server.online(chan, first)

    def use(chan):
        client.setup(chan)
        _first, second = client.offline(chan, 1), client.offline(chan, 1)
        return client.online(chan, second, x.numpy())
    s, c = both(serve, use)
    assert isinstance(s, ProtocolError) and "order" in str(s)
    assert isinstance(c, TransportError)


def test_a_client_with_another_plan_is_refused_at_setup():
    sm = pi.compile(small_model(), torch.zeros(1, 6), provider="two-party")
    other = pi.compile(small_model(1), torch.zeros(1, 6), provider="two-party", relu="circa")
    _s, c = both(lambda ch: ServerSession(sm.plan, sm.weights).setup(ch),
                lambda ch: ClientSession(other.plan).setup(ch))
    assert isinstance(c, ProtocolError) and "another plan" in str(c)


def test_plans_beyond_seals_plain_modulus_are_refused():
    sm = pi.compile(small_model(), torch.zeros(1, 6), ring_bits=64)
    with pytest.raises(PlanError, match="at most 59 bits"):
        ServerSession(sm.plan, sm.weights)
    with pytest.raises(PlanError, match="at most 59 bits"):
        pi.compile(small_model(), torch.zeros(1, 6), provider="two-party", ring_bits=64)


def test_every_site_kind_mixed_in_one_layer_with_batch_and_max_pool():
    """Exact, Circa (both modes) and identity sites side by side, a max-pool, batch 3."""
    from pi.compiler import SitePolicy
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(3, 1, 8, 8)
    rng = np.random.default_rng(0)
    for mode in ("poszero", "negpass"):
        kinds = rng.choice([RELU, CIRCA, IDENTITY], size=(4, 8, 8)).astype(np.int8)

        def policy(name, shape, kinds=kinds, mode=mode):
            return SitePolicy(kinds=kinds if name == "1" else None, circa_k=4, circa_mode=mode)
        plan, weights = pi.compiler.compile_plan(model, x[:1], site_policy=policy, calibration=x,
                                                 ring_bits="calibrated", max_ring_bits=59)
        sm = pi.SecureModel(plan, weights, "two-party")
        y = sm.run(x)
        with torch.no_grad():
            expected = model(x).double()
        # Circa with k = 4 at scale 2f errs by < 2^4 ulps of 2^-24 where it faults
        assert float((y - expected).abs().max()) < 2 ** -7
        # one online round per activation layer and per max-pool level (2), one for input + output
        assert sm.last_cost.rounds == 2 + 2 + 1


@pytest.mark.parametrize("parts", [1, 3, 8])
def test_labels_in_parts_keep_the_results_and_the_rounds(parts, monkeypatch):
    """The server's labels of a gate group go in up to MAX_PARTS messages of one flight (the
    client evaluates each as it arrives): same outputs, same online rounds, every part used."""
    from pi.compiler import SitePolicy
    from protocols import garbled
    from protocols.two_party import gates
    per_site = {"relu": [], "circa": []}
    monkeypatch.setattr(gates, "MAX_PARTS", parts)
    monkeypatch.setattr(gates, "PART_BYTES", 1)
    part = garbled.Garbler.label_part

    def spy(self, gb, lo, hi):
        per_site[gb.spec.circuit].append(hi - lo)
        return part(self, gb, lo, hi)
    monkeypatch.setattr(garbled.Garbler, "label_part", spy)
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3)).eval()
    x = torch.randn(2, 1, 8, 8)
    kinds = np.random.default_rng(1).choice([RELU, CIRCA], size=(4, 8, 8)).astype(np.int8)
    plan, weights = pi.compiler.compile_plan(
        model, x[:1], calibration=x, ring_bits="calibrated", max_ring_bits=59,
        site_policy=lambda name, shape: SitePolicy(kinds=kinds, circa_k=4, circa_mode="poszero"))
    sm = pi.SecureModel(plan, weights, "two-party")
    y = sm.run(x)
    with torch.no_grad():
        assert float((y - model(x).double()).abs().max()) < 2 ** -7
    for kind, code in (("relu", RELU), ("circa", CIRCA)):
        assert len(per_site[kind]) == parts and sum(per_site[kind]) == 2 * int((kinds == code).sum())
    assert sm.last_cost.rounds == 1 + 1


@pytest.mark.parametrize("kind", [RELU, CIRCA])
def test_the_client_takes_its_own_labels_before_it_waits_for_the_garblers(kind, monkeypatch):
    """Evaluator.prepare (its input labels from the OT seeds, Circa's R_c1) runs before the
    client waits for the server's labels, not inside the evaluation."""
    from pi.compiler import SitePolicy
    from protocols import garbled
    prepared_at_evaluate = []
    evaluate = garbled.Evaluator.evaluate_part

    def spy(self, eb, labels):
        prepared_at_evaluate.append(eb.own is not None)
        return evaluate(self, eb, labels)
    monkeypatch.setattr(garbled.Evaluator, "evaluate_part", spy)
    model, x = small_model(), torch.randn(2, 6)
    plan, weights = pi.compiler.compile_plan(
        model, x[:1], calibration=x, ring_bits="calibrated", max_ring_bits=59,
        site_policy=lambda name, shape: SitePolicy(kinds=np.full(shape, kind, np.int8), circa_k=4,
                                                   circa_mode="poszero"))
    y = pi.SecureModel(plan, weights, "two-party").run(x)
    with torch.no_grad():
        assert float((y - model(x).double()).abs().max()) < 2 ** -6
    assert prepared_at_evaluate == [True]


def test_the_client_frees_a_batchs_tables_after_its_reply(monkeypatch):
    """The client keeps a gate group's tables through the evaluation and frees them once its
    reply is sent, while it waits for the server (not on the way to the reply)."""
    from protocols.two_party import gates
    seen = []
    reply = gates.GateGroup.client_reply

    def spy(self, cs, chan):
        held = cs.keep.get(f"{self.label}/spent")
        seen.append(isinstance(held, bytes) and len(held) > 0)
        reply(self, cs, chan)
        seen.append(f"{self.label}/spent" not in cs.keep)
    monkeypatch.setattr(gates.GateGroup, "client_reply", spy)
    model, x = small_model(), torch.randn(2, 6)
    sm = pi.compile(model, x[:1], provider="two-party", calibration=x)
    sm.run(x)
    assert seen == [True, True]


def test_client_storage_is_the_tables_and_circas_product_values():
    """stored_bytes counts, per site, the garbled tables, decode bits and one bit per label OT
    (exact), plus the client's share, S0 − S1, S0 and the choice bit (Circa), plus each batch's
    table header, the output share and two 16-byte seeds/ids; Circa keeps less than exact."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(6, 40), nn.ReLU(), nn.Linear(40, 4)).eval()
    x = torch.randn(8, 6)
    stored = {}
    for relu in ("exact", "circa"):
        sm = pi.compile(model, x[:1], provider="two-party", calibration=x, relu=relu)
        _, _, _, cb = local.run(sm.plan, sm.weights, x[:1].numpy())
        act, ring = sm.plan.ops[2], sm.plan.ring
        if relu == "exact":
            spec = gc_spec("relu", ring, shift=act.shift, bits=act.value_bits)
            per_site = spec.info["table_bytes"] + spec.info["decode_bytes"] + spec.info["n_eval"] / 8
        else:
            spec = gc_spec("circa", ring, shift=act.shift, bits=act.gate_bits(), k=act.circa_k,
                           mode=act.circa_mode)
            # + the product's words as held (S0 − S1, S0; with a shift also S'0 − S'1, S'0), the
            # truncated share α and the choice bit c1
            words = 5 if spec.shift else 3
            per_site = spec.info["table_bytes"] + spec.info["decode_bytes"] + spec.info["n_eval"] / 8 + words * 8 + 1 / 8
        fixed = 32 + 4 * ring.elem_bytes           # seed, bundle id, the output layer's share
        assert 40 * per_site <= cb.stored_bytes - fixed <= 40 * per_site + 128, (relu, cb.stored_bytes)
        stored[relu] = cb.stored_bytes
    assert stored["exact"] > 1.5 * stored["circa"]


def local_truncation_plan(kind: int, ring_bits: int = 22, n: int = 400):
    """input (n,) at scale 4 → identity Linear (scale 8) → one activation of `kind`, whose
    output is rescaled to scale 4: identity sites truncate locally, gates inside their circuit.
    (Site 0 is an exact ReLU: a layer of identity sites only would truncate nothing.)"""
    b = PlanBuilder((n,), FixedPoint(4, ring_bits))
    t = b.linear(b.input, np.eye(n))
    kinds = np.full((n,), kind, np.int8)
    kinds[0] = RELU
    t = b.activation(t, kinds=kinds, circa_k=2)
    return b.output(t), b.weights


@pytest.mark.parametrize("kind", [CIRCA, IDENTITY, RELU], ids=["circa", "identity", "exact"])
def test_local_truncation_fails_by_the_analytic_law(kind):
    """In a 22-bit ring, values y near 2^17 at scale 8: a local truncation by 4 bits fails
    (by 2^(l−4) ulps) exactly when the client's uniform mask makes y + s wrap, with probability
    |y|/2^l (docs/two_party.md); exact and Circa sites truncate faithfully inside their garbled
    circuit (no failure, at most the rounding bit e)."""
    plan, weights = local_truncation_plan(kind)
    rng = np.random.default_rng(3)
    x = rng.uniform(256, 512, (1, 400))
    if kind == IDENTITY:
        x *= np.where(rng.random(400) < 0.5, 1, -1)
        x[0, 0] = abs(x[0, 0])                                  # the ReLU site
    # x enters at scale 4 (X = round(16x)); the identity weight makes v = 16·X at scale 8, and the
    # activation's output at scale 4 is X (exact sites: max(X, 0); Circa passes these x exactly).
    X = np.round(x * 16)
    y_true = X if kind == IDENTITY else np.maximum(X, 0)
    p = np.abs(16 * y_true) / 2.0 ** 22                     # the truncated value over 2^l
    p[0, 0] = 0 if kind == IDENTITY else p[0, 0]            # (site 0 is a gate)
    runs, failures, expected, var = 12, 0, 0.0, 0.0
    server, client = ServerSession(plan, weights), ClientSession(plan)

    def serve(chan):
        server.setup(chan)
        for _ in range(runs):
            server.online(chan, server.offline(chan, 1))

    def use(chan):
        client.setup(chan)
        return [client.online(chan, client.offline(chan, 1), x) for _ in range(runs)]
    _, ys = both(serve, use)
    for y in ys:
        err = np.abs(np.round(y * 16) - y_true)
        assert set(np.unique(err[err < 2]).tolist()) <= {0, 1}
        failures += int((err > 2).sum())
        expected += p.sum()
        var += (p * (1 - p)).sum()
    if kind != IDENTITY:
        assert failures == 0
    else:
        assert abs(failures - expected) <= 4 * np.sqrt(var), (failures, expected)
        assert failures > 0


# -- peers that send malformed messages ------------------------------------------------------

class Tamper:
    """Wraps a channel; the `at`-th array it sends is cut to half its first dimension."""

    def __init__(self, chan, at: int):
        self.chan, self.at, self.sent = chan, at, 0

    def send_array(self, arr, *a, **k):
        if self.sent == self.at:
            arr = np.ascontiguousarray(arr)[:max(0, arr.shape[0] // 2)] if arr.ndim else arr.reshape(1)[:0]
        self.sent += 1
        return self.chan.send_array(arr, *a, **k)

    def send_byte_parts(self, parts, *a, **k):
        """A parcel is one message too: cut like any other (as the array send_array would send)."""
        return self.send_array(np.frombuffer(b"".join(bytes(p) for p in parts), np.uint8), *a, **k)

    def __getattr__(self, name):
        return getattr(self.chan, name)


def count_sends(plan, weights, x) -> tuple[int, int]:
    ms, mc = CostMeter("server"), CostMeter("client")
    local.run(plan, weights, x, InProcessChannel.pair(ms, mc))
    return (sum(r.messages_sent for r in ms.report().per_layer),
            sum(r.messages_sent for r in mc.report().per_layer))


@pytest.mark.parametrize("relu", ["exact", "circa"])
def test_every_truncated_message_gives_the_receiver_a_protocol_error(relu):
    """Each message of setup, offline and online, cut short in turn: the party that receives it
    raises ProtocolError (never another exception, never a wrong answer)."""
    model = small_model(2)
    x = torch.randn(1, 6)
    sm = pi.compile(model, x, provider="two-party", calibration=x, relu=relu)
    n_server, n_client = count_sends(sm.plan, sm.weights, x.numpy())
    for sender, n in (("server", n_server), ("client", n_client)):
        for at in range(n):
            chan_s, chan_c = InProcessChannel.pair()
            chans = (Tamper(chan_s, at), chan_c) if sender == "server" else (chan_s, Tamper(chan_c, at))
            s, c = both(lambda ch: local_serve(sm, ch), lambda ch: local_use(sm, ch, x.numpy()), chans)
            receiver, other = (c, s) if sender == "server" else (s, c)
            assert isinstance(receiver, ProtocolError), (sender, at, repr(receiver))
            # the sender sees the channel close, or had finished (the message was its last)
            assert other is None or isinstance(other, (PeerDisconnected, ProtocolError, np.ndarray)), \
                (sender, at, repr(other))


def local_serve(sm, chan):
    server = ServerSession(sm.plan, sm.weights)
    server.setup(chan)
    server.online(chan, server.offline(chan, 1))


def local_use(sm, chan, x):
    client = ClientSession(sm.plan)
    client.setup(chan)
    return client.online(chan, client.offline(chan, 1), x)


def test_ring_elements_above_l_bits_are_a_protocol_error():
    model = small_model(3)
    x = torch.randn(1, 6)
    sm = pi.compile(model, x, provider="two-party", calibration=x)

    class HighBits(Tamper):
        def send_array(self, arr, *a, **k):
            if getattr(self, "online", False) and arr.ndim == 2:
                arr = arr.copy()
                arr[0, -1] |= 0x80
            return self.chan.send_array(arr, *a, **k)

    client = ClientSession(sm.plan)
    chan_s, chan_c = InProcessChannel.pair()
    tampered = HighBits(chan_c, -1)

    def use(ch):
        client.setup(ch)
        b = client.offline(ch, 1)
        tampered.online = True
        return client.online(ch, b, x.numpy())
    assert sm.plan.ring_bits % 8       # the top byte has room above bit l
    s, _c = both(lambda ch: local_serve(sm, ch), use, (chan_s, tampered))
    assert isinstance(s, ProtocolError) and "ring elements" in str(s)
