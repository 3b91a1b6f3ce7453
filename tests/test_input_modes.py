"""Input modes of volume studies: model names, what a bundle records of them, the 3-D
networks and their inputs, and the comparison of modes on the same cases (pinned against
scikit-learn and the statistics library's own functions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO
from spinedx import config as configuration
from spinedx import paths
from spinedx.errors import InputError
from spinedx.input_modes import model_mode, model_names, released_settings

VOLUME = {"data": {"format": "volume"}, "classes": ["osteoporotic", "malignant"], "sequences": {"CT": ["CT"]},
          "input_modes": ["2d", "2.5d", "3d"], "backbones": ["resnet10t", "mobilenetv3_small_050"],
          "networks_3d": ["classifier"]}


def test_model_names_are_mode_times_network_in_config_order():
    config = configuration.resolve(VOLUME)
    assert model_names(config) == ["2d_resnet10t", "2d_mobilenetv3_small_050", "2.5d_resnet10t",
                                   "2.5d_mobilenetv3_small_050", "3d_classifier"]
    assert model_mode("2.5d_mobilenetv3_small_050") == ("2.5d", "mobilenetv3_small_050")
    assert paths.volume_model_name("3d", "resnet10") == "3d_resnet10"
    with pytest.raises(ValueError, match="unknown input mode"):
        model_mode("4d_resnet10")
    # labelme studies: the backbones, whatever input_modes says.
    assert model_names(configuration.resolve({"backbones": ["resnet10t"]})) == ["resnet10t"]


def test_a_bundle_records_what_rebuilds_its_model_names():
    """Audit mode copies these values into the auditor's config: the same names again."""
    from spinedx.readers.bundle import apply_bundle

    config = configuration.resolve(VOLUME)
    released = released_settings(["2.5d_resnet10t", "3d_classifier"], config)
    assert released == {"backbones": ["resnet10t"], "networks_3d": ["classifier"], "input_modes": ["2.5d", "3d"]}
    auditor = configuration.resolve({"backbones": ["other"]})
    card = {"config": {**{s: config[s] for s in ("classes", "sequences", "preprocessing", "decision", "splits",
                                                  "training")}, **released, "data_format": "volume"}}
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        Path(folder, paths.BUNDLE_CARD_JSON).write_text(json.dumps(card))
        auditor["audit"]["bundle"] = folder
        apply_bundle(auditor)
    assert auditor["data"]["format"] == "volume"
    assert model_names(auditor) == ["2.5d_resnet10t", "3d_classifier"]
    assert released_settings(["resnet10t"], configuration.resolve({})) == {"backbones": ["resnet10t"]}


def test_final_backbone_of_a_volume_study_names_a_model():
    configuration.resolve({**VOLUME, "figures": {"final_backbone": "2.5d_resnet10t"}})
    with pytest.raises(configuration.ConfigError, match="not in backbones"):
        configuration.resolve({**VOLUME, "figures": {"final_backbone": "3d_resnet10"}})


@pytest.mark.parametrize("network", ["resnet10", "densenet121", "classifier"])
def test_3d_networks_classify_sub_volumes_and_have_a_cam_layer(network):
    from spinedx.models.volumetric import VolumeJob, gradcam_layer

    torch.manual_seed(0)
    job = VolumeJob.of(f"3d_{network}")
    side = 32 if network == "densenet121" else 16  # DenseNet's transitions need 32 voxels
    model = job.build((2, side, side, side), n_classes=2).eval()
    assert model(torch.zeros(3, 2, side, side, side)).shape == (3, 2)
    _, name = gradcam_layer(model, (2, side, side, side))
    assert name == {"resnet10": "layer4", "densenet121": "features", "classifier": "net"}[network]


def test_sub_volume_augmentation_is_seeded_by_the_job_generator():
    from spinedx.models.volumetric import VolumeInputs

    settings = {"rotation_degrees": 20, "max_scale": 1.2, "hflip": True, "mean": 0.5, "std": 0.5}
    batch = torch.rand(4, 2, 8, 10, 12)
    inputs = VolumeInputs("3d", settings, torch.device("cpu"))
    first = inputs(batch, True, torch.Generator().manual_seed(5))
    again = VolumeInputs("3d", settings, torch.device("cpu"))(batch, True, torch.Generator().manual_seed(5))
    other = inputs(batch, True, torch.Generator().manual_seed(6))
    assert type(first) is torch.Tensor and first.shape == batch.shape
    assert torch.equal(first, again) and not torch.equal(first, other)
    # Without training: normalisation only.
    assert torch.equal(inputs(batch, False, torch.Generator()), (batch - 0.5) / 0.5)


def case_predictions(seed=0, n=40):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    rows = []
    for name, noise in (("2d_resnet10t", 1.2), ("2.5d_resnet10t", 0.7), ("3d_classifier", 2.0)):
        for cohort, model in (("external", "ensemble"), ("internal", "oof")):
            score = 1 / (1 + np.exp(-(labels * 2 - 1 + rng.normal(0, noise, n))))
            rows.append(pd.DataFrame({"backbone": name, "input": "CT", "model": model,
                                      "patient_id": [f"P{i:02d}" for i in range(n)], "cohort": cohort,
                                      "label": labels, "prob_osteoporotic": 1 - score, "prob_malignant": score,
                                      "n_images": 3}))
            rows.append(rows[-1].assign(input="ALL"))
    return pd.concat(rows, ignore_index=True)


