"""Receiver CPU per message over the real TlsChannel (TLS 1.3, loopback, two processes).

    python benchmarks/tls_receive.py --size 718848 --messages 150

The peer process sends `--messages` arrays of `--size` bytes, each after a 1-byte request;
this process times request + receive (`recv_array`), in process-CPU and wall time, and prints
the medians (and the peer's CPU per message). 718 848 B is the labels message of the embedded
model's largest all-Circa layer (m = 14). Used for docs/transport.md (frame buffer growth).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _peer(cert: str, key: str, n: int, size: int, conn) -> None:
    from protocols.transport.certs import TlsConfig
    from protocols.transport.channel import Listener
    lis = Listener("127.0.0.1", 0, TlsConfig(cert=Path(cert), key=Path(key)))
    conn.send(lis.port)
    chan = lis.accept(timeout=60)
    data = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
    c0 = time.process_time()
    for _ in range(n):
        chan.recv_array()
        chan.send_array(data)
    conn.send(time.process_time() - c0)
    chan.close()
    lis.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=718848)
    p.add_argument("--messages", type=int, default=150)
    args = p.parse_args(argv)
    from protocols.transport.certs import TlsConfig, write_self_signed
    from protocols.transport.channel import connect
    with tempfile.TemporaryDirectory() as d:
        cert = write_self_signed(Path(d) / "certs", "server", overwrite=True)
        parent, child = mp.get_context("spawn").Pipe()
        proc = mp.get_context("spawn").Process(target=_peer, args=(str(cert.cert), str(cert.key), args.messages,
                                                                   args.size, child), daemon=True)
        proc.start()
        try:
            chan = connect("127.0.0.1", parent.recv(), TlsConfig(peer_fingerprint=cert.fingerprint))
            go = np.zeros(1, np.uint8)
            cpu, wall = [], []
            for _ in range(args.messages):
                t0, c0 = time.perf_counter(), time.process_time()
                chan.send_array(go)
                chan.recv_array(dtype=np.uint8, shape=(None,))
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - t0)
            peer_cpu = parent.recv()
            chan.close()
        finally:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    med = 1e3 * statistics.median(cpu)
    print(f"{args.size} B per message: receiver CPU {med:.3f} ms ({med / (args.size / 2**20):.2f} ms/MiB), "
          f"wall {1e3 * statistics.median(wall):.3f} ms, sender CPU {1e3 * peer_cpu / args.messages:.3f} ms; "
          f"load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
