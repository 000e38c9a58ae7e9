"""`pi compile`, `pi keys`, `pi dealer`, `pi serve`, `pi infer`: the deployment commands."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from pi.config import ConfigError, DeployConfig, add_common_flags, add_limit_flags

PROVIDER_HELP = ("dealer: a third process makes the one-time material (secure if it colludes with neither "
                 "party); two-party: client and server alone (HE + garbled circuits, rings of at most 59 bits)")


def add_parser(sub) -> None:
    p = sub.add_parser("compile", help="compile a trained checkpoint into a server bundle")
    p.add_argument("checkpoint", help="relu_budget checkpoint (.pt) or 'default' for the embedded model "
                   "(a model of your own: compile it with pi.compile in Python, see docs/byom.md)")
    p.add_argument("--out", required=True, help="bundle path (.npz)")
    p.add_argument("--policy", help="ReLU policy directory from relu-budget")
    p.add_argument("--relu", default="exact", choices=["exact", "circa", "poly", "identity"],
                   help="one site kind everywhere (without --policy)")
    p.add_argument("--circa-k", type=int, help="Circa: low bits dropped (default: frac_bits + 4)")
    p.add_argument("--circa-mode", default="poszero", choices=["poszero", "negpass"])
    p.add_argument("--frac-bits", type=int)
    p.add_argument("--calibration", help=".npy batch of representative inputs (normalized); 'samples' uses "
                   "the embedded samples. Bounds activations (x64 margin) so gates use fewer bits, and sets "
                   "the input range clients are held to")
    p.add_argument("--output", default="logits", choices=["logits", "label"],
                   help="what the client learns: the logits, or only the predicted label")
    p.add_argument("--normalize", metavar="MEAN,STD",
                   help="input normalization of pixel intensities in [0, 1] (default: the checkpoint's dataset's); "
                        "per channel: m1,m2,m3,s1,s2,s3")
    p.add_argument("--classes", help="comma-separated class names (default: the checkpoint's dataset's)")
    p.add_argument("--provider", default="dealer", choices=["dealer", "two-party"],
                   help="the preprocessing the bundle is compiled for (sets its ring width limit); " + PROVIDER_HELP)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("keys", help="make a self-signed TLS certificate and key (server, dealer and every "
                       "client need one); prints the fingerprint")
    p.add_argument("--out", default="certs", help="directory (default: certs)")
    p.add_argument("--name", required=True, help="file name stem, e.g. server, dealer, client")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("dealer", help="run the dealer (preprocessing) service")
    add_common_flags(p)
    p.add_argument("--server-cert", help="the server's certificate: the only peer that gets server material")
    p.add_argument("--client-cert", action="append", help="a client's certificate (repeat for each client)")
    p.add_argument("--expiry", type=float, default=60.0, help="seconds before uncollected material is dropped")
    add_limit_flags(p)
    p.set_defaults(func=cmd_dealer)

    p = sub.add_parser("serve", help="serve a compiled model to clients")
    p.add_argument("--model", required=True, help="server bundle from `pi compile`")
    p.add_argument("--provider", choices=["dealer", "two-party"],
                   help="default: the bundle's (from `pi compile --provider`); two-party needs no dealer. " + PROVIDER_HELP)
    p.add_argument("--max-stored", type=int, default=None,
                   help="preprocessed bundles one client connection may hold (default 64)")
    add_common_flags(p)
    add_limit_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("infer", help="private inference of one input as a client")
    p.add_argument("inputs", nargs="+", help=".npy arrays (already normalized) or PNG images (normalized with "
                   "the bundle's input contract)")
    p.add_argument("--logits", action="store_true", help="print the logits, not only the label")
    p.add_argument("--out-of-range", default="refuse", choices=["refuse", "clip"],
                   help="inputs beyond 8x the calibrated range: refuse them (default) or clip them, with a warning")
    p.add_argument("--resize", action="store_true",
                   help="scale images to the model's input size (default: refuse another size)")
    p.add_argument("--timeout", type=float, help="seconds to wait for a silent server or dealer (default 60)")
    p.add_argument("--provider", choices=["dealer", "two-party"],
                   help="the provider the client expects (default: the server's; a mismatch is refused). "
                        "two-party needs no dealer flags")
    p.add_argument("--preprocess", type=int, default=0, metavar="N",
                   help="first run N offline phases (before any input is read into the protocol): N one-time "
                        "bundles on each side, used in order by the inferences that follow; prints the offline "
                        "work and the client's stored bytes per inference apart from each input's online latency")
    add_common_flags(p)
    p.set_defaults(func=cmd_infer)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected comma-separated numbers") from None


def _load_checkpoint(path: str):
    """(model, meta) of a relu_budget checkpoint; anything else gets the way to compile it."""
    from relu_budget.train import CheckpointError, load_checkpoint
    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        p = Path(path)
        if p.is_dir() and (p / "model.pt").is_file():
            raise ValueError(f"{exc}: compile the run with `pi compile {p / 'model.pt'} --policy {p / 'policy'} "
                             "--out MODEL.npz`") from None
        raise ValueError(f"{exc}. `pi compile` reads those (a relu-budget run's model.pt, `pi compile default`); "
                         "for a model of your own, build the nn.Module, load the weights and run `pi.compile(model, "
                         "example, calibration=..., normalization=..., classes=...).save('model.npz')` in Python "
                         "(docs/byom.md)") from None


def cmd_compile(args) -> int:
    import torch

    import pi
    from pi.assets import load_default_model, load_samples
    from relu_budget.data import image_inputs
    if args.checkpoint == "default":
        model, meta = load_default_model()
        example = load_samples().inputs[:1]
    else:
        model, meta = _load_checkpoint(args.checkpoint)
        cfg = model.config
        side = getattr(cfg, "image_size", 28)
        example = torch.zeros(1, cfg.in_channels, side, side)
    calibration = None
    if args.calibration == "samples":
        calibration = load_samples().inputs
    elif args.calibration:
        try:
            calibration = torch.from_numpy(np.load(args.calibration, allow_pickle=False)).float()
        except (OSError, ValueError, EOFError) as exc:     # EOFError: an empty or truncated file
            raise ValueError(f"--calibration {args.calibration}: not a readable .npy array ({exc})") from None
        if tuple(calibration.shape[1:]) != tuple(example.shape[1:]):
            raise ValueError(f"--calibration {args.calibration}: shape {tuple(calibration.shape)}; the model takes a "
                             f"batch (N, {', '.join(map(str, example.shape[1:]))})")
    known = image_inputs(meta.get("dataset")) or {}
    normalization = (known["mean"], known["std"]) if known else None
    if args.normalize:
        v = _floats(args.normalize, "--normalize")
        if len(v) % 2:
            raise ValueError(f"--normalize {args.normalize!r}: give MEAN,STD (or the means then the stds per channel)")
        normalization = (v[:len(v) // 2], v[len(v) // 2:])
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else known.get("classes")
    policy = args.policy
    if policy:
        from relu_budget.policy import load_policy
        policy = load_policy(policy)          # a PolicyError names what is wrong with the directory
    sm = pi.compile(model, example, policy=policy, relu=args.relu, circa_k=args.circa_k,
                    circa_mode=args.circa_mode, frac_bits=args.frac_bits, output=args.output,
                    calibration=calibration, normalization=normalization, classes=classes, provider=args.provider)
    sm.plan.meta.update({"dataset": meta.get("dataset"), "arch": meta.get("arch")})
    sm.save(args.out)
    print(sm.summary())
    c = sm.input_contract
    print(f"input contract: shape {c.shape}, "
          + (f"normalization mean {list(c.mean)} std {list(c.std)}, " if c.mean else "no normalization (PNG refused), ")
          + (f"{len(c.classes)} class names, " if c.classes else "no class names, ")
          + (f"calibrated range [{c.range[0]:.4g}, {c.range[1]:.4g}]" if c.range else "no calibration (full ring)"))
    print(f"provider: {sm.provider}; wrote {args.out}")
    return 0


def cmd_keys(args) -> int:
    from protocols.transport.certs import write_self_signed
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise NotADirectoryError(f"--out {args.out} is a file; give the directory for the certificate and key")
    try:
        files = write_self_signed(args.out, args.name, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise FileExistsError(f"{str(exc).split(';')[0]}; pass --overwrite to replace it (peers that pinned the "
                              "old fingerprint then need the new one)") from None
    print(f"certificate {files.cert}\nkey         {files.key}\nfingerprint {files.fingerprint}")
    return 0


def _fail(exc: Exception) -> int:
    from pi.errors import error_line
    print(f"pi: error: {error_line(exc)}", file=sys.stderr)
    return 2


def cmd_dealer(args) -> int:
    from protocols.dealer_service import DealerService
    from protocols.transport.certs import fingerprint
    from protocols.transport.channel import Listener
    from protocols.transport.errors import TransportError
    _logging()
    try:
        cfg = DeployConfig.load(args.config).apply_flags(args)
        tls = cfg.dealer_tls()
        service = DealerService(Listener(cfg.dealer_host, cfg.dealer_port, tls,
                                         handshake_timeout=cfg.handshake_timeout),
                                [fingerprint(cfg.server_cert)], limits=cfg.limits, expiry_s=args.expiry,
                                max_connections=cfg.max_connections, request_timeout=cfg.first_frame_timeout)
    except (ConfigError, ValueError, TransportError) as exc:
        return _fail(exc)
    print("NOTE: the dealer model is secure only if the dealer colludes with neither the client "
          "nor the server.", flush=True)
    try:
        service.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_serve(args) -> int:
    import pi
    from pi.serving import InferenceServer, public_disclosure
    from protocols.transport.channel import Listener
    from protocols.transport.errors import TransportError
    _logging()
    from pi.sessions import is_interactive
    try:
        cfg = DeployConfig.load(args.config).apply_flags(args)
        model = pi.load(args.model)
        provider = args.provider or model.provider
        tls = cfg.own_tls("server")
        dealer = None if is_interactive(provider) else cfg.peer("dealer")
        stored = {} if args.max_stored is None else {"max_stored": args.max_stored}
        # Validates the bundle (weights, shapes, dtypes, digests, the provider's ring) before anything listens.
        server = InferenceServer(model, Listener(cfg.server_host, cfg.server_port, tls,
                                                 handshake_timeout=cfg.handshake_timeout),
                                 dealer, provider=provider, limits=cfg.limits, max_connections=cfg.max_connections,
                                 first_frame_timeout=cfg.first_frame_timeout, **stored)
    except (ConfigError, FileNotFoundError, ValueError, TransportError) as exc:
        return _fail(exc)
    for line in public_disclosure(model.plan):
        logging.getLogger("pi.server").info("public spec: %s", line)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_infer(args) -> int:
    import warnings

    from pi.inputs import InputRangeWarning, input_file, load_input
    from pi.serving import connect
    from pi.sessions import DealerRequired
    cfg = DeployConfig.load(args.config).apply_flags(args)
    server = cfg.peer("server")
    dealer, no_dealer = None, None
    if args.provider != "two-party":
        try:
            dealer = cfg.peer("dealer")
        except ConfigError as exc:
            if args.provider == "dealer":
                raise
            no_dealer = exc     # fine if the server runs two-party; the reason if it runs the dealer
    if args.preprocess < 0:
        raise ValueError(f"--preprocess {args.preprocess}: give a number of bundles (0: none)")
    for path in args.inputs:                   # before connecting: a missing file costs nothing
        input_file(path)
    try:
        client = connect(server, dealer, timeout=cfg.client_timeout, provider=args.provider)
    except DealerRequired:
        raise no_dealer from None
    with client, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputRangeWarning)
        contract = client.spec.input_contract
        label_only = client.plan.output_op.label_only
        xs = [load_input(path, contract, resize=args.resize, out_of_range=args.out_of_range) for path in args.inputs]
        if args.preprocess:
            batch = len(xs[0])           # every input is a checked batch
            try:
                print(client.preprocess(args.preprocess, batch).line())
            except RuntimeError as exc:
                return _fail(exc)
        for path, x in zip(args.inputs, xs):
            for w in caught:
                print(f"pi: warning: {w.message}", file=sys.stderr)
            caught.clear()
            try:
                y = client.run(x, out_of_range=args.out_of_range)
            except RuntimeError as exc:          # the server refused the inference: its reason
                return _fail(exc)
            labels = y.astype(int).reshape(-1) if label_only else y.argmax(1)
            for i, label in enumerate(labels):
                name = f"{path}[{i}]" if len(labels) > 1 else path
                logits = f"  logits {np.round(y[i], 3).tolist()}" if args.logits and not label_only else ""
                print(f"{name}: {contract.class_name(int(label))} (label {int(label)}){logits}")
            print(f"  cost {client.last_cost.line()}")
    return 0
