"""Every optimizer end to end on a tiny ResNet and synthetic data: exact budgets (counted from
the model), policies that load and compile; DaPa against a Monte-Carlo fit; hysteresis,
escaping-activation guard, Circa's fault law, budgets and resumable training."""
import copy
import math

import numpy as np
import pytest
import torch

import pi
from relu_budget import circa_sim, data, models, train
from relu_budget.dapa import dapa_coefficients
from relu_budget.models import CIRCA, IDENTITY, POLY, RELU, count_relu_sites, relu_sites
from relu_budget.optimizers import (
    METHODS,
    autorep,
    circa,
    config_class,
    deepreduce,
    deepreshape,
    get_method,
    optimize,
    snl,
)
from relu_budget.optimizers.common import (
    BudgetError,
    OptimizeConfig,
    evaluate_split,
    resolve_budget,
    set_kinds,
    site_rows,
    site_totals,
    top_k_mask,
)
from relu_budget.optimizers.training import PhaseStore, finetune, train_phase
from relu_budget.policy import load_policy, save_policy
from reference import fss_ref as ref
from tiny_models import tiny_resnet

FAST = {"epochs": 2, "finetune_epochs": 1, "batch_size": 32, "lr": 1e-3, "finetune_lr": 0.01, "progress": None}
FAST.pop("progress")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    return tiny_teacher(2)


def kept(model, shape):
    rows = count_relu_sites(model, shape)
    return sum(r["relu"] + r["circa"] for r in rows)


def check_policy(result, splits, tmp_path, frac_bits=None):
    """The policy matches the model, round-trips through disk, and pi.compile accepts it."""
    d = save_policy(result.policy, tmp_path / "policy")
    pol = load_policy(d)
    rows = count_relu_sites(result.model, splits.input_shape)
    assert pol.counts() == {k: sum(r[k] for r in rows) for k in ("relu", "identity", "poly", "circa")}
    fresh = copy.deepcopy(result.model)
    for _, s in relu_sites(fresh):
        s.kind_map, s.poly_coeffs, s.circa = None, None, None
    pol.apply(fresh)
    x = splits.val[0][:16]
    torch.testing.assert_close(fresh.eval()(x), result.model.eval()(x))
    pi.compile(result.model, torch.zeros(1, *splits.input_shape), policy=d, frac_bits=frac_bits)
    return pol


def test_registry():
    assert METHODS == ("deepreduce", "snl", "autorep", "deepreshape", "circa")
    for m in METHODS:
        assert callable(get_method(m).optimize)
        assert issubclass(config_class(m), OptimizeConfig)
    with pytest.raises(ValueError, match="unknown method"):
        get_method("magic")


def test_snl_pixel_masks_hit_the_budget_exactly(splits, teacher, tmp_path):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cfg = snl.SNLConfig(**FAST, alpha_lr=0.05, lam=1e-3, lam_warmup_epochs=1)
    res = optimize("snl", teacher, splits, 300, cfg, progress=False)
    assert kept(res.model, splits.input_shape) == 300 == res.counts["kept"] == res.budget
    assert res.counts["poly"] == 0 and res.counts["identity"] == 2304 - 300
    assert res.val["n"] == 96 and res.test["n"] == 96      # accuracy itself: the test below
    assert [h["phase"] for h in res.history][-1] == "snl_finetune"
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())   # input untouched
    check_policy(res, splits, tmp_path)


