"""relu_budget: the plaintext side of the ReLU budget.

A model zoo whose every ReLU is a named `ReluSite` (models), datasets (data), training
(train), the budget optimizers DeepReDuce, SNL, AutoReP, DeepReShape and Circa-aware selection
(optimizers), the cost model that turns seconds or bytes into site counts (cost_model), the
ReLU policy they write and `pi.compile` reads (policy), runs on disk (runs), Circa's fault law
in plaintext (circa_sim), the fairness audit and mitigation (fairness), and the
`relu-budget` command (cli). It imports `protocols` (for the site kinds) and never `pi`.
"""
