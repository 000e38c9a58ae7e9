"""pi: private inference for PyTorch models, built around the cost of ReLUs.

    import pi
    secure = pi.compile(model, example_input, relu="exact")
    logits = secure.run(x)          # dealer, server and client in one process
    print(secure.last_cost.table())

    pi.serve(secure, host, port, tls, dealer)     # a server (pi.load a bundle first)
    remote = pi.connect(server, dealer)           # a client: remote.run(x)
"""
from pi.secure_model import CostReport, SecureModel, compile, load
from pi.serving import Endpoint, connect, serve

__all__ = ["compile", "load", "serve", "connect", "Endpoint", "SecureModel", "CostReport"]