def sign_symmetric_splits(seed: int = 2):
    """x = ±template(class) + noise with a random sign: no linear function of x separates the
    classes, so where the few kept ReLUs sit decides the accuracy."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(4, 1, 12, 12)).astype(np.float32)

    def draw(n):
        y = rng.integers(0, 4, size=n)
        sign = rng.choice([-1.0, 1.0], size=(n, 1, 1, 1)).astype(np.float32)
        x = sign * templates[y] + 0.5 * rng.normal(size=(n, 1, 12, 12)).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    return data.Splits("sign-symmetric", draw(384), draw(192), draw(192), tuple(f"class{i}" for i in range(4)))


def test_snl_beats_random_masks_of_the_same_budget():
    """SNL's placement of 60 kept sites (of 2 304) against random placements of 60, each random
    mask fine-tuned for as many epochs as SNL trains in all (search + fine-tuning). Measured:
    SNL 0.92 test accuracy, random masks 0.47–0.67 (all-ReLU teacher 1.0); 192 test examples,
    so the 0.15 margin is several standard deviations."""
    splits = sign_symmetric_splits()
    train.seed_everything(0)
    teacher = tiny_resnet()
    train.fit(teacher, splits, train.TrainConfig(epochs=4, lr=0.01, optimizer="adam", batch_size=32, progress=False))
    budget = 60
    cfg = snl.SNLConfig(**FAST, alpha_lr=0.05, lam=1e-3, lam_warmup_epochs=1)
    res = snl.optimize(teacher, splits, budget, cfg, progress=False)
    assert res.counts["kept"] == budget
    random_acc = []
    for seed in range(3):
        m = copy.deepcopy(teacher)
        rows = site_rows(m, splits.input_shape)
        gen = torch.Generator().manual_seed(seed)
        masks = top_k_mask([torch.rand(r["shape"], generator=gen) for r in rows], budget)
        set_kinds(m, {r["name"]: torch.where(keep, torch.tensor(RELU, dtype=torch.int8),
                                             torch.tensor(IDENTITY, dtype=torch.int8)) for r, keep in zip(rows, masks)})
        assert kept(m, splits.input_shape) == budget
        finetune(m, splits, cfg, copy.deepcopy(teacher).eval(), PhaseStore(None), False,
                 epochs=cfg.epochs + cfg.finetune_epochs)
        random_acc.append(evaluate_split(m, splits, "test", cfg)["accuracy"])
    assert res.test["accuracy"] >= max(random_acc) + 0.15, (res.test["accuracy"], random_acc)


def test_snl_channel_masks_stay_within_budget_and_are_per_channel(splits, teacher, tmp_path):
    cfg = snl.SNLConfig(**FAST, alpha_lr=0.05, lam=1e-3, lam_warmup_epochs=1, granularity="channel")
    res = snl.optimize(teacher, splits, 0.25, cfg, progress=False)
    b = math.floor(0.25 * 2304)
    assert kept(res.model, splits.input_shape) <= b
    assert kept(res.model, splits.input_shape) > b - 144     # at most one stem channel short
    for name, s in relu_sites(res.model):
        km = s.kind_map
        assert (km == km[:, :1, :1]).all(), name              # constant over H×W
    check_policy(res, splits, tmp_path)


def test_autorep_polynomial_sites_and_exact_budget(splits, teacher, tmp_path):
    cfg = autorep.AutoRePConfig(**FAST, alpha_lr=0.05, dapa_every=2)
    res = autorep.optimize(teacher, splits, 250, cfg, progress=False)
    assert kept(res.model, splits.input_shape) == 250
    assert res.counts["poly"] == 2304 - 250 and res.counts["identity"] == 0
    for lp in res.policy.layers.values():
        assert lp.poly is not None and lp.poly.shape == (lp.shape[0], 3) and np.isfinite(lp.poly).all()
        assert ((lp.kinds == RELU) | (lp.kinds == POLY)).all()
    check_policy(res, splits, tmp_path)     # at the default f = 12: over-scaled inputs are truncated first


def test_autorep_deployed_form_matches_training_module():
    cfg = autorep.AutoRePConfig()
    site = models.ReluSite()
    mod = autorep.AutoRePSite("x", (3, 4, 4), cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        mod.running_mean.copy_(torch.tensor([0.5, -1.0, 0.0]))
        mod.running_var.copy_(torch.tensor([1.0, 4.0, 0.25]))
        mod.reset_to_dapa()
        mod.coeffs.add_(0.01 * torch.randn(3, 3))
        mod.mask.copy_((torch.rand(3, 4, 4) > 0.5).float())
    mod.frozen = True
    mod.eval()
    x = 3 * torch.randn(5, 3, 4, 4)
    kinds = torch.where(mod.mask > 0.5, torch.tensor(RELU, dtype=torch.int8), torch.tensor(POLY, dtype=torch.int8))
    site.set_kinds(kinds, mod.effective_coeffs())
    torch.testing.assert_close(site(x), mod(x))


def test_autorep_training_clamps_and_penalizes_escaping_inputs_evaluation_does_not():
    """Training clamps polynomial inputs to μ ± κσ and charges ρ·mean((1 − m)·ReLU(|z| − κ)²);
    evaluation (what the engine computes) is the plain polynomial."""
    cfg = autorep.AutoRePConfig(clamp_sigmas=3.0, range_penalty=2.0)
    mod = autorep.AutoRePSite("x", (2, 1, 1), cfg, torch.Generator().manual_seed(0))
    mod.mask.zero_()                                   # every site polynomial
    mod.frozen = True
    x = torch.tensor([[[[0.5]], [[10.0]]]], requires_grad=True)   # channel 1 escapes: z = 10 > κ
    mod.eval()
    deployed = mod(x)
    c = mod.effective_coeffs().detach()
    torch.testing.assert_close(deployed[0, :, 0, 0], c[:, 0] + c[:, 1] * x[0, :, 0, 0] + c[:, 2] * x[0, :, 0, 0] ** 2)
    assert mod.range_loss is None
    mod.train()
    with torch.no_grad():                              # freeze the statistics at μ = 0, σ ≈ 1
        mod.running_mean.zero_(), mod.running_var.fill_(1.0)
    mod.cfg.stats_momentum = 0.0
    clamped = mod(x)
    assert clamped[0, 1, 0, 0] < deployed[0, 1, 0, 0]          # 10 was clamped to ≈ 3
    term = autorep.range_term({"x": mod}, cfg)(None)
    sd = float(mod.std()[1])
    expected = 2.0 * ((10.0 / sd - 3.0) ** 2) / 2            # mean over the 2 sites
    assert abs(float(term.detach()) - expected) < 1e-4
    term.backward()
    assert x.grad[0, 1, 0, 0] > 0 and x.grad[0, 0, 0, 0] == 0  # pulls only the escaping input back
    assert mod.range_loss is None                            # consumed once per step


@pytest.mark.parametrize("mu,sigma", [(0.0, 1.0), (0.7, 2.0), (-1.2, 0.6), (2.5, 0.8)])
def test_dapa_matches_monte_carlo_least_squares(mu, sigma):
    rng = np.random.default_rng(0)
    x = rng.normal(mu, sigma, 1_000_000)
    A = np.stack([np.ones_like(x), x, x * x], axis=1)
    fit = np.linalg.lstsq(A, np.maximum(x, 0), rcond=None)[0]
    c = dapa_coefficients(torch.tensor([mu]), torch.tensor([sigma]))[0].numpy()
    # Compare the fitted functions on the bulk of the distribution (coefficients are correlated).
    grid = np.linspace(mu - 2 * sigma, mu + 2 * sigma, 41)
    f_mc = fit[0] + fit[1] * grid + fit[2] * grid ** 2
    f_dapa = c[0] + c[1] * grid + c[2] * grid ** 2
    assert np.abs(f_mc - f_dapa).max() < 0.01 * sigma
    np.testing.assert_allclose(c, fit, atol=0.01 * max(1.0, sigma), rtol=0.02)


def test_dapa_uses_sigma_not_variance():
    c = dapa_coefficients(torch.tensor([0.0]), torch.tensor([2.0]))[0]
    phi0 = 1 / math.sqrt(2 * math.pi)
    assert float(c[2]) == pytest.approx(phi0 / 4)       # φ(0)/(2σ), σ = 2 (not σ² = 4)
    assert float(c[1]) == pytest.approx(0.5)
    assert float(c[0]) == pytest.approx(phi0 * 2 / 2)


def test_hysteresis_mask_update():
    cfg = autorep.AutoRePConfig(threshold=0.1)
    mod = autorep.AutoRePSite("x", (4,), cfg)
    with torch.no_grad():
        mod.mask.copy_(torch.tensor([1.0, 1.0, 0.0, 0.0]))
        mod.alpha.copy_(torch.tensor([-0.05, -0.2, 0.05, 0.2]))
    mod.update_mask()
    # On: stays on unless α < −t. Off: turns on only when α > t.
    assert mod.mask.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_escaping_activations_fail_with_the_layer_name():
    cfg = autorep.AutoRePConfig(clamp_sigmas=None)
    mod = autorep.AutoRePSite("layers.0.0.relu1", (2,), cfg)
    with torch.no_grad():
        mod.mask.zero_()
        mod.alpha.fill_(-1)
        mod.coeffs.fill_(1e30)
    mod.train()
    with pytest.raises(FloatingPointError, match="layers.0.0.relu1"):
        mod(torch.full((3, 2), 1e30))


def test_deepreduce_frontier_and_budget(splits, teacher):
    cfg = deepreduce.DeepReDuceConfig(**FAST, criticality_epochs=1)
    res = deepreduce.optimize(teacher, splits, 0.3, cfg, progress=False)
    b = math.floor(0.3 * 2304)
    assert kept(res.model, splits.input_shape) <= b
    names = [r["name"] for r in res.frontier]
    assert "linear" in names and any(n.endswith("_thin") for n in names)
    trained = [r for r in res.frontier if r["trained"]]
    assert trained and all(r["relus"] <= b for r in trained)
    assert any(r.get("pareto") for r in trained)
    assert res.extra["chosen"] in names
    assert sorted(res.extra["ranking"]) == [0, 1, 2]
    # Stage criticality ranks stages; culling keeps the most critical ones first.
    top = res.extra["ranking"][0]
    assert any(r["stages"] == [top] for r in res.frontier)


def test_deepreduce_reshapes_below_the_smallest_layer(splits, teacher, tmp_path):
    cfg = deepreduce.DeepReDuceConfig(**FAST, criticality={0: 0.9, 1: 0.8, 2: 0.7}, max_candidates=1)
    res = deepreduce.optimize(teacher, splits, 100, cfg, progress=False)
    assert kept(res.model, splits.input_shape) <= 100
    reshaped = [r for r in res.frontier if r["width_mult"] != 1.0 or r["stem_stride_mult"] != 1]
    assert reshaped and all(r["relus"] <= 100 for r in reshaped)
    check_policy(res, splits, tmp_path)


def test_deepreshape_allocates_widths_then_snl(splits, teacher, tmp_path):
    cfg = deepreshape.DeepReShapeConfig(**FAST, alpha_lr=0.05, lam=1e-3, lam_warmup_epochs=1, pretrain_epochs=1,
                                        pretrain_optimizer="adam", pretrain_lr=0.01,
                                        criticality={0: 0.9, 1: 0.6, 2: 0.95})
    res = deepreshape.optimize(teacher, splits, 300, cfg, progress=False)
    alloc = res.extra["allocation"]
    assert len(alloc["multipliers"]) == 2 and all(m in cfg.width_options for m in alloc["multipliers"])
    assert kept(res.model, splits.input_shape) == 300
    assert list(res.model.config.widths) == alloc["widths"]
    check_policy(res, splits, tmp_path)
    with pytest.raises(TypeError, match="ResNet"):
        deepreshape.optimize(models.build("smallcnn", image_size=12, num_classes=4), splits, 10, cfg)


def test_circa_aware_finetuning(splits, teacher, tmp_path):
    cfg = circa.CircaConfig(**FAST, alpha_lr=0.05, lam=1e-3, lam_warmup_epochs=1, k_choices=(8, 16, 22),
                            accuracy_tolerance=0.02, k_search_samples=64, sim_repeats=1)
    res = circa.optimize(teacher, splits, 400, cfg, progress=False)
    shape = splits.input_shape
    assert kept(res.model, shape) == 400
    assert res.counts["circa"] + res.counts["relu"] == 400
    chosen = res.extra["selection"]["layers"]
    for name, s in relu_sites(res.model):
        if s.kind_map is not None and bool((s.kind_map == CIRCA).any()):
            assert s.circa["k"] in (8, 16, 22) and s.circa["mode"] == "poszero"
            assert tuple(chosen[name]["chosen"]) == (s.circa["k"], "poszero")
    # The point of the method: some kept sites are Circa, and the metrics simulate their faults.
    assert res.counts["circa"] > 0 and "accuracy_without_faults" in res.test
    pol = check_policy(res, splits, tmp_path)
    assert {lp.circa_k for lp in pol.layers.values() if lp.kinds is not None and (lp.kinds == CIRCA).any()} <= {8, 16, 22}


def test_circa_on_a_given_policy_refuses_over_budget(splits, teacher):
    cfg = circa.CircaConfig(base="given")
    with pytest.raises(BudgetError, match="above the budget"):
        circa.optimize(teacher, splits, 100, cfg, progress=False)


@pytest.mark.parametrize("mode", ["poszero", "negpass"])
def test_simulated_fault_law_is_the_gates_law(mode):
    """The plaintext simulation uses the law the native gates follow (tests/native/test_circa_law.py
    checks the gates against the same reference), value by value on the integer grid."""
    k, f = 6, 12
    xu = torch.arange(-2 ** k - 3, 2 ** k + 3, dtype=torch.float64)
    p = circa_sim.fault_probability(xu / 2.0 ** (2 * f), k, mode, f)
    assert p.tolist() == [ref.circa_fault_probability(int(v), k, mode) for v in xu]


@pytest.mark.parametrize("mode", ["poszero", "negpass"])
def test_circa_fault_rate_matches_the_law(mode):
    k, f = 10, 12
    scale = 2.0 ** (2 * f)
    # Values spread over the fault zone and beyond, on the 2^-2f grid.
    xu = torch.arange(-2 ** (k + 1), 2 ** (k + 1), dtype=torch.float64).repeat(20)
    x = (xu / scale).float()
    gen = torch.Generator().manual_seed(0)
    y = circa_sim.circa_relu(x, k, mode, f, generator=gen)
    relu = torch.relu(x)
    faulted = y != relu
    p = circa_sim.fault_probability(x, k, mode, f)
    expected, sd = p.sum().item(), math.sqrt((p * (1 - p)).sum().item())
    assert abs(faulted.sum().item() - expected) <= 4 * sd
    if mode == "poszero":
        assert (y[faulted] == 0).all() and (xu[faulted] >= 0).all() and (xu[faulted] < 2 ** k).all()
        assert float(p[(xu == 0)][0]) == 1.0 and float(p[(xu == 1)][0]) == pytest.approx((2 ** k - 1) / 2 ** k)
    else:
        assert torch.equal(y[faulted], x[faulted]) and (xu[faulted] < 0).all() and (xu[faulted] >= -2 ** k).all()
        assert float(p[(xu == -1)][0]) == pytest.approx((2 ** k - 1) / 2 ** k) and float(p[(xu == -2 ** k)][0]) == 0
    assert not faulted[(xu.abs() > 2 ** k)].any()


def test_circa_site_simulation_respects_kinds():
    site = models.ReluSite()
    kinds = torch.tensor([RELU, CIRCA, IDENTITY, CIRCA], dtype=torch.int8)
    site.set_kinds(kinds)
    site.circa = {"k": 24, "mode": "poszero"}        # 2^24 ulps = 1.0: every x in [0, 1) may fault
    x = torch.full((2000, 4), 0.001)
    net = torch.nn.Sequential(site)
    with circa_sim.simulated(net, seed=1):
        y = net(x)
    assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 2], x[:, 2])
    assert (y[:, 1] == 0).float().mean() > 0.99
    assert site.replacement is None
    with pytest.raises(ValueError, match="k must be"):
        circa_sim.circa_relu(x, 0)


def test_resolve_budget(splits, teacher):
    shape = splits.input_shape
    cfg = OptimizeConfig()
    assert resolve_budget(0.1, teacher, shape, cfg) == 230
    assert resolve_budget(1.0, teacher, shape, cfg) == 2304
    assert resolve_budget(17, teacher, shape, cfg) == 17
    for bad, msg in [(1.5, r"\(0, 1\]"), (5000, "exceeds"), (-1, ">= 0"), ("10", "number")]:
        with pytest.raises(BudgetError, match=msg):
            resolve_budget(bad, teacher, shape, cfg)
    lat = OptimizeConfig(objective="latency")
    full = site_totals(teacher, shape)["total"]
    assert 0 < resolve_budget(latency_budget(teacher, shape, 1000), teacher, shape, lat) < full
    with pytest.raises(BudgetError, match="objective"):
        resolve_budget(1, teacher, shape, OptimizeConfig(objective="joules"))


def latency_budget(model, shape, fewer_sites):
    """The predicted online latency of `model` with `fewer_sites` exact ReLUs linearized."""
    from relu_budget.cost_model import CostModel
    cm = CostModel.load()
    return cm.estimate(model, shape).online_seconds - fewer_sites * cm.per_site("relu")["online_seconds"]


def test_latency_budget_end_to_end(splits, teacher):
    from relu_budget.cost_model import CostModel
    shape = splits.input_shape
    budget = latency_budget(teacher, shape, 1500)
    cfg = snl.SNLConfig(**FAST, alpha_lr=0.05, lam=1e-3, lam_warmup_epochs=1, objective="latency")
    res = snl.optimize(teacher, splits, budget, cfg, progress=False)
    assert res.cost["online_seconds"] <= budget
    assert res.budget == CostModel.load().sites_for_budget(teacher, shape, budget, "latency")
    assert 0 < res.budget <= 2304 - 1500
    gap = res.extra["cost_gap"]                      # recorded for every cost budget, met or not
    assert gap["objective"] == "latency" and gap["budget"] == budget and not gap["over"]
    assert gap["predicted"] == res.cost["online_seconds"]


def test_cost_gap_warns_only_over_a_cost_budget(recwarn):
    from relu_budget.optimizers.common import COST_OVER_BUDGET, cost_gap
    cost = {"online_seconds": 0.023, "online_bytes": 1e6, "offline_bytes": 9e6}
    assert cost_gap("circa", "relus", cost, None) is None and cost_gap("circa", "latency", {"error": "x"}, 1.0) is None
    near = cost_gap("circa", "bytes", cost, 1e7 / COST_OVER_BUDGET)
    assert near["predicted"] == 1e7 and not near["over"] and not recwarn.list
    with pytest.warns(UserWarning, match=r"circa: the predicted latency \(0\.023\) is 1\.47x the budget of 0\.0156"):
        over = cost_gap("circa", "latency", cost, 0.0156)
    assert over["over"] is True and over["ratio"] == 1.474


def test_training_resumes_exactly_after_an_interruption(splits, tmp_path):
    cfg = OptimizeConfig(batch_size=32, seed=3)

    def run(store, interrupt_at=None):
        train.seed_everything(0)
        m = tiny_resnet()

        def stop(epoch, row, state):
            state["seen"] = state.get("seen", 0) + 1
            if epoch == interrupt_at:
                raise KeyboardInterrupt
            return False
        out = train_phase(m, splits, cfg, name="p", epochs=3, optimizer="sgd", lr=0.05, store=store,
                          progress=False, on_epoch_end=stop)
        return m, out

    ref, _ref_out = run(PhaseStore(None))
    store = PhaseStore(tmp_path / "state")
    with pytest.raises(KeyboardInterrupt):
        run(store, interrupt_at=3)
    assert (tmp_path / "state" / "p.partial.pt").is_file()
    resumed, out = run(store)
    assert [h["epoch"] for h in out["history"]] == [1, 2, 3]
    assert out["state"]["seen"] == 3
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v)
    assert (tmp_path / "state" / "p.done.pt").is_file() and not (tmp_path / "state" / "p.partial.pt").exists()
    _again, out2 = run(store)                      # a finished phase is loaded, not retrained
    assert out2.get("resumed") and out2["history"] == out["history"]


def test_snl_lambda_schedules():
    stall = snl.SNLConfig(epochs=4, lam_warmup_epochs=2)
    track = snl.SNLConfig(epochs=4, lam_warmup_epochs=2, lam_schedule="track")
    # Paper rule: grow by 1.1 only when the count stalls, and only after the warm-up.
    assert snl.next_lambda(1.0, 900, 800, 1, 1000, 10, stall) == 1.0
    assert snl.next_lambda(1.0, 900, 800, 2, 1000, 10, stall) == pytest.approx(1.1)
    assert snl.next_lambda(1.0, 700, 800, 2, 1000, 10, stall) == 1.0
    # Pace after epoch 2 of 4 from 1000 to 10 sites: 1000·(10/1000)^(1/2) = 100.
    assert snl.next_lambda(1.0, 101, 800, 2, 1000, 10, track) == 2.0
    assert snl.next_lambda(1.0, 99, 800, 2, 1000, 10, track) == 1.0
    assert snl.next_lambda(1.0, 900, 800, 2, 1000, 10, track) == pytest.approx(2.2)
    with pytest.raises(ValueError, match="lam_schedule"):
        snl.SNLConfig(lam_schedule="fast")


def test_budget_gap_warns_only_when_the_search_ends_far_from_the_budget(recwarn):
    from relu_budget.optimizers.common import FAR_FROM_BUDGET, budget_gap
    assert budget_gap("snl", None, 100) is None
    near = budget_gap("snl", int(FAR_FROM_BUDGET * 100), 100)
    assert near == {"search_kept": 150, "budget": 100, "ratio": 1.5, "far": False} and not recwarn.list
    with pytest.warns(UserWarning, match=r"snl: the search ended with 151 sites alive, 1\.5x the budget of 100"):
        far = budget_gap("snl", 151, 100)
    assert far["far"] is True


def test_snl_that_misses_its_budget_warns_and_records_it(splits, teacher):
    """λ far too small to shrink 2304 sites to 50 in 2 epochs: the run says so."""
    cfg = snl.SNLConfig(**FAST, alpha_lr=0.05, lam=1e-9, lam_warmup_epochs=5)
    with pytest.warns(UserWarning, match="the search ended with .* sites alive"):
        res = optimize("snl", teacher, splits, 50, cfg, progress=False)
    gap = res.extra["budget_gap"]
    assert gap["far"] and gap["budget"] == 50 and gap["search_kept"] > 75
    assert res.counts["kept"] == 50                     # the cut still honours the budget
    assert res.to_json()["extra"]["budget_gap"] == gap
