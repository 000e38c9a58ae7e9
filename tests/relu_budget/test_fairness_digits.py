"""The drop constraint on real images: AutoReP and Circa-aware fine-tuning of a small network on
scikit-learn's digits with classes 5–9 kept at 30 % of their training images (validation and
test balanced, ≈ 36 test images per class), groups = the ten classes, 2 % of the ReLU sites kept.

What was measured before fixing the thresholds (seeds 0–3, same settings; "drop" = the worst
class's test accuracy drop against the all-ReLU teacher, "loss increase" = the largest per-class
test loss increase against it):

- Circa: plain fine-tuning loses 24–42 points on its worst class (mostly 8); with the drop
  constraint 15–27 points, lower in all four seeds; the worst loss increase 0.69–1.18 → 0.43–0.75.
- AutoReP keeps the teacher's accuracy within one or two test images per class with or without
  the constraint (its polynomial sites lose little here), so accuracy carries no signal; the
  worst-class test loss increase is lower with the constraint in every seed measured (7 of 7,
  budgets 2 % and 0.5 %), by 0.008–0.06.

Seed 0 is checked (deterministic on one thread). The test split is held out: the constraint's
dual steps see only the validation split."""
import numpy as np
import pytest

from relu_budget import data, fairness, models, train
from relu_budget.optimizers import autorep, circa

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

FAST = {"epochs": 1, "finetune_epochs": 3, "batch_size": 32, "lr": 1e-3, "finetune_lr": 0.01, "seed": 0}
CIRCA_FAST = {"alpha_lr": 0.05, "lam": 1e-3, "lam_warmup_epochs": 1, "k_choices": (8, 16, 22),
              "accuracy_tolerance": 0.02, "k_search_samples": 64, "sim_repeats": 1}


@pytest.fixture(scope="module")
def digits_setup():
    splits = data.group_imbalanced(data.digits(), keep_fraction=0.3)
    train.seed_everything(0)
    teacher = models.build("resnet18", in_channels=1, widths=(8, 16), blocks=(1, 1), strides=(1, 2), num_classes=10)
    train.fit(teacher, splits, train.TrainConfig(epochs=30, lr=0.01, optimizer="adam", batch_size=32, progress=False))
    teacher.eval()
    return splits, teacher, fairness.reference_group_losses(teacher, *splits.test, 10)


def worst_drops(model, splits, ref) -> tuple[float, float]:
    """(worst class's test accuracy drop, largest per-class test loss increase) against `ref`."""
    got = fairness.reference_group_losses(model, *splits.test, 10)
    return (max(np.subtract(ref["accuracy"], got["accuracy"])), max(np.subtract(got["loss"], ref["loss"])))


@pytest.mark.parametrize("module,cls,extra", [(autorep, autorep.AutoRePConfig, {}),
                                              (circa, circa.CircaConfig, CIRCA_FAST)], ids=["autorep", "circa"])
def test_drop_constraint_on_digits_cuts_the_worst_class_loss_increase(digits_setup, module, cls, extra):
    splits, teacher, ref = digits_setup
    assert min(ref["accuracy"]) > 0.85, ref["accuracy"]     # the teacher knows every class
    plain = module.optimize(teacher, splits, 0.02, config=cls(**FAST, **extra), progress=False)
    con = module.optimize(teacher, splits, 0.02, config=cls(**FAST, **extra, drop_constraint=True, dual_lr=1.0),
                          progress=False)
    assert con.counts["kept"] == plain.counts["kept"]
    lam = [h["fair_lambda"] for h in con.history if h["phase"] == f"{module.NAME}_finetune"]
    assert len(lam) == FAST["finetune_epochs"] and max(lam[0]) > 0, lam     # active from the first step
    (acc_p, loss_p), (acc_c, loss_c) = worst_drops(plain.model, splits, ref), worst_drops(con.model, splits, ref)
    assert loss_c < loss_p, (loss_p, loss_c)
    if module is circa:     # measured: 0.293 → 0.152
        assert acc_c < acc_p - 0.05, (acc_p, acc_c)
    else:                   # one or two test images per class either way: not worse
        assert acc_c <= acc_p, (acc_p, acc_c)
