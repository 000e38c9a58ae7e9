"""The client's and the server's path runs without torch: `pi --help`, `pi keys`, `pi dealer`,
`pi serve` and `pi infer` (PNG and .npy inputs, both providers) never import it, so they start
in well under a second (importing torch alone takes one to several). Each command runs in its
own process under a wrapper that reports, at exit, whether torch was loaded; a top-level
`import torch` anywhere on that path (pi.serving, pi.secure_model, pi.sessions, protocols...)
makes it fail. Only `pi compile`, training, benchmarks and reports need torch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from torch import nn

import pi
from pi.demo import _wait_listening as wait_listening
from protocols.transport.certs import write_self_signed
from reliability.harness import free_port

# pi.cli.main in a fresh interpreter; the last stderr line says whether torch got imported.
# Servers stop on SIGINT (KeyboardInterrupt ends serve_forever), so they report too.
WRAPPER = ("import sys\nfrom pi.cli import main\n"
           "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
           "print(f'torch imported: {\"torch\" in sys.modules}', file=sys.stderr)\nsys.exit(code)")
ENV = {**{k: v for k, v in os.environ.items() if k != "PI_DEBUG"}, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
CLASSES = ["ant", "bee", "cat", "dog"]


def pi_cmd(*args) -> list[str]:
    return [sys.executable, "-c", WRAPPER, *map(str, args)]


def torch_free(stderr: str) -> None:
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    assert last == "torch imported: False", stderr


def run_pi(*args, cwd, timeout=120, ok=True) -> subprocess.CompletedProcess:
    res = subprocess.run(pi_cmd(*args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert (res.returncode == 0) == ok, (args, res.stdout, res.stderr)
    torch_free(res.stderr)
    return res


def one_line(res: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit status 2 and one `pi: error:` line (besides the wrapper's), naming the needles."""
    lines = res.stderr.strip().splitlines()[:-1]
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("pi: error: ") and all(n in lines[0] for n in needles), (needles, lines[0])


def small_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 4)).eval()


def test_help_and_keys_need_no_torch(tmp_path):
    for argv in (["--help"], ["infer", "--help"], ["serve", "--help"], ["dealer", "--help"],
                 ["keys", "--name", "x"]):
        run_pi(*argv, cwd=tmp_path)
    assert (tmp_path / "certs" / "x.crt").is_file()


@pytest.mark.parametrize("provider", ["dealer", "two-party"])
def test_serve_and_infer_need_no_torch(tmp_path, provider):
    """A served bundle answers `pi infer` on a PNG and a .npy as the plaintext model does, bad
    inputs get one line each (a pinned fingerprint that does not match, a wrong shape or image
    size, a missing file, values far beyond the calibrated range), and neither the client, the
    server nor the dealer ever imported torch."""
    model = small_model()
    cal = torch.randn(32, 1, 4, 4)
    pi.compile(model, cal[:1], calibration=cal, normalization=(0.5, 0.25), classes=CLASSES,
               provider=provider).save(tmp_path / "model.npz")
    certs = {name: write_self_signed(tmp_path / "certs", name) for name in ("server", "dealer", "client")}
    img = np.random.default_rng(0).random((4, 4))
    mpimg.imsave(tmp_path / "x.png", img, cmap="gray", vmin=0, vmax=1)
    np.save(tmp_path / "x.npy", cal[:2].numpy())
    contract = pi.load(tmp_path / "model.npz").input_contract
    want = {"x.png": model(torch.from_numpy(contract.from_image(tmp_path / "x.png")).float()),
            "x.npy": model(cal[:2])}

    sport, dport = free_port(), free_port()
    c = certs
    server_flags = ["--server-port", sport, "--cert", c["server"].cert, "--key", c["server"].key]
    client_flags = ["--server-port", sport, "--server-fingerprint", c["server"].fingerprint]
    if provider == "dealer":
        server_flags += ["--dealer-port", dport, "--dealer-fingerprint", c["dealer"].fingerprint]
        client_flags += ["--dealer-port", dport, "--dealer-fingerprint", c["dealer"].fingerprint,
                         "--cert", c["client"].cert, "--key", c["client"].key]
    procs = {}
    if provider == "dealer":
        procs["dealer"] = subprocess.Popen(
            pi_cmd("dealer", "--cert", c["dealer"].cert, "--key", c["dealer"].key, "--server-cert", c["server"].cert,
                   "--client-cert", c["client"].cert, "--dealer-port", dport),
            cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=(tmp_path / "dealer.log").open("w"))
        wait_listening(dport, procs["dealer"], tmp_path / "dealer.log")
    procs["server"] = subprocess.Popen(pi_cmd("serve", "--model", "model.npz", *server_flags), cwd=tmp_path, env=ENV,
                                       stdout=subprocess.DEVNULL, stderr=(tmp_path / "server.log").open("w"))
    try:
        wait_listening(sport, procs["server"], tmp_path / "server.log")
        res = run_pi("infer", "x.png", "x.npy", "--logits", *client_flags, cwd=tmp_path, timeout=300)
        bad_inputs(tmp_path, client_flags, wrong_pin=c["client"].fingerprint)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGINT)
        codes = {name: p.wait(30) for name, p in procs.items()}
    for name in procs:
        torch_free((tmp_path / f"{name}.log").read_text())
    assert codes == {name: 0 for name in procs}, codes

    lines = [ln for ln in res.stdout.splitlines() if not ln.startswith("  ")]
    for name, y in want.items():
        rows = [ln for ln in lines if ln.startswith(name)]
        assert len(rows) == len(y), res.stdout
        for row, logits in zip(rows, y.detach().double().numpy()):
            label = int(logits.argmax())
            assert f": {CLASSES[label]} (label {label})  logits " in row, (row, logits)
            got = np.array(json.loads(row.split("logits ", 1)[1]))      # a printed list of floats
            np.testing.assert_allclose(got, logits, atol=0.01)


def bad_inputs(d, flags: list, wrong_pin: str) -> None:
    np.save(d / "wrong.npy", np.zeros((1, 1, 5, 5)))
    np.save(d / "big.npy", 1000 * np.load(d / "x.npy"))
    mpimg.imsave(d / "big.png", np.zeros((6, 6)), cmap="gray")
    for inputs, needles in ((["wrong.npy"], ["shape (1, 1, 5, 5)", "(1, 4, 4)"]),
                            (["missing.png"], ["missing.png does not exist"]),
                            (["big.npy"], ["calibrated range", "--out-of-range clip"]),
                            (["big.png"], ["6x6", "4x4", "--resize"])):
        one_line(run_pi("infer", *inputs, *flags, cwd=d, ok=False), *needles)
    i = flags.index("--server-fingerprint") + 1
    pinned = flags[:i] + [wrong_pin] + flags[i + 1:]
    one_line(run_pi("infer", "x.npy", *pinned, cwd=d, ok=False), "fingerprint mismatch", "pi keys")
