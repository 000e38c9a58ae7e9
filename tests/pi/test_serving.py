"""Deployment over real TLS sockets on loopback: a dealer service and an inference server in
threads, clients that behave and clients that do not. The server must answer every bad peer
with a clear error and keep serving the others.

Over 500 lines on purpose: every test runs for both providers against one fixture set."""
import json
import struct
import threading
import time
from multiprocessing.pool import ThreadPool

import numpy as np
import pytest
import torch
from torch import nn

import pi
from pi.serving import SESSION_VERSION, Endpoint, InferenceServer, connect
from protocols.dealer_service import DealerService, dealer_tls, fetch_material
from protocols.limits import Limits
from protocols.material import confirm_bundle
from protocols.transport.certs import TlsConfig, write_self_signed
from protocols.transport.channel import Listener
from protocols.transport.channel import connect as tls_connect
from protocols.transport.errors import HandshakeError, RemoteError, TransportError
from protocols.transport.frame import MessageType
from raw_tls import raw_tls, read_all

RELU = "exact"
LIMITS = Limits(max_batch=16)


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 4)).eval()


@pytest.fixture(scope="module", params=[64, 40], ids=["ring64", "ring40"])
def deployment(tmp_path_factory, request):
    d = tmp_path_factory.mktemp("deploy")
    server_cert = write_self_signed(d, "server")
    dealer_cert = write_self_signed(d, "dealer")
    client_cert = write_self_signed(d, "client")
    dealer_listener = Listener("127.0.0.1", 0, dealer_tls(dealer_cert.cert, dealer_cert.key, server_cert.cert,
                                                          client_cert.cert))
    dealer = DealerService(dealer_listener, [server_cert.fingerprint], limits=LIMITS)
    threading.Thread(target=dealer.serve_forever, daemon=True).start()
    model = small_model()
    secure = pi.compile(model, torch.zeros(1, 1, 4, 4), relu=RELU, ring_bits=request.param)
    # The server's and the client's view of the dealer: pinned, with their own certificate.
    dealer_ep = Endpoint("127.0.0.1", dealer_listener.port,
                         TlsConfig(client_cert.cert, client_cert.key, peer_fingerprint=dealer_cert.fingerprint))
    server_dealer_ep = Endpoint("127.0.0.1", dealer_listener.port,
                                TlsConfig(server_cert.cert, server_cert.key, peer_fingerprint=dealer_cert.fingerprint))
    server_listener = Listener("127.0.0.1", 0, TlsConfig(cert=server_cert.cert, key=server_cert.key))
    server = InferenceServer(secure, server_listener, server_dealer_ep, limits=LIMITS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server_ep = Endpoint("127.0.0.1", server_listener.port, TlsConfig(peer_fingerprint=server_cert.fingerprint))
    yield {"server": server, "dealer": dealer, "server_ep": server_ep, "dealer_ep": dealer_ep, "model": model,
           "secure": secure, "dealer_cert": dealer_cert, "server_cert": server_cert, "client_cert": client_cert,
           "server_dealer_ep": server_dealer_ep}
    server.stop()
    dealer.stop()


def plain(dep, x):
    m = dep["model"]
    seq = m if RELU == "exact" else nn.Sequential(*[l for l in m if not isinstance(l, nn.ReLU)])
    return seq(x).detach().double().numpy()


def healthy_inference(dep):
    x = torch.randn(2, 1, 4, 4)
    with connect(dep["server_ep"], dep["dealer_ep"]) as client:
        y = client.run(x)
    np.testing.assert_allclose(y.numpy(), plain(dep, x), atol=2**-7)
    return client


def test_inference_over_tls_matches_plaintext_and_sessions_continue(deployment):
    x = torch.randn(3, 1, 4, 4)
    with connect(deployment["server_ep"], deployment["dealer_ep"]) as client:
        for _ in range(2):                    # two inferences in one session
            y = client.run(x)
            np.testing.assert_allclose(y.numpy(), plain(deployment, x), atol=2**-7)
        assert client.last_cost.online_bytes > 0 and client.last_cost.rounds > 0


def test_garbage_bytes_get_an_error_and_the_server_keeps_serving(deployment):
    with raw_tls(deployment["server_ep"].port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
        reply = read_all(s)
    assert reply[:4] == b"\x89PIF" and b"magic" in reply         # an ERROR frame naming the problem
    healthy_inference(deployment)


def test_oversized_frame_is_refused(deployment):
    with raw_tls(deployment["server_ep"].port) as s:
        header = struct.pack("!4sBBHQ", b"\x89PIF", 1, int(MessageType.HELLO), 0, 1 << 40)
        s.sendall(header)
        reply = read_all(s)
    assert b"exceeds max_frame_size" in reply
    healthy_inference(deployment)


def test_wrong_protocol_version_is_named(deployment):
    ep = deployment["server_ep"]
    with tls_connect(ep.host, ep.port, ep.tls) as chan:
        chan.send(MessageType.HELLO, json.dumps({"version": 99}).encode())
        with pytest.raises(RemoteError, match="version 99"):
            chan.recv(MessageType.SPEC)
    healthy_inference(deployment)


def test_wrong_input_shape_and_dtype_are_refused(deployment):
    ep = deployment["server_ep"]
    with connect(ep, deployment["dealer_ep"]) as client:
        with pytest.raises(ValueError, match="takes"):
            client.run(torch.zeros(2, 1, 5, 5))        # checked before anything is sent
    # A client that lies on the wire: asks for batch 1, sends a float array as its input.
    with tls_connect(ep.host, ep.port, ep.tls) as chan:
        chan.send(MessageType.HELLO, json.dumps({"version": SESSION_VERSION}).encode())
        spec = json.loads(chan.recv(MessageType.SPEC))
        chan.send(MessageType.DATA, json.dumps({"op": "offline", "batch": 1}).encode())
        chan.recv(MessageType.ACK)
        plan = pi.SecureModel.from_public_spec(spec["spec"]).plan
        material, _ = fetch_material(deployment["dealer_ep"].host, deployment["dealer_ep"].port,
                                     deployment["dealer_ep"].tls, "client", f"{spec['session']}-0", plan, 1)
        confirm_bundle(chan, material)                  # the halves match: the offline phase starts
        # One bad array, then the server's answer must be an ERROR frame that names the problem
        # (a timeout or a dropped connection would not match).
        sent = False
        with pytest.raises(RemoteError, match=r"expected dtype uint64, received float32 \(shape \(3, 3\)\)"):
            while True:                                 # skip the server's offline messages
                frame = chan.recv_frame(timeout=10)
                if frame.msg_type == MessageType.ARRAY and not sent:
                    chan.send_array(np.zeros((3, 3), np.float32))
                    sent = True
    healthy_inference(deployment)


def test_bad_batch_request_is_refused(deployment):
    ep = deployment["server_ep"]
    with tls_connect(ep.host, ep.port, ep.tls) as chan:
        chan.send(MessageType.HELLO, json.dumps({"version": SESSION_VERSION}).encode())
        chan.recv(MessageType.SPEC)
        chan.send(MessageType.DATA, json.dumps({"op": "offline", "batch": 10_000}).encode())
        with pytest.raises(RemoteError, match="batch"):
            chan.recv_frame(timeout=10)


def test_client_disconnecting_mid_inference_does_not_hurt_others(deployment):
    ep = deployment["server_ep"]
    errors_before = deployment["server"].stats["errors"]
    chan = tls_connect(ep.host, ep.port, ep.tls)
    chan.send(MessageType.HELLO, json.dumps({"version": SESSION_VERSION}).encode())
    chan.recv(MessageType.SPEC)
    chan.send(MessageType.DATA, json.dumps({"op": "offline", "batch": 1}).encode())
    chan._close_transport()                             # vanish without BYE
    deadline = time.monotonic() + 20
    while deployment["server"].stats["errors"] == errors_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert deployment["server"].stats["errors"] > errors_before
    healthy_inference(deployment)


def test_dealer_never_hands_out_material_twice(deployment):
    ep = deployment["dealer_ep"]
    plan = deployment["secure"].plan
    fetch_material(ep.host, ep.port, ep.tls, "client", "session-reuse-1", plan, 1)
    with pytest.raises(RemoteError, match="already delivered"):
        fetch_material(ep.host, ep.port, ep.tls, "client", "session-reuse-1", plan, 1)
    with pytest.raises(RemoteError, match="batch must be"):
        srv = deployment["server_dealer_ep"]
        fetch_material(srv.host, srv.port, srv.tls, "server", "session-reuse-2", plan, 0)


def test_the_dealer_binds_the_role_to_the_certificate(deployment):
    """A client that knows a session id cannot obtain the server's half; a peer without an
    enrolled certificate gets nothing at all."""
    ep, srv = deployment["dealer_ep"], deployment["server_dealer_ep"]
    plan = deployment["secure"].plan
    with pytest.raises(RemoteError, match="enrolled as a client; it cannot fetch the server's material"):
        fetch_material(ep.host, ep.port, ep.tls, "server", "session-role-1", plan, 1)
    anonymous = TlsConfig(peer_fingerprint=deployment["dealer_cert"].fingerprint)
    with pytest.raises(TransportError, match="certificate"):
        fetch_material(ep.host, ep.port, anonymous, "client", "session-role-1", plan, 1)
    material, _ = fetch_material(srv.host, srv.port, srv.tls, "server", "session-role-1", plan, 1)
    assert material.party == "server"


def test_dealer_down_gives_a_clear_error(deployment, tmp_path):
    port = Listener("127.0.0.1", 0, TlsConfig(cert=deployment["dealer_cert"].cert,
                                               key=deployment["dealer_cert"].key))
    dead = Endpoint("127.0.0.1", port.port, deployment["dealer_ep"].tls)
    port.close()                                        # nothing listens there any more
    with connect(deployment["server_ep"], dead) as client:
        with pytest.raises(HandshakeError, match="cannot connect"):
            client.run(torch.zeros(1, 1, 4, 4))
    healthy_inference(deployment)


class VanishingDealer:
    """A dealer that accepts a request and hangs up without answering (it crashed or lost
    its link): every party that asks it for material must get a clear error."""

    def __init__(self, cert):
        self.listener = Listener("127.0.0.1", 0, TlsConfig(cert=cert.cert, key=cert.key))
        self.requests = 0
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                chan = self.listener.accept(timeout=0.2)
            except (TimeoutError, TransportError, OSError):   # OSError: closed by stop()
                continue
            try:
                chan.recv(MessageType.HELLO, timeout=10)
                self.requests += 1
            finally:
                chan._close_transport()                 # no answer, no BYE

    def endpoint(self, tls):
        return Endpoint("127.0.0.1", self.listener.port, tls)

    def stop(self):
        self._stop.set()
        self.listener.close()


def test_dealer_disconnecting_before_the_client_gets_its_material(deployment):
    dealer = VanishingDealer(deployment["dealer_cert"])
    try:
        errors_before = deployment["server"].stats["errors"]
        with connect(deployment["server_ep"], dealer.endpoint(deployment["dealer_ep"].tls)) as client:
            with pytest.raises(TransportError, match="dealer"):
                client.run(torch.zeros(1, 1, 4, 4))
            with pytest.raises(TransportError, match="session is closed"):
                client.run(torch.zeros(1, 1, 4, 4))      # the session cannot be resumed half-way
        assert dealer.requests == 1
        deadline = time.monotonic() + 20
        while deployment["server"].stats["errors"] == errors_before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert deployment["server"].stats["errors"] > errors_before   # the server aborted that inference
    finally:
        dealer.stop()
    healthy_inference(deployment)


def test_dealer_disconnecting_before_the_server_gets_its_material(deployment):
    dealer = VanishingDealer(deployment["dealer_cert"])
    d = deployment
    listener = Listener("127.0.0.1", 0, TlsConfig(cert=d["server_cert"].cert, key=d["server_cert"].key))
    server = InferenceServer(d["secure"], listener, dealer.endpoint(d["dealer_ep"].tls))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ep = Endpoint("127.0.0.1", listener.port, d["server_ep"].tls)
    try:
        with connect(ep, d["dealer_ep"]) as client:
            with pytest.raises(RuntimeError, match="dealer"):
                client.run(torch.zeros(1, 1, 4, 4))
        assert server.stats["errors"] == 1
        # The client's half, delivered by the real dealer, is never handed out again.
        session = f"{client.session}-0"
        with pytest.raises(RemoteError, match="already delivered"):
            fetch_material(d["dealer_ep"].host, d["dealer_ep"].port, d["dealer_ep"].tls, "client", session,
                           d["secure"].plan, 1)
    finally:
        server.stop()
        dealer.stop()
    healthy_inference(deployment)


def test_pi_serve_and_pi_connect_are_the_deployment_api(deployment, tmp_path):
    d = deployment
    bundle = d["secure"].save(tmp_path / "model.npz")
    server = pi.serve(pi.load(bundle), "127.0.0.1", 0, TlsConfig(cert=d["server_cert"].cert, key=d["server_cert"].key),
                      d["server_dealer_ep"], block=False)
    try:
        ep = pi.Endpoint("127.0.0.1", server.listener.port, d["server_ep"].tls)
        x = torch.randn(3, 1, 4, 4)
        with pi.connect(ep, d["dealer_ep"]) as remote:
            y = remote.run(x)
            assert remote.last_cost.online_bytes > 0 and remote.last_cost.rounds >= 2
        np.testing.assert_allclose(y.numpy(), plain(d, x), atol=2**-7)
    finally:
        server.stop()


def test_many_clients_at_once_each_in_its_own_session(deployment):
    """Four clients in parallel (and one sending garbage meanwhile): every session gets its own
    material and correct results."""
    results, errors = {}, []

    def client(i):
        try:
            torch.manual_seed(100 + i)
            x = torch.randn(2, 1, 4, 4)
            with connect(deployment["server_ep"], deployment["dealer_ep"]) as c:
                results[i] = [(c.run(x).numpy(), plain(deployment, x)) for _ in range(2)] + [c.session]
        except Exception as exc:  # noqa: BLE001 -- every client's failure is reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    with raw_tls(deployment["server_ep"].port) as s:
        s.sendall(b"\x00" * 64)
        read_all(s)
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len({r[-1] for r in results.values()}) == 4            # four distinct sessions
    for runs in results.values():
        for y, ref in runs[:-1]:
            np.testing.assert_allclose(y, ref, atol=2**-7)


# ---------------------------------------------------------------- start-up checks, bundles, budgets

def test_a_bundle_that_does_not_fit_its_plan_is_refused_with_the_layer_named(deployment, tmp_path):
    from pi.serving import BundleError, validate_bundle
    from protocols.plan import ServerWeights
    good = pi.load(deployment["secure"].save(tmp_path / "good.npz"))
    validate_bundle(good)
    name = next(iter(good.weights.weights))
    w, b = good.weights.weights, good.weights.biases
    cases = {
        "dtype int64, the plan needs uint64": ServerWeights({**w, name: w[name].astype(np.int64)}, b),
        "no bias for layer": ServerWeights(w, {k: v for k, v in b.items() if k != name}),
        "its plan does not have": ServerWeights({**w, "ghost": w[name]}, b),
        "weights digest does not match": ServerWeights({**w, name: w[name] + np.uint64(1)}, b),
    }
    for message, weights in cases.items():
        bad = pi.load(tmp_path / "good.npz")
        bad.weights = weights
        with pytest.raises(BundleError, match=message):
            validate_bundle(bad)
        with pytest.raises(BundleError, match=message):         # the server never starts on it
            InferenceServer(bad, None, deployment["server_dealer_ep"])


def test_halves_of_different_bundles_are_refused_before_the_offline_phase(deployment):
    from protocols.engine import deal
    from protocols.material import MaterialMismatch, confirm_bundle
    from protocols.transport.channel import InProcessChannel
    plan = deployment["secure"].plan
    client, _ = deal(plan, 1)
    _, server = deal(plan, 1)                           # a dealer that restarted in between
    a, b = InProcessChannel.pair(timeout=5)
    with ThreadPool(1) as pool:
        fut = pool.apply_async(confirm_bundle, (b, server))
        with pytest.raises(MaterialMismatch, match="different preprocessing bundles"):
            confirm_bundle(a, client)
        with pytest.raises(MaterialMismatch):
            fut.get(5)
    c, s = deal(plan, 1)                                # halves of one bundle pass
    a, b = InProcessChannel.pair(timeout=5)
    with ThreadPool(1) as pool:
        fut = pool.apply_async(confirm_bundle, (b, s))
        confirm_bundle(a, c)
        fut.get(5)
    assert c.bundle_id == s.bundle_id and c.bundle_digest == s.bundle_digest


def test_the_memory_budget_waits_then_refuses():
    from protocols.limits import BudgetExhausted, LimitError, MemoryBudget
    budget = MemoryBudget(100, wait_s=0.2)
    held = budget.reserve(80)
    with pytest.raises(BudgetExhausted, match="busy: .* holds .* after waiting 0.2 s"):
        budget.reserve(30)
    with pytest.raises(LimitError, match="more than this process's whole budget"):
        budget.reserve(101)
    threading.Timer(0.05, held.release).start()        # a release lets a waiting request in
    with budget.reserve(30):
        assert budget.used == 30
    assert budget.used == 0 and budget.peak == 80


def test_public_disclosure_names_what_the_spec_reveals():
    from pi.serving import public_disclosure
    model = small_model()
    plain = pi.compile(model, torch.zeros(1, 1, 4, 4), relu="exact")
    lines = public_disclosure(plain.plan)
    assert any("all logits" in line for line in lines) and not any("calibration" in line for line in lines)
    calibrated = pi.compile(model, torch.zeros(1, 1, 4, 4), relu="exact", calibration=torch.randn(8, 1, 4, 4),
                            output="label")
    lines = public_disclosure(calibrated.plan)
    assert any(line.startswith("calibration:") and "without --calibration" in line for line in lines)
    assert any("the predicted label only" in line for line in lines)


def test_the_dealer_builds_material_outside_its_lock(deployment, monkeypatch):
    """A slow build (a large bundle) does not hold up another session's request."""
    import protocols.dealer_service as ds
    slow_started = threading.Event()
    real_deal = ds.deal

    def deal(plan, batch, **kw):
        if batch == 3:
            slow_started.set()
            time.sleep(3.0)
        return real_deal(plan, batch, **kw)

    monkeypatch.setattr(ds, "deal", deal)
    ep, plan = deployment["dealer_ep"], deployment["secure"].plan
    with ThreadPool(1) as pool:
        slow = pool.apply_async(fetch_material, (ep.host, ep.port, ep.tls, "client", "session-slow-1", plan, 3))
        assert slow_started.wait(5)
        t0 = time.monotonic()
        fetch_material(ep.host, ep.port, ep.tls, "client", "session-fast-1", plan, 1)
        assert time.monotonic() - t0 < 2.0, "a slow build blocked another session"
        slow.get(10)


# ---------------------------------------------------------------- both providers: preprocessing, robustness

def _two_party_available() -> bool:
    from protocols.providers import PROVIDERS
    return "two-party" in PROVIDERS


@pytest.fixture(scope="module", params=["dealer", "two-party"])
def served(request, deployment, tmp_path_factory):
    """A server of each provider (ring 40 and 64 for the dealer through `deployment`; the
    two-party one at ring 40, no dealer anywhere): dict with server, server_ep, dealer_ep
    (None for two-party), provider, model."""
    if request.param == "dealer":
        yield {**deployment, "provider": "dealer"}
        return
    if not _two_party_available():
        pytest.skip("the two-party provider is not in this build")
    d = tmp_path_factory.mktemp("two-party")
    cert = write_self_signed(d, "server")
    model = small_model()
    secure = pi.compile(model, torch.zeros(1, 1, 4, 4), relu=RELU, ring_bits=40, provider="two-party")
    listener = Listener("127.0.0.1", 0, TlsConfig(cert=cert.cert, key=cert.key))
    server = InferenceServer(secure, listener, None, limits=LIMITS, max_stored=4)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"server": server, "server_ep": Endpoint("127.0.0.1", listener.port, TlsConfig(peer_fingerprint=cert.fingerprint)),
           "dealer_ep": None, "provider": "two-party", "model": model, "secure": secure}
    server.stop()


def _hello(chan, **extra):
    chan.send(MessageType.HELLO, json.dumps({"version": SESSION_VERSION, **extra}).encode())
    return json.loads(chan.recv(MessageType.SPEC))


def _wait_errors(server, before, seconds=20):
    deadline = time.monotonic() + seconds
    while server.stats["errors"] == before and time.monotonic() < deadline:
        time.sleep(0.1)
    return server.stats["errors"] > before


def test_preprocessed_bundles_are_used_once_each_in_order(served):
    xs = [torch.randn(2, 1, 4, 4) for _ in range(4)]
    with connect(served["server_ep"], served["dealer_ep"], provider=served["provider"]) as client:
        assert client.provider == served["provider"]
        made = client.preprocess(3, batch=2)
        assert (made.bundles, made.batch, client.stored) == (3, 2, 3)
        assert made.stored_bytes > 0 and made.offline_bytes > 0
        for i, x in enumerate(xs):
            y = client.run(x)
            np.testing.assert_allclose(y.numpy(), plain(served, x), atol=2**-7)
            cost = client.last_cost
            # three inferences on stored bundles (online work only), the fourth makes its own
            assert cost.preprocessed == (i < 3) and client.stored == max(0, 2 - i)
            assert cost.provider == served["provider"] and cost.stored_bytes > 0 and cost.online_bytes > 0
            assert cost.offline_bytes > 0 and cost.rounds > 0
        with pytest.raises(ValueError, match="batches of 2"):
            client.preprocess(1, batch=2)
            client.run(torch.randn(3, 1, 4, 4))        # bundles are for batch 2: refused before sending
        client.run(torch.randn(2, 1, 4, 4))            # the session goes on
    if served["provider"] == "dealer":                  # every bundle came from the dealer exactly once
        ep = served["dealer_ep"]
        for n in range(3):
            with pytest.raises(RemoteError, match="already delivered"):
                fetch_material(ep.host, ep.port, ep.tls, "client", f"{client.session}-{n}", served["secure"].plan, 2)


def test_the_server_holds_at_most_max_stored_bundles_per_connection(served):
    with connect(served["server_ep"], served["dealer_ep"]) as client:
        limit = client.max_stored
        with pytest.raises(ValueError, match=f"at most {limit} preprocessed bundles"):
            client.preprocess(limit + 1)                 # the client knows the limit: nothing is spent
        client.max_stored = None                         # a client that ignores it: the server refuses
        client.preprocess(limit)
        with pytest.raises(RemoteError, match="max_stored"):
            client.preprocess(1)
    healthy(served)


def test_two_party_bundles_hold_their_bytes_in_the_memory_budget(tmp_path):
    """Besides max_stored, a two-party server counts each stored bundle's bytes (output and HE
    masks; it drops the garbled tables once sent) in limits.memory_budget_bytes until it is used: over the budget a request is
    refused in one line before any work, and using a bundle gives its bytes back."""
    if not _two_party_available():
        pytest.skip("the two-party provider is not in this build")
    cert = write_self_signed(tmp_path, "server")
    secure = pi.compile(small_model(), torch.zeros(1, 1, 4, 4), relu=RELU, ring_bits=40, provider="two-party")
    listener = Listener("127.0.0.1", 0, TlsConfig(cert=cert.cert, key=cert.key))
    server = InferenceServer(secure, listener, None, limits=Limits(max_batch=16, budget_wait_s=0.2), max_stored=8)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ep = Endpoint("127.0.0.1", listener.port, TlsConfig(peer_fingerprint=cert.fingerprint))
    try:
        with connect(ep, None) as client:
            client.preprocess(1, batch=2)
            held = server.budget.used
            assert held > 1_000, held                        # the output masks of 96 ReLUs and the HE masks at least
            server.budget.limit = held * 5 // 2              # room for two bundles, not three
            client.preprocess(1, batch=2)
            assert server.budget.used == 2 * held
            with pytest.raises(RemoteError, match=r"busy: a bundle of session \w+ needs 0\.\d MB .*memory_budget_bytes"):
                client.preprocess(1, batch=2)

        def settles(used):          # the server releases after its last message: wait for it
            deadline = time.monotonic() + 10
            while server.budget.used != used and time.monotonic() < deadline:
                time.sleep(0.05)
            return server.budget.used == used
        assert settles(0)                                    # the session's bundles died with it
        with connect(ep, None) as client:
            client.preprocess(2, batch=2)
            client.run(torch.randn(2, 1, 4, 4))              # a used bundle gives its bytes back
            assert settles(held)
            client.preprocess(1, batch=2)
    finally:
        server.stop()


def test_an_online_request_without_a_bundle_is_refused(served):
    ep = served["server_ep"]
    if served["provider"] == "two-party":
        pytest.skip("a two-party client must first run the setup (HE keys, base OTs): see the garbage test")
    with tls_connect(ep.host, ep.port, ep.tls) as chan:
        _hello(chan)
        chan.send(MessageType.DATA, json.dumps({"op": "online", "batch": 1}).encode())
        with pytest.raises(RemoteError, match="no preprocessed bundle"):
            chan.recv_frame(timeout=10)
    healthy(served)


def test_a_provider_mismatch_is_named_in_one_line(served):
    other = {"dealer": "two-party", "two-party": "dealer"}[served["provider"]]
    ep = served["server_ep"]
    with tls_connect(ep.host, ep.port, ep.tls) as chan:
        with pytest.raises(RemoteError, match=f"runs the {served['provider']} provider.*--provider {served['provider']}"):
            _hello(chan, provider=other)
    with tls_connect(ep.host, ep.port, ep.tls) as chan:
        with pytest.raises(RemoteError, match="version 3 is not supported"):
            _hello(chan, version=3)
    healthy(served)


def test_garbage_after_the_hello_gets_an_error_and_the_server_keeps_serving(served):
    before = served["server"].stats["errors"]
    ep = served["server_ep"]
    with tls_connect(ep.host, ep.port, ep.tls) as chan:
        _hello(chan)
        chan.send_array(np.arange(7, dtype=np.float32))      # neither a setup message nor a request
        with pytest.raises((RemoteError, TransportError)):
            while True:
                chan.recv_frame(timeout=10)
    assert _wait_errors(served["server"], before)
    healthy(served)


@pytest.mark.parametrize("phase", ["offline", "online"])
def test_a_client_vanishing_mid_phase_does_not_hurt_others(served, phase, monkeypatch):
    """The client hangs up inside the offline phase (after its first offline message) or
    inside the online phase (after its first online message): the server logs an error,
    discards that connection's material and serves the next client."""
    before = served["server"].stats["errors"]
    client = connect(served["server_ep"], served["dealer_ep"])
    if phase == "online":
        client.preprocess(1)
    chan = client.chan
    real_send = chan.send_array
    sent = {"n": 0}

    def send_then_vanish(arr, *a, **k):
        out = real_send(arr, *a, **k)
        sent["n"] += 1
        if sent["n"] == 1:
            chan._close_transport()
            raise ConnectionAbortedError(f"vanished in the {phase} phase")
        return out

    monkeypatch.setattr(chan, "send_array", send_then_vanish)
    with pytest.raises(ConnectionAbortedError, match=f"vanished in the {phase} phase"):
        client.run(torch.zeros(1, 1, 4, 4))
    assert sent["n"] == 1
    assert _wait_errors(served["server"], before)
    healthy(served)


def healthy(dep):
    x = torch.randn(2, 1, 4, 4)
    with connect(dep["server_ep"], dep["dealer_ep"]) as client:
        y = client.run(x)
    np.testing.assert_allclose(y.numpy(), plain(dep, x), atol=2**-7)
