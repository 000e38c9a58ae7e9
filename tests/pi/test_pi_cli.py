"""The `pi` command as a user runs it: the installed entry point in subprocesses (keys, compile,
dealer, serve, infer, demo). Bad input gets one line on stderr, exit status 2, no traceback."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pi.demo import _wait_listening as wait_listening   # the demo's wait for its dealer and server

BIN = Path(sys.executable).parent
PI = [str(BIN / "pi")] if (BIN / "pi").is_file() else [sys.executable, "-m", "pi"]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
ENV.pop("PI_DEBUG", None)


def pi(*args, cwd, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(PI + [str(a) for a in args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """The result is a clean user error: status 2, a single `pi: error:` line, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert "Traceback" not in res.stderr and len(lines) == 1, res.stderr
    assert lines[0].startswith("pi: error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def main_error(capsys, *args, needles=()) -> str:
    """The same check on pi.cli.main in this process (the entry point's code, without paying
    a process start-up per bad input; every command also has a subprocess case)."""
    from pi.cli import main
    capsys.readouterr()
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    return one_line_error(subprocess.CompletedProcess(args, 2, "", err), *needles)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fingerprint(out: str) -> str:
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("fingerprint"))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """keys, compile, dealer and serve, all through the `pi` command."""
    from pi.assets import load_samples, save_sample_images
    d = tmp_path_factory.mktemp("pi-cli")
    fps = {}
    for name in ("server", "dealer", "client"):
        res = pi("keys", "--name", name, cwd=d)
        assert res.returncode == 0, res.stderr
        fps[name] = fingerprint(res.stdout)
    res = pi("compile", "default", "--calibration", "samples", "--out", "model.npz", cwd=d)
    assert res.returncode == 0, res.stderr
    assert "calibrated range" in res.stdout and "10 class names" in res.stdout
    samples = load_samples()
    for i, f in enumerate(save_sample_images(d, 3)):     # the README's way to get test images
        f.rename(d / f"img{i}.png")
    np.save(d / "x.npy", samples.inputs[:2].numpy())
    sport, dport = free_port(), free_port()
    procs = [subprocess.Popen(PI + ["dealer", "--cert", "certs/dealer.crt", "--key", "certs/dealer.key",
                                    "--server-cert", "certs/server.crt", "--client-cert", "certs/client.crt",
                                    "--dealer-port", str(dport)], cwd=d, env=ENV,
                              stdout=open(d / "dealer.log", "w"), stderr=subprocess.STDOUT)]
    procs.append(subprocess.Popen(PI + ["serve", "--model", "model.npz", "--cert", "certs/server.crt",
                                        "--key", "certs/server.key", "--dealer-fingerprint", fps["dealer"],
                                        "--server-port", str(sport), "--dealer-port", str(dport)],
                                  cwd=d, env=ENV, stdout=open(d / "server.log", "w"), stderr=subprocess.STDOUT))
    try:
        wait_listening(dport, procs[0], d / "dealer.log")
        wait_listening(sport, procs[1], d / "server.log")
        flags = ["--server-port", sport, "--dealer-port", dport, "--server-fingerprint", fps["server"],
                 "--dealer-fingerprint", fps["dealer"], "--cert", "certs/client.crt", "--key", "certs/client.key"]
        yield {"dir": d, "flags": flags, "fps": fps, "labels": samples.labels, "ports": (sport, dport)}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def test_help_and_keys_import_no_torch(tmp_path):
    """Start-up: `pi --help`, `pi keys` and `pi dealer`'s parsing load no torch (it alone takes
    about a second to import)."""
    code = ("import sys, contextlib, io, pi.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    try:\n"
            "        pi.cli.main({argv!r})\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print('torch' in sys.modules)")
    for argv in (["--help"], ["keys", "--name", "x"], ["dealer"]):
        res = subprocess.run([sys.executable, "-c", code.format(argv=argv)], capture_output=True, text=True,
                             cwd=tmp_path, timeout=60)
        assert res.stdout.strip() == "False", (argv, res.stdout, res.stderr)
    assert (tmp_path / "certs" / "x.crt").is_file()
    res = pi("--help", cwd=tmp_path)
    assert res.returncode == 0 and "compile" in res.stdout and "bench" in res.stdout
    res = pi("bench", "--help", cwd=tmp_path)
    assert res.returncode == 0 and "model" in res.stdout


