"""Training: outputs, best-epoch rule, determinism, resume after a kill, bad losses,
the device input pipeline (augmentation) and the acceleration switches."""

import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from spinedx import config as configuration
from spinedx.errors import InputError
from spinedx.imaging import augmentation
from spinedx.imaging.cache import write_cache
from spinedx.models import backbones, checkpoints, device
from spinedx.splitting import write_folds
from spinedx.stages import training
from spinedx.stages.inference import score_folds


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
    checkpoint = checkpoints.load_checkpoint(tmp / "m" / "best.pt")
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
    assert table.prob_schwannoma.between(0, 1).all() and len(table) == 2 * (4 * 2 + 4 * 2)
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
    a = checkpoints.load_checkpoint(tmp / "a" / "best.pt")["state_dict"]
    b = checkpoints.load_checkpoint(tmp / "b" / "best.pt")["state_dict"]
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
    a = checkpoints.load_checkpoint(tmp / "straight" / "best.pt")
    b = checkpoints.load_checkpoint(tmp / "resumed" / "best.pt")
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
    a = augmentation.augment(batch, torch.Generator().manual_seed(1), settings)
    b = augmentation.augment(batch, torch.Generator().manual_seed(1), settings)
    assert torch.equal(a, b) and a.shape == batch.shape
    identity = augmentation.augment(batch, torch.Generator().manual_seed(1),
                                {"rotation_degrees": 0, "hflip": False, "max_scale": 1.0})
    torch.testing.assert_close(identity, batch, atol=1e-5, rtol=0)


def test_checkpoint_that_would_execute_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="cannot load checkpoint safely"):
        checkpoints.load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "evil.pt").read_bytes()[:40])
    with pytest.raises(InputError, match="truncated, corrupt"):
        checkpoints.load_checkpoint(tmp_path / "cut.pt")


# --- input pipeline and acceleration ---------------------------------------------------
AUGMENT = {"rotation_degrees": 40, "hflip": True, "max_scale": 1.5}


def test_augmentation_parameters_have_the_papers_distribution():
    angle, scale, flip = augmentation.augmentation_parameters(20000, torch.Generator().manual_seed(0), AUGMENT)
    degrees = torch.rad2deg(angle)
    assert degrees.min() >= -40 and degrees.max() <= 40 and scale.min() >= 1 and scale.max() <= 1.5
    # Uniform: mean and variance of U(-40, 40) and U(1, 1.5); flips a fair coin.
    assert abs(degrees.mean()) < 1 and abs(degrees.var() - 80**2 / 12) < 0.03 * 80**2 / 12
    assert abs(scale.mean() - 1.25) < 0.005 and abs((flip < 0).double().mean() - 0.5) < 0.015
    assert set(flip.tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("size", [32, 33])
def test_batched_augmentation_equals_torchvision_per_image(size):
    """The device path (one batched resampling) is the classic per-image CPU transform."""
    import torchvision.transforms.v2.functional as TF
    batch = torch.rand(6, 1, size, size)
    out = augmentation.augment(batch, torch.Generator().manual_seed(5), AUGMENT)
    angle, scale, flip = augmentation.augmentation_parameters(6, torch.Generator().manual_seed(5), AUGMENT)
    for i in range(6):
        expected = TF.affine(batch[i], angle=-math.degrees(angle[i]), translate=[0, 0], scale=float(scale[i]),
                             shear=[0.0, 0.0], interpolation=TF.InterpolationMode.BILINEAR)
        if flip[i] < 0:
            expected = TF.horizontal_flip(expected)
        torch.testing.assert_close(out[i], expected, atol=1e-4, rtol=0)


def test_deterministic_mode_forces_the_safe_settings():
    fast = {"deterministic": False, "precision": "bf16", "channels_last": True, "compile": True,
            "cudnn_benchmark": True}
    assert device.resolve_acceleration({**fast, "deterministic": True}, torch.device("cpu")) == device.Acceleration()
    assert device.resolve_acceleration(fast, torch.device("cpu")) == device.Acceleration("bf16", True, True, True)
    auto = {"deterministic": False, "precision": "auto", "channels_last": "auto", "compile": False,
            "cudnn_benchmark": "auto"}
    cpu = device.resolve_acceleration(auto, torch.device("cpu"))
    assert cpu.precision == ("bf16" if device.bf16_supported(torch.device("cpu")) else "fp32")
    assert cpu.channels_last and not cpu.cudnn_benchmark and not cpu.compile and not cpu.tf32


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_every_precision_trains_and_scores(job, precision):
    args, tmp = job
    args["config"]["training"].update(deterministic=False, precision=precision, channels_last=True, epochs=2)
    run(args, tmp / precision)
    history = pd.read_csv(tmp / precision / "history.tsv", sep="\t")
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    resolved = yaml.safe_load((tmp / precision / "config.yaml").read_text())
    assert resolved["acceleration"]["precision"] == precision and resolved["acceleration"]["channels_last"]
    checkpoint = checkpoints.load_checkpoint(tmp / precision / "best.pt")
    assert all(v.dtype != torch.bfloat16 and v.dtype != torch.float16 for v in checkpoint["state_dict"].values())
    table = score_folds([tmp / precision / "best.pt"], args["cache_path"], args["images_path"],
                        args["folds_path"], args["config"])
    assert table.prob_schwannoma.between(0, 1).all() and len(table) == 16


def test_channels_last_gives_the_contiguous_output():
    torch.manual_seed(0)
    model = backbones.build_model("resnet10t", 2, 1).eval()
    inputs = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        expected = model(inputs)
        fast = device.Acceleration(channels_last=True)
        actual = fast.prepare(model)(fast.layout(inputs))
    assert actual.is_contiguous() or actual.ndim == 2
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_compiled_model_trains(job):
    pytest.importorskip("torch._inductor")
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("torch.compile needs a C++ compiler")
    args, tmp = job
    args["config"]["training"].update(deterministic=False, precision="fp32", compile=True, epochs=1)
    run({**args, "backbone": "resnet10t"}, tmp / "compiled")
    state = checkpoints.load_checkpoint(tmp / "compiled" / "best.pt")["state_dict"]
    assert not any(key.startswith("_orig_mod") for key in state)  # loads into a plain model
    checkpoints.model_from_checkpoint(checkpoints.load_checkpoint(tmp / "compiled" / "best.pt"), torch.device("cpu"))
