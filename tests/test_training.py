"""Training: outputs, best-epoch rule, determinism, resume after a kill, bad losses."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from spinedx import config as configuration
from spinedx import models, training
from spinedx.errors import InputError
from spinedx.inference import score_folds
from spinedx.preprocessing import write_cache
from spinedx.splits import write_folds


@pytest.fixture
def job(tmp_path):
    """A learnable toy sequence: schwannoma images hold a bright disc, ependymomas a bar."""
    rng = np.random.default_rng(0)
    rows, pixels = [], []
    yy, xx = np.mgrid[:32, :32]
    for p in range(16):
        label = p % 2
        cohort = "external" if p >= 12 else "internal"
        for i in range(2):
            image = rng.integers(0, 60, (32, 32))
            shape = (yy - 16) ** 2 + (xx - 16) ** 2 < 40 if label else (abs(xx - 16) < 3) & (abs(yy - 16) < 12)
            image[shape] += 150
            pixels.append(image.astype(np.uint8))
            rows.append(dict(image_id=f"P{p}/T1/{i}", patient_id=f"P{p}", sequence="T1",
                             cohort=cohort, label=label, diagnosis=["ependymoma", "schwannoma"][label]))
    images = pd.DataFrame(rows)
    images.to_parquet(tmp_path / "T1.parquet")
    write_cache({"images": np.stack(pixels), "image_id": images.image_id.to_numpy(str)}, tmp_path / "T1.npz")
    internal = images[images.cohort == "internal"].drop_duplicates("patient_id")
    folds = internal[["patient_id", "diagnosis", "label"]].assign(fold=[0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2])
    write_folds(folds, tmp_path / "folds.tsv")
    config = configuration.resolve({"preprocessing": {"size": 32}, "splits": {"n_folds": 3},
                                     "training": {"epochs": 3, "batch_size": 8, "device": "cpu", "lr": 0.003}})
    return dict(cache_path=tmp_path / "T1.npz", images_path=tmp_path / "T1.parquet",
                folds_path=tmp_path / "folds.tsv", backbone="mobilenetv3_small_050", sequence="T1",
                fold=0, config=config), tmp_path


def run(job, out_dir):
    return training.train(**job, out_dir=out_dir)


def test_writes_checkpoint_history_and_resolved_config(job):
    args, tmp = job
    best = run(args, tmp / "m")
    history = pd.read_csv(tmp / "m" / "history.tsv", sep="\t")
    assert list(history.epoch) == [1, 2, 3] and history.selected.sum() == 1
    assert history.loc[history.selected, "epoch"].item() == best["epoch"]
    # The selected epoch has the best validation accuracy, and the earliest such epoch.
    assert best["epoch"] == history[history.val_accuracy == history.val_accuracy.max()].epoch.min()
    checkpoint = models.load_checkpoint(tmp / "m" / "best.pt")
    assert checkpoint["epoch"] == best["epoch"] and checkpoint["classes"] == ["ependymoma", "schwannoma"]
    resolved = yaml.safe_load((tmp / "m" / "config.yaml").read_text())
    assert resolved["job"]["fold"] == 0 and resolved["data"]["validation"]["patients"] == 4
    assert resolved["config"]["training"]["lr"] == 0.003 and "torch" in resolved["environment"]
    assert not (tmp / "m" / "last.pt").exists()


def test_inference_scores_external_and_validation_patients_only(job):
    args, tmp = job
    args["config"]["training"]["epochs"] = 1
    for fold in (0, 1):
        run({**args, "fold": fold}, tmp / f"fold{fold}")
    table = score_folds([tmp / "fold0/best.pt", tmp / "fold1/best.pt"], args["cache_path"],
                        args["images_path"], args["folds_path"], args["config"])
    assert set(table.role) == {"external", "validation"}
    validation = table[table.role == "validation"].groupby("fold").patient_id.apply(set)
    assert validation[0] == {"P0", "P1", "P6", "P7"} and validation[1] == {"P2", "P3", "P8", "P9"}
    assert table.prob.between(0, 1).all() and len(table) == 2 * (4 * 2 + 4 * 2)
    external = table[table.role == "external"]
    assert (external.groupby("fold").image_id.apply(frozenset).nunique()) == 1


def test_tie_keeps_the_earlier_epoch(job):
    args, tmp = job
    trainer_accuracy = iter([0.5, 0.75, 0.75, 0.6])
    trainer = training.FoldTrainer.__new__(training.FoldTrainer)
    trainer.history, trainer.best_state = [], None
    trainer.model = torch.nn.Linear(1, 1)
    trainer.train_epoch = lambda: (0.0, 0.0)
    trainer.validate = lambda: (0.0, next(trainer_accuracy), 0.5)
    selected_weights = []
    for _ in range(4):
        trainer.run_epoch()
        selected_weights.append(trainer.best_state)
        with torch.no_grad():
            trainer.model.weight += 1
    assert trainer.best_epoch()["epoch"] == 2
    assert selected_weights[3] is selected_weights[1]  # epoch 3 tied and did not replace epoch 2


def test_deterministic_mode_is_bit_identical(job):
    args, tmp = job
    run(args, tmp / "a")
    run(args, tmp / "b")
    a = models.load_checkpoint(tmp / "a" / "best.pt")["state_dict"]
    b = models.load_checkpoint(tmp / "b" / "best.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_a_kill_gives_the_same_model(job, monkeypatch):
    args, tmp = job
    run(args, tmp / "straight")
    original = training.FoldTrainer.run_epoch
    calls = {"n": 0}

    def killed_in_epoch_3(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated SIGTERM")
        return original(self)

    monkeypatch.setattr(training.FoldTrainer, "run_epoch", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(args, tmp / "resumed")
    assert (tmp / "resumed" / "last.pt").exists() and not (tmp / "resumed" / "best.pt").exists()
    monkeypatch.setattr(training.FoldTrainer, "run_epoch", original)
    run(args, tmp / "resumed")
    straight = pd.read_csv(tmp / "straight" / "history.tsv", sep="\t").drop(columns="seconds")
    resumed = pd.read_csv(tmp / "resumed" / "history.tsv", sep="\t").drop(columns="seconds")
    pd.testing.assert_frame_equal(straight, resumed)
    a = models.load_checkpoint(tmp / "straight" / "best.pt")
    b = models.load_checkpoint(tmp / "resumed" / "best.pt")
    assert a["epoch"] == b["epoch"] and all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_nan_loss_stops_with_a_clear_error(job):
    args, tmp = job
    args["config"]["training"]["lr"] = 1e12
    args["config"]["training"]["optimizer"] = "sgd"
    with pytest.raises(FloatingPointError, match="lower training.lr"):
        run(args, tmp / "nan")


def test_augmentation_is_seeded_and_geometric():
    batch = torch.rand(4, 1, 16, 16)
    settings = {"rotation_degrees": 40, "hflip": True, "max_scale": 1.5}
    a = training.augment(batch, torch.Generator().manual_seed(1), settings)
    b = training.augment(batch, torch.Generator().manual_seed(1), settings)
    assert torch.equal(a, b) and a.shape == batch.shape
    identity = training.augment(batch, torch.Generator().manual_seed(1),
                                {"rotation_degrees": 0, "hflip": False, "max_scale": 1.0})
    torch.testing.assert_close(identity, batch, atol=1e-5, rtol=0)


def test_checkpoint_that_would_execute_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": models.CHECKPOINT_FORMAT, "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="cannot load checkpoint safely"):
        models.load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "evil.pt").read_bytes()[:40])
    with pytest.raises(InputError, match="truncated, corrupt"):
        models.load_checkpoint(tmp_path / "cut.pt")