def comparison_config():
    return configuration.resolve({**VOLUME, "backbones": ["resnet10t"], "evaluation": {"bootstrap_replicates": 300}})


def test_mode_table_matches_scikit_learn_and_delong():
    from sklearn.metrics import f1_score, recall_score, roc_auc_score

    from spinedx.stages.mode_comparison import compare
    from spinedx.stats.delong import auc_confidence_interval

    predictions = case_predictions()
    metrics, tests, curves = compare(predictions, comparison_config())
    # One sequence: ALL repeats CT and is left out.
    assert set(metrics.input) == {"CT"} and len(metrics) == 6 and set(curves) == {("external", "CT"), ("internal", "CT")}
    for row in metrics.itertuples():
        cases = predictions[(predictions.backbone == row.model) & (predictions.cohort == row.cohort)
                            & (predictions.input == "CT")].sort_values("patient_id")
        labels, probs = cases.label.to_numpy(), cases.prob_malignant.to_numpy()
        calls = (probs > 0.5).astype(int)
        assert row.auc == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
        delong = auc_confidence_interval(labels, probs)
        assert (row.auc_lo, row.auc_hi) == pytest.approx((delong["auc_lo"], delong["auc_hi"]), abs=1e-12)
        assert row.sensitivity == pytest.approx(recall_score(labels, calls), abs=1e-12)
        assert row.specificity == pytest.approx(recall_score(1 - labels, 1 - calls), abs=1e-12)
        assert row.f1 == pytest.approx(f1_score(labels, calls), abs=1e-12)
        assert row.f1_lo <= row.f1 <= row.f1_hi and row.mode == row.model.split("_")[0]
    # Pairs of different modes only, each with DeLong + two McNemar rows, Holm within metric.
    external = tests[tests.cohort == "external"]
    assert set(external.comparison) == {"2d_resnet10t vs 2.5d_resnet10t", "2d_resnet10t vs 3d_classifier",
                                        "2.5d_resnet10t vs 3d_classifier"}
    assert list(external.metric.value_counts().sort_index()) == [3, 3, 3]
    auc = external[external.metric == "auc"]
    assert (auc.p_adjusted >= auc.p).all() and (auc.test == "DeLong").all()


def test_modes_must_score_the_same_cases():
    from spinedx.stages.mode_comparison import compare

    predictions = case_predictions()
    dropped = predictions.drop(predictions[(predictions.backbone == "3d_classifier")
                                           & (predictions.patient_id == "P03")].index)
    with pytest.raises(InputError, match=r"\['P03'\] lack a prediction"):
        compare(dropped, comparison_config())


def test_roc_figure_is_drawn(tmp_path):
    from PIL import Image

    from spinedx.stages.mode_comparison import main_stage

    for name in ("2d_resnet10t", "2.5d_resnet10t", "3d_classifier"):
        predictions = case_predictions()
        predictions[predictions.backbone == name].to_parquet(tmp_path / f"{name}.parquet")
    main_stage(comparison_config(), sorted(tmp_path.glob("*.parquet")), tmp_path / "t.csv", tmp_path / "d.csv",
               tmp_path / "fig")
    assert Image.open(tmp_path / "fig.png").size[0] > 600
    assert (tmp_path / "fig.pdf").read_bytes()[:5] == b"%PDF-"


def test_the_readers_aiding_model_is_configurable_and_defaults_to_the_final_system():
    """reader_study.aiding_model (the vertebral CT demo: the paper's 2.5D model) replaces the
    final system as the model the readers are aided by and compared with; null keeps the
    final system (the best external ALL AUC, here 3d)."""
    from spinedx.final_system import aiding_model

    table3 = pd.DataFrame({"backbone": ["2d_resnet10t", "2.5d_resnet10t", "3d_classifier"], "input": "ALL",
                           "auc": [0.70, 0.80, 0.90]})
    volume = {**VOLUME, "backbones": ["resnet10t"]}
    assert aiding_model(table3, configuration.resolve(volume)) == "3d_classifier"
    chosen = configuration.resolve({**volume, "reader_study": {"aiding_model": "2.5d_resnet10t"}})
    assert aiding_model(table3, chosen) == "2.5d_resnet10t"
    with pytest.raises(configuration.ConfigError, match="reader_study.aiding_model names '3d_resnet10'"):
        configuration.resolve({**volume, "reader_study": {"aiding_model": "3d_resnet10"}})
    vertebral = configuration.load(REPO / "config/vertebral_ct.yaml")
    assert vertebral["reader_study"]["aiding_model"] == "2.5d_resnet10t"
    assert configuration.resolve({})["reader_study"]["aiding_model"] is None  # other studies: the final system
