"""pi: private inference for PyTorch models, built around the cost of ReLUs.

    import pi
    secure = pi.compile(model, example_input, relu="exact")
    logits = secure.run(x)          # dealer, server and client in one process
    print(secure.last_cost.table())

    pi.serve(secure, host, port, tls, dealer)     # a server (pi.load a bundle first)
    remote = pi.connect(server, dealer)           # a client: remote.run(x)
"""
import importlib

# Resolved on first use, so that `pi --help` and the commands that need no torch start fast.
_EXPORTS = {"compile": "pi.secure_model", "load": "pi.secure_model", "SecureModel": "pi.secure_model",
            "CostReport": "pi.secure_model", "serve": "pi.serving", "connect": "pi.serving",
            "Endpoint": "pi.serving"}
__all__ = ["CostReport", "Endpoint", "SecureModel", "compile", "connect", "load", "serve"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pi' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
