"""Our system as deployed, for the benchmarks. `Deployment` (the dealer provider): the dealer
(protocols.dealer_service.DealerService) and the server run as separate OS processes, the
client in this one; every link is TLS 1.3 over loopback with pinned self-signed certificates;
the engine is the one `pi serve` runs. `TwoPartyDeployment`: `pi serve --provider two-party`'s
server in its own process and `pi.connect` here, nothing else.

The only difference from `pi serve` is a bench session protocol: after each inference the
server sends its own cost report to the client, so that both parties' meters are merged
(bytes add, rounds and per-row seconds take the maximum), as `SecureModel.run` does.
`pi bench model` and `pi bench relu` both measure through `Deployment`.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
import pi_native
import torch

import pi
from protocols import engine
from protocols.cost import CostMeter, CostReport
from protocols.dealer_service import DealerService, dealer_tls, fetch_material
from protocols.limits import Limits
from protocols.transport.certs import TlsConfig, fingerprint, write_self_signed
from protocols.transport.channel import Listener, connect
from protocols.transport.errors import PeerDisconnected
from protocols.transport.frame import MessageType


def _dealer_process(cert: str, key: str, server_cert: str, client_cert: str, threads: int,
                    max_frame_size: int | None, conn) -> None:
    pi_native.set_num_threads(threads)
    torch.set_num_threads(threads)
    extra = {} if max_frame_size is None else {"max_frame_size": max_frame_size}
    # A benchmark runs one inference at a time: its only bound is the frame size (per half, so
    # the two halves of one inference may hold twice that).
    frame = max_frame_size or (1 << 30)
    limits = Limits(max_batch=1 << 16, max_material_bytes=2 * frame, memory_budget_bytes=3 * frame,
                    budget_wait_s=600)
    service = DealerService(Listener("127.0.0.1", 0, dealer_tls(cert, key, server_cert, client_cert), **extra),
                            [fingerprint(server_cert)], limits=limits)
    conn.send(service.listener.port)
    conn.close()
    service.serve_forever()


def _server_process(bundle: str, cert: str, key: str, dealer_port: int, dealer_fp: str, threads: int,
                    max_frame_size: int | None, conn, ready) -> None:
    """Serves one client: per request, material from the dealer, the engine's offline and
    online phases, then this party's cost report. `ready` (an Event, not protocol traffic) is set
    when this party's offline phase is over."""
    pi_native.set_num_threads(threads)
    torch.set_num_threads(threads)
    model = pi.load(bundle)
    dealer_tls = TlsConfig(cert=Path(cert), key=Path(key), peer_fingerprint=dealer_fp)
    listener = Listener("127.0.0.1", 0, TlsConfig(cert=Path(cert), key=Path(key)), recv_timeout=3600)
    conn.send(listener.port)
    conn.close()
    meter = CostMeter("server")
    with listener, listener.accept(timeout=600, meter=meter) as chan:
        while True:
            try:
                req = json.loads(chan.recv(MessageType.DATA, timeout=3600))
            except PeerDisconnected:
                return
            meter.reset()
            t0 = time.perf_counter()
            material, nbytes = fetch_material("127.0.0.1", dealer_port, dealer_tls, "server", req["session"],
                                              model.plan, req["batch"], 600, max_frame_size)
            fetch_s = time.perf_counter() - t0
            run = engine.ServerRun(model.plan, model.weights, material, req["batch"])
            run.offline(chan)
            ready.set()
            run.online(chan)
            report = meter.report().to_dict()
            chan.send(MessageType.DATA, json.dumps({"report": report, "material_bytes": nbytes, "fetch_s": fetch_s,
                                                    **run.timings}).encode())


def _two_party_server_process(bundle: str, cert: str, key: str, threads: int, conn) -> None:
    """`pi serve --provider two-party` as a library call: the real server (pi.serving)."""
    import pi_native

    import pi
    from pi.serving import InferenceServer
    from protocols.limits import Limits
    from protocols.transport.certs import TlsConfig
    from protocols.transport.channel import Listener
    pi_native.set_num_threads(threads)
    torch.set_num_threads(threads)
    server = InferenceServer(pi.load(bundle), Listener("127.0.0.1", 0, TlsConfig(cert=Path(cert), key=Path(key))),
                             None, provider="two-party", limits=Limits(max_batch=1 << 16), idle_timeout=3600)
    conn.send(server.listener.port)
    conn.close()
    server.serve_forever()


