"""`pi demo`: private inference of the embedded default model on its 32 Fashion-MNIST samples,
each party its own OS process talking TLS on localhost: server, dealer and client with the
dealer provider; server and client alone with `--provider two-party` (this process is the
client, `pi serve` the server).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="private inference of the embedded model on 32 samples, each party its own "
                       "process (three with the dealer, two with --provider two-party)")
    p.add_argument("--relu", default="exact", choices=["exact", "circa", "poly", "identity"],
                   help="one site kind everywhere (poly: DaPa polynomials fitted on the samples, no training)")
    p.add_argument("--policy", default=None, metavar="DIR",
                   help="a relu-budget run directory (its fine-tuned weights and policy; any network trained on Fashion-MNIST) "
                        "or a policy directory for the embedded model; overrides --relu")
    p.add_argument("--circa-k", type=int, default=None, help="Circa: low bits dropped (default: frac_bits + 4)")
    p.add_argument("--circa-mode", default="poszero", choices=["poszero", "negpass"])
    p.add_argument("--provider", default="dealer", choices=["dealer", "two-party"],
                   help="dealer: server, dealer and client processes; two-party: server and client alone")
    p.add_argument("--batch", type=int, default=8, help="samples per private inference")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--assets", default=None, help="directory with default_model.pt and samples.npz")
    p.add_argument("--workdir", default=None, help="keep certificates, bundle and logs here (default: a temporary "
                   "directory, removed at the end: it holds private keys)")
    p.add_argument("--ring-bits", type=int, default=None, metavar="L",
                   help="ring width (e.g. 64 for the uncalibrated full ring); default: the narrowest ring the "
                        "samples' activation bounds allow")
    p.set_defaults(func=run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


START_TIMEOUT = 60.0     # seconds a child process gets to listen on an idle machine


def start_timeout(base: float = START_TIMEOUT) -> float:
    """`base` stretched by the 1-minute load per core: a process starting on a machine loaded
    k-fold gets about 1/k of a core, so it takes about k times as long to reach its listen()."""
    try:
        per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:             # no load average on this platform
        per_core = 1.0
    return base * max(1.0, per_core)


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float | None = None) -> None:
    """Until the child listens on `port`; an error if it exits first or does not listen within
    `timeout` (default start_timeout())."""
    timeout = start_timeout() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = log.read_text().strip().splitlines() or ["(no output)"]
            raise ChildProcessError(f"the {log.stem} process exited with code {proc.returncode}: {lines[-1]} "
                                    "(pass --workdir DIR to keep its full log)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise ChildProcessError(f"the {log.stem} process does not listen on port {port} after {timeout:.0f} s (the "
                            "wait grows with the machine's load); pass --workdir DIR to keep its log")


def stop_processes(procs) -> None:
    """Terminate the demo's child processes, killing any that do not exit within 10 s."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def _policy_accuracy(directory: str) -> str:
    """What is known of a policy's accuracy: a relu-budget run's test accuracy, else nothing."""
    metrics = Path(directory) / "metrics.json"
    try:
        m = json.loads(metrics.read_text())
        return f"run test accuracy {100 * m['test']['accuracy']:.2f}% ({m['method']}, {m['relus']} kept sites)"
    except (OSError, ValueError, KeyError, TypeError):
        return "a bare policy: its accuracy is not recorded (see the plaintext column below)"


def _run_arch(directory: str) -> str | None:
    """The network a relu-budget run trained (its metrics.json), which may not be the embedded one."""
    try:
        return str(json.loads((Path(directory) / "metrics.json").read_text())["arch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run(args) -> int:
    if args.samples < 1 or args.batch < 1:      # before any compile or process start
        raise ValueError(f"--samples and --batch must be >= 1, got --samples {args.samples} --batch {args.batch}")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="pi-demo-"))
    try:
        return _run(args, work)
    finally:
        if not args.workdir:       # private keys and logs of a throwaway deployment
            shutil.rmtree(work, ignore_errors=True)


