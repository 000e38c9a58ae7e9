import torch

from relu_budget import data, models, train


def test_fit_learns_synthetic_task_and_distillation_runs(tmp_path):
    splits = data.synthetic(n_train=256, n_val=128, n_test=128, seed=1)
    cfg = train.TrainConfig(epochs=4, lr=0.01, batch_size=32, optimizer="adam", progress=False, seed=0)
    train.seed_everything(0)
    teacher = models.build("smallcnn", image_size=12, num_classes=4, channels=(8, 16), hidden=32)
    out = train.fit(teacher, splits, cfg, checkpoint=tmp_path / "t.pt")
    assert out["best"]["val_accuracy"] > 0.8
    assert (tmp_path / "t.pt").is_file()
    student = models.build("smallcnn", image_size=12, num_classes=4, channels=(8, 16), hidden=32)
    out = train.fit(student, splits, cfg, teacher=teacher)
    assert train.evaluate(student, splits.loader("test"))["accuracy"] > 0.8


def test_seeded_training_is_reproducible():
    splits = data.synthetic(n_train=64, n_val=32, n_test=32)
    cfg = train.TrainConfig(epochs=1, batch_size=16, progress=False, seed=3)
    runs = []
    for _ in range(2):
        train.seed_everything(3)
        m = models.build("smallcnn", image_size=12, num_classes=4, channels=(2, 2), hidden=4)
        train.fit(m, splits, cfg)
        runs.append(m.fc2.weight.detach().clone())
    torch.testing.assert_close(runs[0], runs[1])


def test_distillation_loss_matches_definition():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    T, a = 4.0, 0.5
    kl = (torch.softmax(t / T, 1) * (torch.log_softmax(t / T, 1) - torch.log_softmax(s / T, 1))).sum(1).mean()
    expected = (1 - a) * torch.nn.functional.cross_entropy(s, y) + a * T * T * kl
    torch.testing.assert_close(train.distillation_loss(s, t, y, T, a), expected)
