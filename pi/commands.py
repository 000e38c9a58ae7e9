"""`pi compile`, `pi keys`, `pi dealer`, `pi serve`, `pi infer`: the deployment commands."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from pi.config import ConfigError, DeployConfig, add_common_flags, add_limit_flags


def add_parser(sub) -> None:
    p = sub.add_parser("compile", help="compile a trained checkpoint into a server bundle")
    p.add_argument("checkpoint", help="relu_budget checkpoint (.pt) or 'default' for the embedded model")
    p.add_argument("--out", required=True, help="bundle path (.npz)")
    p.add_argument("--policy", help="ReLU policy directory from relu-budget")
    p.add_argument("--relu", default="exact", choices=["exact", "circa", "identity"])
    p.add_argument("--circa-k", type=int)
    p.add_argument("--circa-mode", default="poszero", choices=["poszero", "negpass"])
    p.add_argument("--frac-bits", type=int)
    p.add_argument("--calibration", help=".npy batch of representative inputs (normalized); 'samples' uses "
                   "the embedded samples. Bounds activations (x64 margin) so gates use fewer bits")
    p.add_argument("--output", default="logits", choices=["logits", "label"],
                   help="what the client learns: the logits, or only the predicted label")
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
    add_common_flags(p)
    add_limit_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("infer", help="private inference of one input as a client")
    p.add_argument("inputs", nargs="+", help=".npy arrays (already normalized) or PNG images")
    p.add_argument("--logits", action="store_true", help="print the logits, not only the label")
    p.add_argument("--timeout", type=float, help="seconds to wait for a silent server or dealer (default 60)")
    add_common_flags(p)
    p.set_defaults(func=cmd_infer)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def cmd_compile(args) -> int:
    import torch

    import pi
    from pi.assets import load_default_model, load_samples
    if args.checkpoint == "default":
        model, meta = load_default_model()
        example = load_samples().inputs[:1]
    else:
        from relu_budget.train import load_checkpoint
        model, meta = load_checkpoint(args.checkpoint)
        example = torch.zeros(1, model.config.in_channels, 28, 28)
    calibration = None
    if args.calibration == "samples":
        calibration = load_samples().inputs
    elif args.calibration:
        calibration = torch.from_numpy(np.load(args.calibration, allow_pickle=False)).float()
    sm = pi.compile(model, example, policy=args.policy, relu=args.relu, circa_k=args.circa_k,
                    circa_mode=args.circa_mode, frac_bits=args.frac_bits, output=args.output,
                    calibration=calibration)
    sm.plan.meta.update({"dataset": meta.get("dataset"), "arch": meta.get("arch")})
    sm.save(args.out)
    print(sm.summary())
    print(f"wrote {args.out}")
    return 0


def cmd_keys(args) -> int:
    from protocols.transport.certs import write_self_signed
    files = write_self_signed(args.out, args.name, overwrite=args.overwrite)
    print(f"certificate {files.cert}\nkey         {files.key}\nfingerprint {files.fingerprint}")
    return 0


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
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
    try:
        cfg = DeployConfig.load(args.config).apply_flags(args)
        tls, dealer = cfg.own_tls("server"), cfg.peer("dealer")
        model = pi.load(args.model)
        # Validates the bundle (weights, shapes, dtypes, digests) before anything listens.
        server = InferenceServer(model, Listener(cfg.server_host, cfg.server_port, tls,
                                                 handshake_timeout=cfg.handshake_timeout),
                                 dealer, limits=cfg.limits, max_connections=cfg.max_connections,
                                 first_frame_timeout=cfg.first_frame_timeout)
    except (ConfigError, FileNotFoundError, ValueError, TransportError) as exc:
        return _fail(exc)
    for line in public_disclosure(model.plan):
        logging.getLogger("pi.server").info("public spec: %s", line)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def load_input(path: str, plan) -> np.ndarray:
    p = Path(path)
    if p.suffix == ".npy":
        x = np.load(p, allow_pickle=False).astype(np.float64)
    elif p.suffix.lower() == ".png":
        import matplotlib.image as mpimg
        img = mpimg.imread(p)
        if img.ndim == 3:
            img = img[..., :3].mean(-1)
        pre = plan.meta.get("preprocess") or {}
        x = ((img - pre.get("mean", 0.0)) / pre.get("std", 1.0))[None].astype(np.float64)
    else:
        raise ValueError(f"{path}: inputs must be .npy arrays or .png images")
    if x.shape != tuple(plan.input_shape) and x.shape[1:] != tuple(plan.input_shape):
        raise ValueError(f"{path}: shape {x.shape} does not fit the model's input {tuple(plan.input_shape)}")
    return x


def cmd_infer(args) -> int:
    from pi.serving import connect
    from protocols.material import MaterialMismatch
    from protocols.transport.errors import TransportError
    try:
        cfg = DeployConfig.load(args.config).apply_flags(args)
        client = connect(cfg.peer("server"), cfg.peer("dealer"), timeout=cfg.client_timeout)
    except (ConfigError, ValueError, TransportError) as exc:
        return _fail(exc)
    with client:
        classes = client.plan.meta.get("classes")
        for path in args.inputs:
            try:
                y = client.run(load_input(path, client.plan))
            except (ValueError, RuntimeError, TransportError, MaterialMismatch) as exc:
                return _fail(exc)
            label_only = client.plan.output_op.label_only
            label = int(y[0]) if label_only else int(y.argmax(1)[0])
            name = f" ({classes[label]})" if classes else ""
            print(f"{path}: label {label}{name}" + (f"  logits {np.round(y[0].numpy(), 3).tolist()}" if args.logits and not label_only else ""))
            c = client.last_cost
            print(f"  online {c.online_bytes / 1e3:.1f} KB in {c.online_seconds:.3f} s, {c.rounds} rounds; "
                  f"offline {c.offline_bytes / 1e6:.1f} MB")
    return 0
