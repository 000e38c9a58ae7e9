"""AutoReP's whole-layer linearization (linear_layers): the layer it picks, the budget it keeps
and the round it saves, in the cost model and in the compiled plan."""
import copy

import pytest
import torch

import pi
from relu_budget.cost_model import CostModel
from relu_budget.models import count_relu_sites
from relu_budget.optimizers import autorep
from relu_budget.optimizers.common import BudgetError
from relu_budget.policy import save_policy

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    return tiny_teacher(2)


def test_autorep_linear_layers_cost_no_round_and_keep_the_budget(splits, teacher, tmp_path):
    cfg = autorep.AutoRePConfig(epochs=2, finetune_epochs=1, batch_size=32, lr=1e-3, finetune_lr=0.01, alpha_lr=0.05,
                                dapa_every=2, linear_layers=1)
    res = autorep.optimize(teacher, splits, 250, cfg, progress=False)
    drops, chosen = res.extra["linear_drops"], res.extra["linear_layers"]
    rows = {r["name"]: r for r in count_relu_sites(res.model, splits.input_shape)}
    assert set(drops) == set(rows) and len(chosen) == 1
    # The layer whose linearization alone cost the least validation accuracy; all its sites
    # are identity, and its kept sites went to the other layers (the budget is kept exactly).
    assert drops[chosen[0]] == min(drops.values())
    assert rows[chosen[0]]["identity"] == rows[chosen[0]]["sites"]
    assert all(r["identity"] == 0 for n, r in rows.items() if n != chosen[0])
    assert res.counts["kept"] == 250
    save_policy(res.policy, tmp_path / "policy")
    # One round fewer, in the cost model and in the compiled plan.
    n_layers = len(rows)
    assert res.cost["rounds"] == n_layers + 1 - 1
    assert CostModel.load().estimate(teacher, splits.input_shape).rounds == n_layers + 1
    sm = pi.compile(res.model, torch.zeros(1, *splits.input_shape), policy=tmp_path / "policy")
    opened = {r["layer"] for r in sm.layer_rows() if r["rounds"] > 0 and r["op"] == "Activation"}
    assert len(opened) == n_layers - 1


def test_autorep_linear_layers_auto_only_under_latency(splits, teacher):
    model = copy.deepcopy(teacher)
    modules = autorep.attach(model, splits.input_shape, autorep.AutoRePConfig())
    n = len(modules)
    assert autorep.linear_count(autorep.AutoRePConfig(objective="latency"), n) == 0      # off by default
    for objective, expect in (("relus", 0), ("bytes", 0), ("latency", None)):
        assert autorep.linear_count(autorep.AutoRePConfig(objective=objective, linear_layers="auto"), n) == expect
    assert autorep.linear_count(autorep.AutoRePConfig(linear_layers=2), n) == 2
    for bad in (n, -1, "all", 1.5, True):
        with pytest.raises(BudgetError, match="linear_layers"):
            autorep.linear_count(autorep.AutoRePConfig(linear_layers=bad), n)
    # "auto" with a tolerance nothing meets linearizes nothing; one everything meets takes
    # every layer that leaves room for the budget.
    cfg = autorep.AutoRePConfig(objective="latency", linear_layers="auto", linear_tolerance=-1.0)
    assert autorep.choose_linear_layers(model, modules, splits, cfg, 250)["linear_layers"] == []
    cfg = autorep.AutoRePConfig(objective="latency", linear_layers="auto", linear_tolerance=1.0)
    info = autorep.choose_linear_layers(model, modules, splits, cfg, 250)
    left = sum(m.mask.numel() for k, m in modules.items() if k not in info["linear_layers"])
    assert info["linear_layers"] and left >= 250
    assert all(left - m.mask.numel() < 250 for k, m in modules.items() if k not in info["linear_layers"])