def _run(args, work: Path) -> int:
    import torch
    from tqdm.auto import tqdm

    import pi
    from pi.assets import load_default_model, load_samples
    from pi.serving import Endpoint, connect
    from protocols.transport.certs import TlsConfig, write_self_signed
    from relu_budget.data import FASHION_CLASSES, image_inputs

    model, meta = load_default_model(args.assets)
    samples = load_samples(args.assets)
    policy, what = None, f"ReLU: {args.relu}"
    header = (f"{meta['arch']} on Fashion-MNIST (plaintext test accuracy {100 * meta['test_accuracy']:.2f}%, "
              f"{meta['relu_sites']} ReLU sites)")
    if args.policy:
        from relu_budget.runs import load_run_or_policy
        policy, run_model = load_run_or_policy(args.policy)
        model = run_model if run_model is not None else model
        kept = {k: v for k, v in policy.counts().items() if v}
        what = f"policy {args.policy} (sites: {', '.join(f'{v} {k}' for k, v in kept.items())})"
        arch = _run_arch(args.policy) if run_model is not None else None
        header = (f"{arch or meta['arch']} on Fashion-MNIST with policy {args.policy}: "
                  f"{_policy_accuracy(args.policy)}")
    n = min(args.samples, len(samples.labels))
    work.mkdir(parents=True, exist_ok=True)
    print(f"Private inference demo: {header}, {n} test images")
    two_party = args.provider == "two-party"
    parties = "server and client (no third party)" if two_party else "server, dealer and client"
    print(f"{what}; {parties} are separate processes over TLS 1.3 on localhost; "
          f"work dir {work}" + ("" if args.workdir else " (removed at the end)") + "\n")

    # Certificates (self-signed, pinned by fingerprint) and the server's compiled bundle.
    server_cert = write_self_signed(work / "certs", "server", overwrite=True)
    dealer_cert = write_self_signed(work / "certs", "dealer", overwrite=True)
    client_cert = write_self_signed(work / "certs", "client", overwrite=True)
    # Calibration on the samples bounds every activation (times a 64x margin), so the
    # comparison gates work on ~35 instead of 64 bits: about half the key material.
    fashion = image_inputs("fashion-mnist")
    secure = pi.compile(model, samples.inputs[:1], policy=policy, relu=args.relu, circa_k=args.circa_k,
                        circa_mode=args.circa_mode, calibration=samples.inputs,
                        ring_bits="calibrated" if args.ring_bits is None else args.ring_bits,
                        normalization=(fashion["mean"], fashion["std"]), classes=fashion["classes"],
                        provider=args.provider)
    how = "calibrated on the samples" if args.ring_bits is None else "--ring-bits"
    print(f"ring: Z_2^{secure.plan.ring_bits} ({how})")
    secure.plan.meta.update({"arch": meta["arch"]})
    bundle = secure.save(work / "model.npz")
    sport, dport = _free_port(), _free_port()
    py = [sys.executable, "-m", "pi"]
    roles = ("server",) if two_party else ("dealer", "server")
    logs = {name: work / f"{name}.log" for name in roles}
    procs = {}
    try:
        if not two_party:
            procs["dealer"] = subprocess.Popen(
                py + ["dealer", "--dealer-port", str(dport), "--cert", str(dealer_cert.cert),
                      "--key", str(dealer_cert.key), "--server-cert", str(server_cert.cert),
                      "--client-cert", str(client_cert.cert)],
                stdout=open(logs["dealer"], "w"), stderr=subprocess.STDOUT)
        dealer_flags = [] if two_party else ["--dealer-port", str(dport), "--dealer-fingerprint", dealer_cert.fingerprint]
        procs["server"] = subprocess.Popen(
            py + ["serve", "--model", str(bundle), "--server-port", str(sport), "--provider", args.provider,
                  "--cert", str(server_cert.cert), "--key", str(server_cert.key), *dealer_flags],
            stdout=open(logs["server"], "w"), stderr=subprocess.STDOUT)
        for role in roles:
            _wait_listening(dport if role == "dealer" else sport, procs[role], logs[role])
        print(", ".join(f"{role} pid {procs[role].pid} on :{dport if role == 'dealer' else sport}" for role in roles)
              + f"; client pid {os.getpid()} (this process)")

        server = Endpoint("127.0.0.1", sport, TlsConfig(peer_fingerprint=server_cert.fingerprint))
        dealer = None if two_party else Endpoint("127.0.0.1", dport, TlsConfig(
            client_cert.cert, client_cert.key, peer_fingerprint=dealer_cert.fingerprint))
        outs, costs = [], []
        with connect(server, dealer, provider=args.provider) as client, \
                tqdm(total=n, desc="private inference", unit="img") as bar:
            for start in range(0, n, args.batch):
                xb = samples.inputs[start:start + args.batch]
                outs.append(client.run(xb))
                costs.append(client.last_cost)
                bar.update(len(xb))
                bar.set_postfix(offline=f"{costs[-1].offline_seconds:.1f}s", online=f"{costs[-1].online_seconds:.2f}s")
    finally:
        stop_processes(procs.values())

    logits = torch.cat(outs)
    from pi.compiler import plaintext_twin   # the plaintext network the secure one computes
    with torch.no_grad():
        plain = plaintext_twin(model, secure.plan)(samples.inputs[:n]).double()
    secure_pred, plain_pred = logits.argmax(1).numpy(), plain.argmax(1).numpy()
    labels = samples.labels[:n]
    print(f"\n{'#':>3}  {'label':<12} {'private':<12} {'plaintext':<12} {'max|Δlogit|':>11}")
    for i in range(n):
        mark = "" if secure_pred[i] == labels[i] else "  ✗"
        print(f"{i:>3}  {FASHION_CLASSES[labels[i]]:<12} {FASHION_CLASSES[secure_pred[i]]:<12} "
              f"{FASHION_CLASSES[plain_pred[i]]:<12} {float((logits[i] - plain[i]).abs().max()):>11.4f}{mark}")
    agree = int((secure_pred == plain_pred).sum())
    correct = int((secure_pred == labels).sum())
    print(f"\nprivate = plaintext on {agree}/{n}; correct {correct}/{n}")

    tot = lambda k: sum(getattr(c, k) for c in costs)
    offline_what = "offline is what client and server exchange (no third party)" if two_party else \
        "offline includes the dealer's material for both"
    print(f"\nCost per inference ({args.provider} provider; both parties: bytes in both directions; {offline_what}; "
          "rounds = round trips; stored = what the client keeps per inference between its offline and online phase)")
    print(f"{'inference':>9} {'batch':>6} {'online MB':>10} {'offline MB':>11} {'rounds':>7} {'online s':>9} "
          f"{'offline s':>10} {'stored MB':>10}")
    for i, c in enumerate(costs):
        print(f"{i:>9} {c.batch:>6} {c.online_bytes / 1e6:>10.3f} {c.offline_bytes / 1e6:>11.2f} {c.rounds:>7} "
              f"{c.online_seconds:>9.3f} {c.offline_seconds:>10.2f} {c.stored_bytes / 1e6:>10.2f}")
    print(f"{'total':>9} {n:>6} {tot('online_bytes') / 1e6:>10.3f} {tot('offline_bytes') / 1e6:>11.2f} "
          f"{'':>7} {tot('online_seconds'):>9.3f} {tot('offline_seconds'):>10.2f} {tot('stored_bytes') / 1e6:>10.2f}")
    if two_party:
        print(f"two-party setup (once per connection: HE keys, base OTs): {client.setup_bytes / 1e6:.2f} MB, "
              f"{client.setup_seconds:.2f} s")
    if args.workdir:
        print("\nlogs: " + ", ".join(str(logs[r]) for r in roles))
    return 0 if agree == n or args.relu != "exact" or policy is not None else 1
