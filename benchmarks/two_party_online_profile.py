"""Where the two-party online time goes, per component and side, over the real TLS channel.

    python benchmarks/two_party_online_profile.py --policies exact,circa-m14 --repeats 7

The server runs in a child process, the client here, TLS 1.3 on loopback (the sessions of
protocols.two_party, as `pi serve`/`pi infer` run them). Each inference runs offline, then
online; only the online phase is timed. Components are exclusive times (a nested timer's
time is not counted again by its caller), summed over the plan's activation layers
(the layers `relu_online_s` counts), median over the repeats, in ms:

  wait      blocked in poll() for the peer (its compute and the loopback transfer)
  recv      frame reads and array decoding (TLS decryption, copies)
  send      frame writes (TLS encryption, syscalls)
  encode    server: the garbler's input labels (native)      evaluate: client, native GC evaluation
  ot        client: its own input labels and R_c1 from the IKNP receiver (native, Evaluator.prepare)
  draw      client: the re-sharing masks (AES)
  pack      Ring.pack/unpack, parcels, Circa's product step and its packing (native, one pass a side)
  other     the rest: numpy arithmetic, Python per-layer overhead

Prints a table per policy; --json writes the medians.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COMPONENTS = ("wait", "recv", "send", "encode", "evaluate", "ot", "draw", "pack", "other")


class Clock:
    """Exclusive timers keyed by (layer kind, component); only while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.kind = "-"
        self.acc: dict[tuple[str, str], float] = defaultdict(float)
        self.stack: list[list[float]] = []

    def _timed(self, fn, component: str, layer_kind: str | None = None):
        clock = self

        def timed(*a, **kw):
            if not clock.on:
                return fn(*a, **kw)
            if layer_kind is not None:
                clock.kind = type(a[0]).__name__
            clock.stack.append([0.0, 0.0])
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                child = clock.stack.pop()
                clock.acc[(clock.kind, component)] += dt - child[0]
                clock.acc[(clock.kind, component + "/cpu")] += dc - child[1]
                if clock.stack:
                    clock.stack[-1][0] += dt
                    clock.stack[-1][1] += dc
                if layer_kind is not None:
                    clock.acc[(clock.kind, "total")] += dt
                    clock.acc[(clock.kind, "total/cpu")] += dc
                    clock.kind = "-"
        return timed

    def wrap(self, owner, name: str, component: str) -> None:
        setattr(owner, name, self._timed(getattr(owner, name), component))

    def wrap_layer(self, cls, name: str) -> None:
        setattr(cls, name, self._timed(getattr(cls, name), "other", layer_kind="layer"))


def instrument(clock: Clock, side: str) -> None:
    import pi_native
    from protocols import garbled
    from protocols.fixed_point import Ring
    from protocols.material import SeedStream
    from protocols.transport import channel
    from protocols.two_party import gates, layers
    clock.wrap(channel.TlsChannel, "_wait", "wait")
    clock.wrap(channel.Channel, "_recv_raw", "recv")
    clock.wrap(channel, "decode_array", "recv")
    clock.wrap(channel.TlsChannel, "_write", "send")
    clock.wrap(channel, "encode_array", "send")
    for name in ("pack", "unpack"):
        clock.wrap(Ring, name, "pack")
    for name in ("send_parcel", "recv_parcel"):
        clock.wrap(gates, name, "pack")
    for name in ("circa_client_reply", "circa_server_send", "circa_server_share"):
        clock.wrap(pi_native, name, "pack")
    clock.wrap(SeedStream, "draw", "draw")
    clock.wrap(garbled.Garbler, "label_part", "encode")
    clock.wrap(garbled.Evaluator, "evaluate_part", "evaluate")
    clock.wrap(garbled.Evaluator, "outputs", "evaluate")
    clock.wrap(garbled.Evaluator, "prepare", "ot")
    for cls in (layers.ActivationLayer, layers.TruncateLayer, layers.MaxPoolLayer, layers.InputLayer,
                layers.OutputLayer, layers.PrivateLinearLayer, layers.Layer, layers.PassLayer):
        meth = "server_online" if side == "server" else "client_online"
        if meth in cls.__dict__:
            clock.wrap_layer(cls, meth)


def _cprofile(path: str | None):
    """A cProfile.Profile for --cprofile (function-level view of one side), or None."""
    if not path:
        return None
    import cProfile
    return cProfile.Profile()


def _dump(prof, path: str | None, side: str) -> None:
    if prof is not None:
        import pstats
        with open(f"{path}.{side}.txt", "w") as f:
            pstats.Stats(prof, stream=f).sort_stats("tottime").print_stats(30)


def _server(model_path: str, cert: str, key: str, repeats: int, batch: int, conn, cprof: str | None = None,
            max_parts: int | None = None) -> None:
    import pi
    import pi_native
    _set_max_parts(max_parts)
    from protocols.transport.certs import TlsConfig
    from protocols.transport.channel import Listener
    from protocols.two_party.session import ServerSession
    pi_native.set_num_threads(1)
    secure = pi.load(model_path)
    clock = Clock()
    instrument(clock, "server")
    lis = Listener("127.0.0.1", 0, TlsConfig(cert=Path(cert), key=Path(key)))
    conn.send(lis.port)
    chan = lis.accept(timeout=60)
    s = ServerSession(secure.plan, secure.weights)
    s.setup(chan)
    prof = _cprofile(cprof)
    runs = []
    for _ in range(repeats + 1):
        b = s.offline(chan, batch)
        clock.acc.clear()
        clock.on = True
        if prof is not None:
            prof.enable()
        s.online(chan, b)
        if prof is not None:
            prof.disable()
        clock.on = False
        runs.append(dict(clock.acc))
    _dump(prof, cprof, "server")
    conn.send(runs[1:])
    chan.close()
    lis.close()


