"""What one ReLU site computes: the integer codes shared by the secure plan, the policy format
(relu_budget.policy) and the model zoo (relu_budget.models). Defined here, at the lowest layer,
so that every package reads the same codes."""
SITE_KINDS = ("relu", "identity", "poly", "circa")    # index = code
RELU, IDENTITY, POLY, CIRCA = range(4)
CIRCA_MODES = ("poszero", "negpass")
