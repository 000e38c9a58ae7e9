"""A real three-process deployment on loopback for the fault-injection suite: `pi dealer` and
`pi serve` as OS processes started from the command line, the client in the test process.

Small model, small limits and short timeouts, so every fault resolves in seconds. Helpers:
`healthy()` runs a correct inference and checks it against the plaintext model, `rss()` reads
a process's resident memory, `within()` asserts a call ends within a bound.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

import pi
from pi.demo import _wait_listening as wait_listening   # the demo's wait: the same processes
from pi.serving import Endpoint, connect
from protocols.limits import Limits, MaterialEstimator
from protocols.material import plan_digest
from protocols.transport.certs import TlsConfig, write_self_signed

BOUND_S = 10.0            # every fault must end in a clear error within this
MB = 1 << 20


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 4)).eval()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def within(seconds: float, fn, *args, **kw):
    """(result or exception, elapsed seconds) of fn; fails when it took longer than `seconds`."""
    t0 = time.monotonic()
    try:
        out = fn(*args, **kw)
    except Exception as exc:  # noqa: BLE001 -- the caller checks which one
        out = exc
    elapsed = time.monotonic() - t0
    assert elapsed <= seconds, f"{getattr(fn, '__name__', fn)} took {elapsed:.1f} s (bound {seconds} s)"
    return out, elapsed


def check_frozen_server(dep: Deployment) -> None:
    """A frozen (SIGSTOPped) server: the client's inference ends within BOUND_S in a
    ChannelTimeout that says the server sent nothing for the client's 2 s timeout."""
    from protocols.transport.errors import ChannelTimeout
    client = connect(*dep.endpoints(), timeout=2.0)
    os.kill(dep.pid("server"), signal.SIGSTOP)
    try:
        out, _ = within(BOUND_S, client.run, torch.zeros(1, 1, 4, 4))
        assert isinstance(out, ChannelTimeout) and "sent nothing for 2 s" in str(out), out
    finally:
        os.kill(dep.pid("server"), signal.SIGCONT)
        client.close()


class Deployment:
    """Certificates, a bundle, a YAML config and the processes: `pi dealer` and `pi serve` for
    the dealer provider, `pi serve --provider two-party` alone for two-party."""

    def __init__(self, work: Path, provider: str = "dealer") -> None:
        self.work, self.provider = work, provider
        self.roles = ("server",) if provider == "two-party" else ("dealer", "server")
        certs = work / "certs"
        self.certs = {n: write_self_signed(certs, n) for n in ("server", "dealer", "client", "stranger")}
        self.model = small_model()
        self.secure = pi.compile(self.model, torch.zeros(1, 1, 4, 4), relu="exact", provider=provider)
        self.bundle = self.secure.save(work / "model.npz")
        # Limits: batch 16 passes max_batch, but its material (about 3.2 MB) exceeds the
        # per-inference limit; the budget holds a few small inferences at once.
        per, overhead = MaterialEstimator(Limits()).per_example(self.secure.plan, plan_digest(self.secure.plan.to_dict()))
        self.per_example = sum(per)
        self.limits = Limits(max_batch=16, max_material_bytes=8 * self.per_example + sum(overhead) + 65536,
                             memory_budget_bytes=24 * self.per_example + 6 * 65536, budget_wait_s=1.0)
        self.server_port, self.dealer_port = free_port(), free_port()
        self.config = work / "deploy.yaml"
        self.config.write_text(yaml.safe_dump({
            "server": {"host": "127.0.0.1", "port": self.server_port},
            "dealer": {"host": "127.0.0.1", "port": self.dealer_port},
            "pins": {"server": self.certs["server"].fingerprint, "dealer": self.certs["dealer"].fingerprint},
            "dealer_peers": {"server": "certs/server.crt", "clients": ["certs/client.crt"]},
            "limits": self.limits.to_dict(),
            "timeouts": {"client": 3, "handshake": 2, "first_frame": 2},
            "max_connections": 128,
        }))
        self.procs: dict[str, subprocess.Popen] = {}
        for role in self.roles:
            self.start(role)
        self.baseline = {}

    def command(self, role: str, *extra: str) -> list[str]:
        c = self.certs[role]
        cmd = [sys.executable, "-m", "pi", "dealer" if role == "dealer" else "serve", "--config", str(self.config),
               "--cert", str(c.cert), "--key", str(c.key)]
        if role == "dealer":
            cmd += ["--expiry", "3"]
        else:
            cmd += ["--model", str(self.bundle), "--provider", self.provider]
        return cmd + list(extra)

    def start(self, role: str) -> None:
        log = open(self.work / f"{role}.log", "a")
        self.procs[role] = subprocess.Popen(self.command(role), stdout=log, stderr=subprocess.STDOUT)
        port = self.dealer_port if role == "dealer" else self.server_port
        wait_listening(port, self.procs[role], self.work / f"{role}.log")

    def kill(self, role: str) -> None:
        p = self.procs.pop(role)
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def log(self, role: str) -> str:
        return (self.work / f"{role}.log").read_text()

    def pid(self, role: str) -> int:
        return self.procs[role].pid

    def endpoints(self, timeout: float = 3.0) -> tuple[Endpoint, Endpoint]:
        c = self.certs["client"]
        server = Endpoint("127.0.0.1", self.server_port, TlsConfig(peer_fingerprint=self.certs["server"].fingerprint))
        if self.provider == "two-party":
            return server, None
        dealer = Endpoint("127.0.0.1", self.dealer_port,
                          TlsConfig(c.cert, c.key, peer_fingerprint=self.certs["dealer"].fingerprint))
        return server, dealer

    def plain(self, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return self.model(x).double().numpy()

    def healthy(self, batch: int = 2) -> None:
        """One correct inference, start to end within the bound: the deployment still serves."""
        x = torch.randn(batch, 1, 4, 4)

        def run():
            with connect(*self.endpoints(), timeout=3.0) as client:
                return client.run(x).numpy()

        y, _ = within(BOUND_S, run)
        assert not isinstance(y, Exception), f"a healthy inference failed: {y!r}"
        np.testing.assert_allclose(y, self.plain(x), atol=2 ** -7)

    def check_memory(self, slack: int = 64 * MB) -> None:
        """Neither process grew past its memory budget (plus interpreter slack) since start."""
        for role in self.roles:
            grown = rss(self.pid(role)) - self.baseline[role]
            assert grown <= self.limits.memory_budget_bytes + slack, \
                f"{role} grew by {grown / MB:.0f} MB (budget {self.limits.memory_budget_bytes / MB:.0f} MB)"

    def close(self) -> None:
        for role in list(self.procs):
            p = self.procs.pop(role)
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