def test_infer_png_applies_normalization_and_names_the_class(deployment):
    d, flags = deployment["dir"], deployment["flags"]
    res = pi("infer", "img0.png", "img1.png", "img2.png", *flags, cwd=d)
    assert res.returncode == 0, res.stderr
    from relu_budget.data import FASHION_CLASSES
    lines = [ln for ln in res.stdout.splitlines() if not ln.startswith("  ")]
    want = [f"img{i}.png: {FASHION_CLASSES[y]} (label {y})" for i, y in enumerate(deployment["labels"][:3])]
    assert lines == want, res.stdout
    assert "warning" not in res.stderr     # images within the input limits are not clipped


def test_infer_reports_the_cost_of_both_parties_like_the_api(deployment):
    """pi infer counts what secure.run counts: both directions, both parties' material."""
    import pi as pi_api
    from pi.assets import load_samples
    d, flags = deployment["dir"], deployment["flags"]
    res = pi("infer", "x.npy", *flags, cwd=d)
    assert res.returncode == 0, res.stderr
    cost_line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith("cost"))
    local = pi_api.load(d / "model.npz")
    local.run(load_samples().inputs[:2])
    c = local.last_cost
    assert f"batch 2: online {c.online_bytes / 1e3:.1f} KB, {c.rounds} rounds" in cost_line, (cost_line, c)
    assert f"offline {c.offline_bytes / 1e6:.2f} MB" in cost_line, (cost_line, c)


def test_infer_bad_inputs_are_one_line(deployment, capsys, monkeypatch):
    import matplotlib.image as mpimg
    d = deployment["dir"]
    monkeypatch.chdir(d)
    np.save(d / "wrong.npy", np.zeros((1, 1, 32, 32)))
    np.save(d / "big.npy", 1000 * np.load(d / "x.npy"))
    (d / "notes.txt").write_text("hello")
    mpimg.imsave(d / "big.png", np.random.default_rng(0).random((40, 40)), cmap="gray")
    # A wrong shape ended in "PeerDisconnected ... (BYE)" before: the real entry point, in a process.
    one_line_error(pi("infer", "wrong.npy", *deployment["flags"], cwd=d), "wrong.npy", "shape (1, 1, 32, 32)",
                   "(1, 28, 28)")
    # Found by a newcomer's check: an empty .npy (EOFError) was a traceback, a directory "does not exist".
    (d / "empty.npy").write_bytes(b"")
    one_line_error(pi("infer", "empty.npy", *deployment["flags"], cwd=d), "empty.npy", "not a readable .npy")
    (d / "pngs").mkdir(exist_ok=True)
    for args, needles in [(["pngs"], ["pngs is a directory", "pngs/*.png"]),
                          (["missing.png"], ["missing.png does not exist"]),
                          (["notes.txt"], ["notes.txt", ".npy arrays", "PNG"]),
                          (["big.png"], ["40x40", "28x28", "--resize"]),
                          (["big.npy"], ["calibrated range", "--out-of-range clip"])]:
        main_error(capsys, "infer", *args, *deployment["flags"], needles=needles)


def test_infer_clips_out_of_range_inputs_with_a_warning(deployment):
    d = deployment["dir"]
    np.save(d / "big.npy", 1000 * np.load(d / "x.npy"))
    res = pi("infer", "big.npy", "--out-of-range", "clip", *deployment["flags"], cwd=d)
    assert res.returncode == 0, res.stderr
    warn = [ln for ln in res.stderr.splitlines() if ln.startswith("pi: warning:")]
    assert len(warn) == 1 and "8x the calibrated range" in warn[0] and "clipped" in warn[0], res.stderr


def test_infer_pin_and_connection_errors_are_one_line(deployment, capsys, monkeypatch):
    d, fps = deployment["dir"], deployment["fps"]
    monkeypatch.chdir(d)
    sport, dport = deployment["ports"]
    base = ["x.npy", "--server-port", sport, "--dealer-port", dport, "--cert", "certs/client.crt",
            "--key", "certs/client.key"]
    # The server's pin given the dealer's fingerprint (a 22-line traceback before).
    one_line_error(pi("infer", *base, "--server-fingerprint", fps["dealer"], "--dealer-fingerprint", fps["dealer"],
                      cwd=d), "fingerprint mismatch", "pi keys")
    main_error(capsys, "infer", *base, "--server-fingerprint", "sha256:abc", "--dealer-fingerprint", fps["dealer"],
               needles=["malformed fingerprint"])
    main_error(capsys, "infer", *base, "--server-fingerprint", fps["server"],
               needles=["no fingerprint pinned", "--dealer-fingerprint"])
    main_error(capsys, "infer", *base[:1], "--server-port", free_port(), "--dealer-port", dport, *base[5:],
               "--server-fingerprint", fps["server"], "--dealer-fingerprint", fps["dealer"],
               needles=["is the peer running?"])
    # The server is still serving after all of that.
    from pi.cli import main
    assert main(["infer", "x.npy", *map(str, deployment["flags"])]) == 0