def _set_max_parts(max_parts: int | None) -> None:
    """--max-label-parts: the most messages a gate group's labels go in (1: no pipelining)."""
    if max_parts is not None:
        from protocols.two_party import gates
        gates.MAX_PARTS = max_parts


def profile(secure, images: np.ndarray, repeats: int, batch: int, work: Path, cprof: str | None = None,
            max_parts: int | None = None) -> dict:
    import pi_native
    from protocols.transport.certs import TlsConfig, write_self_signed
    from protocols.transport.channel import connect
    from protocols.two_party.session import ClientSession
    pi_native.set_num_threads(1)
    cert = write_self_signed(work / "certs", "server", overwrite=True)
    model = secure.save(work / "model.npz")
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=_server, args=(str(model), str(cert.cert), str(cert.key),
                                                                 repeats, batch, child, cprof, max_parts),
                                                           daemon=True)
    proc.start()
    try:
        port = parent.recv()
        chan = connect("127.0.0.1", port, TlsConfig(peer_fingerprint=cert.fingerprint))
        c = ClientSession(secure.plan)
        c.setup(chan)
        runs, online = [], []
        prof = _cprofile(cprof)
        for i in range(repeats + 1):
            b = c.offline(chan, batch)
            CLOCK.acc.clear()
            CLOCK.on = True
            t0 = time.perf_counter()
            if prof is not None:
                prof.enable()
            c.online(chan, b, images[i % (len(images) - batch + 1):][:batch])
            if prof is not None:
                prof.disable()
            online.append(time.perf_counter() - t0)
            CLOCK.on = False
            runs.append(dict(CLOCK.acc))
        server_runs = parent.recv()
        _dump(prof, cprof, "client")
        chan.close()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    return {"online_ms": 1e3 * statistics.median(online[1:]),
            "client": _medians(runs[1:]), "server": _medians(server_runs)}


def _medians(runs: list[dict]) -> dict:
    """Activation layers only (the `relu_online_s` layers), median over repeats, ms."""
    out = {}
    for comp in (*COMPONENTS, "total"):
        for key in (comp, comp + "/cpu"):
            out[key] = 1e3 * statistics.median(r.get(("ActivationLayer", key), 0.0) for r in runs)
    out["all_layers_total"] = 1e3 * statistics.median(
        sum(v for (k, c), v in r.items() if c == "total") for r in runs)
    return out


CLOCK = Clock()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policies", default="exact,circa-m14")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--cprofile", default=None, help="also write cProfile tables to PREFIX.<policy>.{server,client}.txt")
    p.add_argument("--max-label-parts", type=int, default=None,
                   help="the most messages a gate group's labels go in (default: protocols.two_party.gates.MAX_PARTS; "
                        "1: one message, no pipelining)")
    args = p.parse_args(argv)
    _set_max_parts(args.max_label_parts)
    import os

    import torch

    from pi.bench.model import circa_by_bounds, compile_policy, load_calibration, load_test_images, load_workload
    torch.set_num_threads(1)
    instrument(CLOCK, "client")
    model, _ = load_workload("default")
    images, _, _ = load_test_images("fashion-mnist", 16)
    calibration, _ = load_calibration("fashion-mnist")
    example = images[:1]
    out = {"command": " ".join(["python", "benchmarks/two_party_online_profile.py", *(argv or sys.argv[1:])]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_1min_at_start": os.getloadavg()[0],
           "unit": "ms per inference, activation layers only, median over repeats", "policies": {}}
    for pol in [q for q in args.policies.split(",") if q]:
        if pol.startswith("circa-m"):
            pobj = circa_by_bounds(model, example, int(pol[len("circa-m"):]), "calibrated", calibration, "two-party")
            secure = compile_policy(model, example, pol, None, pobj, "calibrated", calibration, "two-party")
        else:
            secure = compile_policy(model, example, pol, None, None, "calibrated", calibration, "two-party")
        with tempfile.TemporaryDirectory(prefix="pi-prof-") as d:
            res = profile(secure, images.numpy().astype(np.float64), args.repeats, args.batch, Path(d),
                          f"{args.cprofile}.{pol}" if args.cprofile else None, args.max_label_parts)
        out["policies"][pol] = res
        print(f"\n{pol}: online {res['online_ms']:.1f} ms (client wall); activation layers:")
        print(f"  {'component':<10}{'server':>9}{'(cpu)':>9}{'client':>9}{'(cpu)':>9}")
        for comp in (*COMPONENTS, "total"):
            sv, cl = res["server"], res["client"]
            print(f"  {comp:<10}{sv[comp]:9.2f}{sv[comp + '/cpu']:9.2f}{cl[comp]:9.2f}{cl[comp + '/cpu']:9.2f}")
    out["load_1min_at_end"] = os.getloadavg()[0]
    if len(out["policies"]) == 2:
        a, b = (out["policies"][k] for k in out["policies"])
        print(f"\nratio of activation-layer totals, server side: {a['server']['total'] / b['server']['total']:.2f}x, "
              f"client side: {a['client']['total'] / b['client']['total']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