class _Processes:
    """Child processes, their ports and peak memory (shared by both deployments)."""

    def _port(self, conn, proc) -> int:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if conn.poll(0.2):
                return int(conn.recv())
            if not proc.is_alive():
                raise RuntimeError(f"{proc.name} exited with code {proc.exitcode} before listening")
        raise RuntimeError(f"{proc.name} did not start listening within 120 s")

    def _pids(self) -> dict[str, int]:
        return {"client": os.getpid(), **{p.name.removeprefix("pi-bench-"): p.pid for p in self.procs}}

    def reset_peak_memory(self) -> None:
        """Restarts each process's peak-RSS count (Linux: clear_refs 5), so that peak_memory()
        covers what follows and not, for the client, everything this process did before."""
        for pid in self._pids().values():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass

    def peak_memory(self) -> dict[str, int | None]:
        """Peak resident set size (bytes) per process: client, server (and dealer) (None where
        /proc does not say: not Linux)."""
        out = {}
        for name, pid in self._pids().items():
            try:
                line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmHWM:"))
                out[name] = int(line.split()[1]) * 1024
            except (OSError, StopIteration, ValueError):
                out[name] = None
        return out

    def _stop_processes(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TwoPartyDeployment(_Processes):
    """The two-party provider as deployed: `pi serve --provider two-party` (pi.serving's
    InferenceServer) in its own process, the client (pi.connect) in this one, TLS 1.3 on
    loopback, no third process. The connection's setup (HE keys, base OTs) runs once, before
    the first inference; each `infer(x)` runs one offline and one online phase (or only the
    online phase on a bundle from `preprocess(n, batch)`) and returns (output, cost dict)
    with the same keys as Deployment.infer plus stored_bytes."""

    def __init__(self, secure, threads: int = 1, workdir: str | os.PathLike | None = None,
                 timeout: float = 3600.0) -> None:
        import pi_native

        from pi.serving import Endpoint, connect
        from protocols.transport.certs import TlsConfig, write_self_signed
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pi-bench-")
            workdir = self._tmp.name
        work = Path(workdir)
        self.plan, self.procs, self.client = secure.plan, [], None
        pi_native.set_num_threads(threads)
        cert = write_self_signed(work / "certs", "server", overwrite=True)
        bundle = secure.save(work / "model.npz")
        try:
            parent, child = mp.get_context("spawn").Pipe()
            server = mp.get_context("spawn").Process(target=_two_party_server_process,
                                                     args=(str(bundle), str(cert.cert), str(cert.key), threads, child),
                                                     name="pi-bench-server", daemon=True)
            server.start()
            self.procs.append(server)
            port = self._port(parent, server)
            self.client = connect(Endpoint("127.0.0.1", port, TlsConfig(peer_fingerprint=cert.fingerprint)), None,
                                  timeout=timeout, provider="two-party")
        except BaseException:
            self.close()
            raise
        self.setup_bytes, self.setup_s = self.client.setup_bytes, self.client.setup_seconds

    def preprocess(self, n: int, batch: int):
        return self.client.preprocess(n, batch)

    def infer(self, x) -> tuple[np.ndarray, dict]:
        x = np.asarray(torch.as_tensor(x).detach().double().numpy())
        if x.shape == tuple(self.plan.input_shape):
            x = x[None]
        y = self.client.run(x)          # numpy in, numpy out
        c = self.client.last_cost
        offline_rounds = sum(r["rounds"] for r in c.per_layer if r["phase"] == "offline")
        return y, {"online_bytes": c.online_bytes, "offline_bytes": c.offline_bytes, "material_bytes": 0,
                   "rounds": c.rounds, "offline_rounds": offline_rounds, "online_s": c.online_seconds,
                   "offline_s": c.offline_seconds, "stored_bytes": c.stored_bytes, "preprocessed": c.preprocessed,
                   "per_layer": c.per_layer}

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001, S110 -- best effort: the processes are stopped next
                pass
            self.client = None
        self._stop_processes()


class Deployment(_Processes):
    """Dealer and server processes plus a client in this process, for one SecureModel.

    `infer(x)` runs one private inference and returns (decoded output, cost dict)."""

    def __init__(self, secure, threads: int = 1, workdir: str | os.PathLike | None = None,
                 timeout: float = 600.0, max_frame_size: int | None = None, dealer_threads: int | None = None) -> None:
        """threads: kernel threads of each party (client here, server); dealer_threads: the
        dealer's (default: all cores; its key generation runs while both parties wait)."""
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pi-bench-")
            workdir = self._tmp.name
        work = Path(workdir)
        self.plan = secure.plan
        self.threads, self.timeout, self.max_frame_size = threads, timeout, max_frame_size
        pi_native.set_num_threads(threads)
        server_cert = write_self_signed(work / "certs", "server", overwrite=True)
        dealer_cert = write_self_signed(work / "certs", "dealer", overwrite=True)
        client_cert = write_self_signed(work / "certs", "client", overwrite=True)
        bundle = secure.save(work / "model.npz")
        ctx = mp.get_context("spawn")
        self.procs = []
        try:
            parent, child = ctx.Pipe()
            dealer = ctx.Process(target=_dealer_process, args=(str(dealer_cert.cert), str(dealer_cert.key),
                                                               str(server_cert.cert), str(client_cert.cert),
                                                               dealer_threads or os.cpu_count() or 1,
                                                               max_frame_size, child), name="pi-bench-dealer", daemon=True)
            dealer.start()
            self.procs.append(dealer)
            self.dealer_port = self._port(parent, dealer)
            parent, child = ctx.Pipe()
            self.server_ready = ctx.Event()
            server = ctx.Process(target=_server_process,
                                 args=(str(bundle), str(server_cert.cert), str(server_cert.key), self.dealer_port,
                                       dealer_cert.fingerprint, threads, max_frame_size, child, self.server_ready),
                                 name="pi-bench-server", daemon=True)
            server.start()
            self.procs.append(server)
            server_port = self._port(parent, server)
            self.dealer_tls = TlsConfig(client_cert.cert, client_cert.key, peer_fingerprint=dealer_cert.fingerprint)
            self.meter = CostMeter("client")
            self.chan = connect("127.0.0.1", server_port, TlsConfig(peer_fingerprint=server_cert.fingerprint),
                                timeout=60, recv_timeout=timeout, meter=self.meter)
        except BaseException:
            self.close()
            raise
        self.session = secrets.token_hex(8)
        self._n = 0

    def infer(self, x) -> tuple[np.ndarray, dict]:
        x = np.asarray(torch.as_tensor(x).detach().double().numpy())
        if x.shape == tuple(self.plan.input_shape):
            x = x[None]
        batch = x.shape[0]
        sid = f"{self.session}-{self._n}"
        self._n += 1
        self.chan.send(MessageType.DATA, json.dumps({"batch": batch, "session": sid}).encode())
        self.meter.reset()
        t0 = time.perf_counter()
        material, nbytes_c = fetch_material("127.0.0.1", self.dealer_port, self.dealer_tls, "client", sid,
                                            self.plan, batch, self.timeout, self.max_frame_size)
        fetch_s = time.perf_counter() - t0
        run = engine.ClientRun(self.plan, material, batch)
        run.offline(self.chan)
        offline_s = time.perf_counter() - t0
        self._wait_for_server_offline()
        y = run.online(self.chan, x)
        rep_c = self.meter.report()
        srv = json.loads(self.chan.recv(MessageType.DATA, timeout=self.timeout))
        rep_s = CostReport.from_dict(srv["report"])
        merged = rep_c.merge(rep_s)
        cost = {"online_bytes": merged.online_bytes,
                "offline_bytes": merged.offline_bytes + nbytes_c + srv["material_bytes"],
                "material_bytes": nbytes_c + srv["material_bytes"], "stored_bytes": nbytes_c,
                "rounds": merged.rounds, "offline_rounds": merged.offline_rounds,
                "online_s": run.timings["online_s"], "offline_s": offline_s, "fetch_s": fetch_s,
                "server_online_s": srv.get("online_s"),
                "per_layer": [r.to_dict() for r in merged.per_layer],
                "server_rows": [r.to_dict() for r in rep_s.per_layer]}
        return y, cost

    def _wait_for_server_offline(self) -> None:
        """The online phase starts when both parties' offline phases are over, as with material
        prepared ahead of time: otherwise the client's online clock would run while the server
        still absorbs the client's offline messages (its second pass, tens of ms at batch 32)."""
        server = self.procs[-1]
        deadline = time.monotonic() + self.timeout
        while not self.server_ready.wait(0.2):
            if not server.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the bench server did not finish its offline phase "
                                   f"({'it exited' if not server.is_alive() else 'timeout'})")
        self.server_ready.clear()

    def close(self) -> None:
        chan = getattr(self, "chan", None)
        if chan is not None:
            try:
                chan.close()
            except Exception:  # noqa: BLE001, S110 -- best effort: the processes are ended next
                pass
        self._stop_processes()
