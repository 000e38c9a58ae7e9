"""pi: private inference for PyTorch models, built around the cost of ReLUs.

    import pi
    secure = pi.compile(model, example_input, relu="exact")
    logits = secure.run(x)          # dealer, server and client in one process
    print(secure.last_cost.table())
"""
from pi.secure_model import CostReport, SecureModel, compile, load

__all__ = ["compile", "load", "SecureModel", "CostReport"]