def test_a_server_killed_mid_run_is_one_line_that_says_so(deployment):
    """The server dies between two inputs of one `pi infer`: the client's line said only "the
    connection to the peer failed while sending: EOF occurred in violation of protocol"."""
    d, fps = deployment["dir"], deployment["fps"]
    sport, dport = free_port(), deployment["ports"][1]
    server = subprocess.Popen(PI + ["serve", "--model", "model.npz", "--cert", "certs/server.crt", "--key",
                                    "certs/server.key", "--dealer-fingerprint", fps["dealer"], "--server-port",
                                    str(sport), "--dealer-port", str(dport)],
                              cwd=d, env=ENV, stdout=(d / "server3.log").open("w"), stderr=subprocess.STDOUT)
    try:
        wait_listening(sport, server, d / "server3.log")
        flags = [str(a) for a in deployment["flags"]]
        flags[flags.index("--server-port") + 1] = str(sport)
        client = subprocess.Popen(PI + ["infer", *["x.npy"] * 40, *flags], cwd=d, env=ENV, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        first = client.stdout.readline()            # one inference done: the server dies before the 40th
        server.kill()
        out, err = client.communicate(timeout=120)
    finally:
        server.kill()
        server.wait(10)
    assert first.startswith("x.npy"), (first, out, err)
    one_line_error(subprocess.CompletedProcess([], client.returncode, out, err),
                   "the server or the dealer stopped or dropped the connection", "its log says why")


def test_keys_serve_dealer_bad_input_is_one_line(deployment, capsys, monkeypatch):
    d, fps = deployment["dir"], deployment["fps"]
    monkeypatch.chdir(d)
    one_line_error(pi("keys", "--name", "server", cwd=d), "already exists", "--overwrite")
    one_line_error(pi("serve", "--model", "missing.npz", "--cert", "certs/server.crt", "--key", "certs/server.key",
                      "--dealer-fingerprint", fps["dealer"], cwd=d), "missing.npz")
    main_error(capsys, "serve", "--model", "model.npz", "--cert", "certs/nope.crt", "--key", "certs/server.key",
               "--dealer-fingerprint", fps["dealer"], needles=["certs/nope.crt", "pi keys"])
    main_error(capsys, "serve", "--model", "model.npz", "--cert", "certs/server.crt", "--key", "certs/server.key",
               "--dealer-fingerprint", fps["dealer"], "--server-port", deployment["ports"][0],
               needles=["Address already in use"])
    # A truncated or empty bundle was a BadZipFile / EOFError traceback; --out naming a file advised --overwrite.
    (d / "cut.npz").write_bytes((d / "model.npz").read_bytes()[:5000])
    (d / "empty.npz").write_bytes(b"")
    one_line_error(pi("serve", "--model", "cut.npz", "--cert", "certs/server.crt", "--key", "certs/server.key",
                      "--dealer-fingerprint", fps["dealer"], cwd=d), "cut.npz is not a secure-model bundle")
    main_error(capsys, "serve", "--model", "empty.npz", "--cert", "certs/server.crt", "--key", "certs/server.key",
               "--dealer-fingerprint", fps["dealer"], needles=["empty.npz is not a secure-model bundle"])
    main_error(capsys, "keys", "--name", "x", "--out", "model.npz", needles=["--out model.npz is a file"])
    (d / "bad.yaml").write_text("server: {port: seven}\n")
    one_line_error(pi("dealer", "--config", "bad.yaml", cwd=d), "server.port", "port number")
    main_error(capsys, "dealer", needles=["certificate and key", "pi keys"])


@pytest.mark.parametrize("provider", ["dealer", "two-party"])
def test_compile_bad_input_is_one_line(tmp_path, capsys, monkeypatch, provider):
    import torch

    from pi.assets import load_default_model
    monkeypatch.chdir(tmp_path)
    model, _ = load_default_model()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    out = ["--out", "m.npz", "--provider", provider]
    # A plain state_dict: "unsupported checkpoint format None" before; now how to compile one's own.
    one_line_error(pi("compile", "weights.pt", *out, cwd=tmp_path), "plain state_dict",
                   "pi.compile(model", "docs/byom.md")
    main_error(capsys, "compile", "missing.pt", *out, needles=["missing.pt does not exist"])
    main_error(capsys, "compile", "default", "--policy", tmp_path, *out, needles=["no policy at"])
    np.save(tmp_path / "cal.npy", np.zeros((4, 3, 28, 28), np.float32))
    main_error(capsys, "compile", "default", "--calibration", "cal.npy", *out, needles=["shape (4, 3, 28, 28)"])
    main_error(capsys, "compile", "default", "--normalize", "0.5", *out, needles=["MEAN,STD"])
    # Found by a newcomer's check: an empty calibration file or checkpoint was an EOFError traceback (or "()"),
    # a run directory "did not exist".
    (tmp_path / "empty.npy").write_bytes(b"")
    one_line_error(pi("compile", "default", "--calibration", "empty.npy", *out, cwd=tmp_path), "--calibration empty.npy",
                   "not a readable .npy")
    (tmp_path / "empty.pt").write_bytes(b"")
    main_error(capsys, "compile", "empty.pt", *out, needles=["empty.pt is not a readable checkpoint (empty or truncated)"])
    (tmp_path / "run").mkdir()
    torch.save(model.state_dict(), tmp_path / "run" / "model.pt")
    main_error(capsys, "compile", "run", *out, needles=["run is a directory", "pi compile run/model.pt --policy run/policy"])


def test_demo_policy_header_poly_and_no_leftover_keys(tmp_path):
    """pi demo with a policy shows the policy's accuracy, --relu poly runs, and the temporary
    work directory (private keys) is gone afterwards."""
    snl = Path(__file__).resolve().parents[2] / "demos" / "assets" / "snl-10"
    res = pi("demo", "--policy", snl, "--samples", "2", "--batch", "2", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    head = res.stdout.splitlines()[0]
    assert "run test accuracy" in head and "91.99" not in head, head
    work = Path(next(w for w in res.stdout.split() if "pi-demo-" in w).rstrip(";"))
    assert not work.exists(), work
    from pi.cli import build_parser
    assert build_parser(["demo"]).parse_args(["demo", "--relu", "poly"]).relu == "poly"
    from pi.cli import main
    assert main(["demo", "--policy", str(tmp_path)]) == 2
    one_line_error(pi("demo", "--samples", "0", cwd=tmp_path), "--samples and --batch must be >= 1")


def test_demo_runs_the_shipped_polynomial_policy(tmp_path):
    """demos/assets/autorep-10 (trained polynomials at 90 % of the sites) compiles within 64 bits
    and its private outputs equal plaintext: the way the README gives to demo polynomial sites
    (a check that counted the values' 64x headroom refused it)."""
    run = Path(__file__).resolve().parents[2] / "demos" / "assets" / "autorep-10"
    res = pi("demo", "--policy", run, "--samples", "4", "--batch", "4", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "13133 poly" in res.stdout and "private = plaintext on 4/4" in res.stdout, res.stdout


def test_demo_of_another_networks_run_names_that_network(tmp_path):
    """A relu-budget run of the ResNet-18-style network demos with its own weights, and the
    header names that network, not the embedded one."""
    run = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "optimizers" / "runs" / "snl-5"
    res = pi("demo", "--policy", run, "--samples", "1", "--batch", "1", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Private inference demo: resnet18 (quarter width, stem stride 2) on "), res.stdout
    assert "private = plaintext on 1/1" in res.stdout, res.stdout


def test_compile_refuses_a_policy_whose_values_outgrow_the_ring(tmp_path):
    """pi compile --relu poly on the embedded all-ReLU model: the fitted polynomials compound
    beyond 64 bits on the calibration data; one line says so and what to do, no bundle."""
    res = pi("compile", "default", "--relu", "poly", "--calibration", "samples", "--out", "p.npz", cwd=tmp_path)
    one_line_error(res, "relu-budget optimize --method autorep")
    assert not (tmp_path / "p.npz").exists()


def test_infer_preprocess_reports_offline_work_apart_from_online_latency(deployment):
    """--preprocess N: N bundles first (one line: offline bytes, seconds, client storage per
    inference), then each input's online cost; the inputs beyond N make their own bundle."""
    d, flags = deployment["dir"], deployment["flags"]
    res = pi("infer", "x.npy", "x.npy", "x.npy", "--preprocess", "2", *flags, cwd=d)
    assert res.returncode == 0, res.stderr
    pre = next(ln for ln in res.stdout.splitlines() if ln.startswith("preprocessed"))
    assert pre.startswith("preprocessed 2 bundles for batches of 2: offline ") and "client stores" in pre, pre
    costs = [ln for ln in res.stdout.splitlines() if ln.strip().startswith("cost")]
    assert len(costs) == 3 and all("client stores" in c for c in costs), costs
    assert ["ahead of time" in c for c in costs] == [True, True, False], costs
    one_line_error(pi("infer", "x.npy", "--preprocess", "-1", *flags, cwd=d), "--preprocess -1")
    one_line_error(pi("infer", "x.npy", "--provider", "two-party", *flags, cwd=d),
                   "runs the dealer provider", "--provider dealer")


def test_two_party_compile_serve_infer_as_the_readme_says(deployment):
    """The README's two-process commands: compile for two-party, serve without any dealer flag,
    infer with --preprocess and only the server's pin; a ring too wide for the provider is one
    line at compile time and at `pi serve --provider two-party`."""
    d, fps = deployment["dir"], deployment["fps"]
    res = pi("compile", "default", "--calibration", "samples", "--provider", "two-party", "--out", "model2.npz", cwd=d)
    assert res.returncode == 0 and "provider: two-party" in res.stdout, res.stderr
    sport = free_port()
    proc = subprocess.Popen(PI + ["serve", "--model", "model2.npz", "--cert", "certs/server.crt", "--key",
                                  "certs/server.key", "--server-port", str(sport)],
                            cwd=d, env=ENV, stdout=(d / "server2.log").open("w"), stderr=subprocess.STDOUT)
    try:
        wait_listening(sport, proc, d / "server2.log")
        res = pi("infer", "img0.png", "img1.png", "--preprocess", "2", "--server-port", sport,
                 "--server-fingerprint", fps["server"], cwd=d, timeout=300)
        assert res.returncode == 0, res.stderr
        from relu_budget.data import FASHION_CLASSES
        for i, y in enumerate(deployment["labels"][:2]):
            assert f"img{i}.png: {FASHION_CLASSES[y]} (label {y})" in res.stdout, res.stdout
        assert res.stdout.startswith("preprocessed 2 bundles for batches of 1") and \
            res.stdout.count("offline ahead of time") == 2, res.stdout
        one_line_error(pi("infer", "img0.png", "--provider", "dealer", "--server-port", sport,
                          "--server-fingerprint", fps["server"], "--dealer-fingerprint", fps["dealer"],
                          "--cert", "certs/client.crt", "--key", "certs/client.key", cwd=d),
                       "runs the two-party provider", "--provider two-party")
    finally:
        proc.terminate()
        proc.wait(10)
    res = pi("compile", "default", "--out", "wide.npz", cwd=d)          # no calibration: the 64-bit ring
    assert res.returncode == 0, res.stderr
    one_line_error(pi("serve", "--model", "wide.npz", "--provider", "two-party", "--cert", "certs/server.crt",
                      "--key", "certs/server.key", "--server-port", free_port(), cwd=d), "at most 59 bits")


def _process_tree(root: int) -> set[int]:
    """root and its live descendants, from /proc (Linux)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, grew = {root}, True
    while grew:
        kids = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= kids
        grew = bool(kids)
    return tree


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts processes through /proc")
@pytest.mark.parametrize("provider,processes", [("two-party", 2), ("dealer", 3)])
def test_demo_runs_exactly_the_parties_processes(tmp_path, provider, processes):
    """pi demo --provider two-party: the client (the demo itself) and `pi serve`, nothing else;
    the dealer demo adds the dealer. Counted from /proc while the demo runs; the table has the
    client's stored bytes per inference."""
    proc = subprocess.Popen(PI + ["demo", "--provider", provider, "--samples", "2", "--batch", "2"],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    most: set[int] = set()
    while proc.poll() is None:
        tree = _process_tree(proc.pid)
        most = tree if len(tree) > len(most) else most
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert len(most) == processes, (most, out)
    assert f"({provider} provider;" in out and "stored MB" in out and "private = plaintext on 2/2" in out, out
    assert ("two-party setup" in out) == (provider == "two-party")


def test_the_wait_for_a_child_to_listen_grows_with_the_load(monkeypatch):
    """pi demo / pi soak wait for their dealer and server: 60 s on an idle machine, stretched
    by the load per core (a soak under a load of 20 on 2 cores once gave up at a fixed 60 s)."""
    from pi import demo
    monkeypatch.setattr(demo.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(demo.os, "getloadavg", lambda: (20.0, 1.0, 1.0))
    assert demo.start_timeout() == 600.0
    monkeypatch.setattr(demo.os, "getloadavg", lambda: (0.5, 1.0, 1.0))
    assert demo.start_timeout() == 60.0
