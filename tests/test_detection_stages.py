"""The detection stages on hand-made volumes, maps and marks: what each stage writes, and
that it uses stats/froc.py's matching and metrics the way the module documents (numbers
pinned by hand here; the metrics themselves are pinned in tests/test_froc.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from spinedx import config as configuration
from spinedx import paths
from spinedx.errors import InputError
from spinedx.imaging.detection_cache import VolumeCache, read_maps, write_maps
from spinedx.models.checkpoints import load_checkpoint
from spinedx.readers.bundle import apply_detection_bundle, verify
from spinedx.readers.nifti import write_nifti
from spinedx.readers.volume import Volume
from spinedx.splitting import write_folds
from spinedx.stages import (
    detection_audit,
    detection_bundle,
    detection_candidates,
    detection_cases,
    detection_evaluation,
    detection_figures,
    detection_inference,
    detection_preprocessing,
    detection_provenance,
    detection_readers,
    detection_training,
)

SHAPE = (8, 16, 16)
AFFINE = np.array([[0.0, 0.0, 1.0, -8.0], [0.0, 1.0, 0.0, -8.0], [2.0, 0.0, 0.0, 0.0], [0, 0, 0, 1.0]])
SEQUENCES = {"black_blood": ["BB"], "bright_blood": ["DB"]}


def settings(**sections):
    base = {"task": {"type": "detection"}, "sequences": SEQUENCES,
            "detection": {"models": {"dm": {"network": "deepmedic", "patch": [3, 3, 3], "window": [9, 18, 18],
                                            "options": {"normal_widths": [2], "fc_widths": [2]}}},
                          "inputs": {"both": ["black_blood", "bright_blood"]}},
            "evaluation": {"bootstrap_replicates": 0}, "splits": {"n_folds": 2},
            "training": {"epochs": 2, "batch_size": 4, "device": "cpu", "threads": 1}}
    return configuration.resolve(configuration.deep_merge(base, sections))


def lesions_volume(*boxes):
    labels = np.zeros(SHAPE, np.uint16)
    for value, box in enumerate(boxes, start=1):
        labels[box] = value
    return labels


# Case A: lesion 1 a 2x2x2 cube, lesion 2 one voxel. Case B: none. Case C: one voxel.
LESIONS = {
    "A": lesions_volume(np.s_[2:4, 4:6, 4:6], np.s_[6, 12, 12]),
    "B": lesions_volume(),
    "C": lesions_volume(np.s_[4, 8, 8]),
}
COHORTS = {"A": "internal", "B": "internal", "C": "external"}


@pytest.fixture
def study(tmp_path):
    """Images (head + bright lesions), labels and cases.csv of patients A, B, C; the
    detection_cases stage's tables."""
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    z, y, x = np.indices(SHAPE)
    head = ((y - 7.5) / 7) ** 2 + ((x - 7.5) / 7) ** 2 <= 1
    for patient, labels in LESIONS.items():
        base = np.where(head, 100.0, 1.0) + rng.normal(0, 1, SHAPE)
        base[labels > 0] = 250.0
        write_nifti(Volume(base.astype(np.float32), AFFINE), images / patient / "BB" / "image.nii.gz")
        write_nifti(Volume((base * 1.5).astype(np.float32), AFFINE), images / patient / "DB" / "image.nii.gz")
        write_nifti(Volume(labels, AFFINE), images / patient / "lesions.nii.gz")
    cases = tmp_path / "cases.csv"
    pd.DataFrame({"patient_id": list(LESIONS), "cohort": [COHORTS[p] for p in LESIONS],
                  "n_lesions": [2, 0, 1], "age": [50, 60, 70]}).to_csv(cases, index=False)
    out = tmp_path / "detection"
    detection_cases.main_stage(settings(), images, cases, out / "cases.parquet", out / "lesions.parquet")
    return tmp_path, out


def test_cases_stage_reads_and_checks_every_volume(study, tmp_path):
    root, out = study
    cases = pd.read_parquet(out / "cases.parquet")
    assert cases["patient_id"].tolist() == ["A", "B", "C"] and cases["n_lesions"].tolist() == [2, 0, 1]
    assert cases["has_lesions"].tolist() == [True, False, True] and cases["age"].tolist() == [50, 60, 70]
    assert (cases["shape_z"] == SHAPE[0]).all() and (cases["spacing_z"] == 2.0).all()
    np.testing.assert_array_equal(np.reshape(cases.loc[0, "affine"], (4, 4)), AFFINE)
    assert cases.loc[0, "path_lesions"].endswith("A/lesions.nii.gz") and len(cases.loc[0, "sha256_bright_blood"]) == 64
    lesions = pd.read_parquet(out / "lesions.parquet")
    assert lesions["size_voxels"].tolist() == [8, 1, 1] and lesions["label"].tolist() == [1, 2, 1]
    assert lesions.loc[0, "equivalent_diameter_mm"] == pytest.approx((6 * 16 / math.pi) ** (1 / 3))
    # the cases table's count must match the labels, and every volume must share one grid
    pd.DataFrame({"patient_id": ["A"], "cohort": ["internal"], "n_lesions": [3]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(InputError, match="n_lesions 3"):
        detection_cases.main_stage(settings(), root / "images", tmp_path / "x.csv", tmp_path / "c", tmp_path / "l")
    moved = AFFINE.copy()
    moved[0, 3] += 5
    write_nifti(Volume(LESIONS["A"], moved), root / "images/A/lesions.nii.gz")
    with pytest.raises(InputError, match="away from its image"):
        detection_cases.main_stage(settings(), root / "images", tmp_path / "x.csv", tmp_path / "c", tmp_path / "l")


def hand_maps(criterion_probe=False):
    """A: 0.875 over lesion 1 exactly, 0.625 on a blob far from every lesion, nothing on
    lesion 2. B: 0.375 on a blob (a false positive in a case without lesions). C: 0.75 on a
    5x5x5 block centred on its one-voxel lesion (IoU 1/125: a miss and a false positive
    by overlap, a hit by centre)."""
    maps = {p: np.zeros(SHAPE, np.float32) for p in LESIONS}
    maps["A"][2:4, 4:6, 4:6] = 0.875
    maps["A"][5:7, 1:3, 12:14] = 0.625
    maps["B"][3, 3:5, 3:5] = 0.375
    maps["C"][2:7, 6:11, 6:11] = 0.75
    return maps


def run_candidates(out, tmp_path, **detection):
    maps = tmp_path / "maps.npz"
    write_maps(maps, hand_maps(), {"model": "dm", "input": "both",
                                   "maps": {"A": "oof", "B": "oof", "C": "ensemble"}})
    config = settings(detection=detection)
    detection_candidates.main_stage(config, maps, out / "cases.parquet", tmp_path / "cand.parquet",
                                    tmp_path / "hits.parquet")
    return pd.read_parquet(tmp_path / "cand.parquet"), pd.read_parquet(tmp_path / "hits.parquet")


def test_candidates_stage_matches_by_overlap_or_centre(study, tmp_path):
    _, out = study
    candidates, hits = run_candidates(out, tmp_path)
    table = candidates.set_index(["case_id", "score"])
    assert table.loc[("A", 0.875), "outcome"] == "true_positive" and table.loc[("A", 0.875), "iou"] == 1.0
    assert table.loc[("A", 0.625), "outcome"] == "false_positive"
    assert table.loc[("B", 0.375), "outcome"] == "false_positive" and table.loc[("B", 0.375), "size_voxels"] == 4
    assert table.loc[("C", 0.75), "outcome"] == "false_positive"  # IoU 1/125 < 0.1
    assert set(candidates["map"]) == {"oof", "ensemble"} and (candidates["model"] == "dm").all()
    assert hits["detected_by_score"].fillna(-1).tolist() == [0.875, -1, -1]
    assert hits["label"].tolist() == [1, 2, 1]
    # world position of a candidate = its centroid through the volume's affine
    a = table.loc[("A", 0.875)]
    np.testing.assert_allclose(a[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float),
                               Volume(LESIONS["A"], AFFINE).voxel_to_world([2.5, 4.5, 4.5]))
    candidates, hits = run_candidates(out, tmp_path, matching={"criterion": "centre"})
    assert candidates.set_index(["case_id", "score"]).loc[("C", 0.75), "outcome"] == "true_positive"
    candidates, _ = run_candidates(out, tmp_path, candidates={"threshold": 0.65})
    assert sorted(candidates["score"]) == [0.75, 0.875]
    candidates, _ = run_candidates(out, tmp_path, candidates={"min_size_voxels": 5})  # B's blob has 4 voxels
    assert sorted(candidates["score"]) == [0.625, 0.75, 0.875]


def write_marks(path, rows):
    pd.DataFrame(rows, columns=["reader", "patient_id", "x", "y", "z", "confidence"]).to_csv(path, index=False)


def test_readers_and_evaluation_stages(study, tmp_path):
    _, out = study
    run_candidates(out, tmp_path)
    # reader R1 marks C's lesion (in LPS mm) and a false positive on C; R2 marks nothing
    volume = Volume(LESIONS["C"], AFFINE)
    lesion = volume.voxel_to_world([4, 8, 8])
    elsewhere = volume.voxel_to_world([1, 1, 1])
    write_marks(tmp_path / "marks.csv", [("R1", "C", *lesion, 5), ("R1", "C", *elsewhere, 2), ("R2", "C", *elsewhere, 1)])
    config = settings(detection_evaluation={"operating_point": {"fp_per_case": 0.5}, "size_bands_mm": [0, 3, 100]})
    detection_readers.main_stage(config, tmp_path / "marks.csv", out / "cases.parquet", tmp_path / "rm.parquet",
                                 tmp_path / "rl.parquet")
    marks = pd.read_parquet(tmp_path / "rm.parquet")
    assert marks.sort_values(["reader", "score"])["outcome"].tolist() == ["false_positive", "true_positive",
                                                                         "false_positive"]
    np.testing.assert_allclose(marks.loc[marks["score"] == 5, ["voxel_z", "voxel_y", "voxel_x"]].to_numpy(),
                               [[4, 8, 8]], atol=1e-9)
    tables = tmp_path / "tables"
    detection_evaluation.main_stage(config, out / "cases.parquet", [tmp_path / "cand.parquet"],
                                    [tmp_path / "hits.parquet"], tmp_path / "rm.parquet", tmp_path / "rl.parquet",
                                    tables)
    summary = pd.read_csv(tables / paths.table_file(paths.DETECTION_SUMMARY)).set_index("cohort")
    # internal (A, B): FROC 0.875 TP, 0.625 FP (1/2 FP per case), 0.375 FP (1); at most 0.5
    # FP per case the best sensitivity (1/2) is first reached at 0.875: threshold just below it
    threshold = summary.loc["internal", "threshold"]
    assert threshold == np.nextafter(0.875, -math.inf)
    assert summary.loc["internal", "lesion_sensitivity"] == 0.5 and summary.loc["internal", "fp_per_case"] == 0
    assert summary.loc["internal", "sensitivity_at_1_fp_per_case"] == 0.5 and summary.loc["internal", "cpm"] == 0.5
    # external (C): its only candidate (0.75) is a false positive below the threshold
    assert summary.loc["external", "lesion_sensitivity"] == 0 and summary.loc["external", "n_fp"] == 0
    assert summary.loc["external", "sensitivity_at_1_fp_per_case"] == 0
    assert math.isnan(summary.loc["internal", "lesion_sensitivity_lo"])  # no bootstrap asked
    bands = pd.read_csv(tables / paths.table_file(paths.DETECTION_SIZE_BANDS))
    internal = bands[bands["cohort"] == "internal"].set_index("band")
    assert internal["n_lesions"].tolist() == [1, 1] and internal["sensitivity"].tolist() == [0.0, 1.0]
    readers = pd.read_csv(tables / paths.table_file(paths.DETECTION_READERS)).set_index("reader")
    assert readers.loc["R1", "reader_sensitivity"] == 1 and readers.loc["R1", "reader_fp_per_case"] == 1
    assert readers.loc["R2", "reader_sensitivity"] == 0 and readers.loc["R1", "model_sensitivity"] == 0
    assert readers.loc["R1", "difference"] == -1
    points = pd.read_csv(tables / paths.table_file(paths.DETECTION_OPERATING_POINTS))
    assert points.loc[0, "threshold"] == threshold and points.loc[0, "internal_sensitivity"] == 0.5
    # audit mode: the released threshold is applied, not chosen again
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"detection": {"operating_points": [{"model": "dm", "input": "both",
                                                                    "threshold": 0.5}]}}))
    detection_evaluation.main_stage(config, out / "cases.parquet", [tmp_path / "cand.parquet"],
                                    [tmp_path / "hits.parquet"], None, None, tables, card)
    summary = pd.read_csv(tables / paths.table_file(paths.DETECTION_SUMMARY)).set_index("cohort")
    assert summary.loc["external", "threshold"] == 0.5 and summary.loc["external", "n_fp"] == 1
    assert pd.read_csv(tables / paths.table_file(paths.DETECTION_READERS)).empty
    with pytest.raises(InputError, match="outside|not external"):
        write_marks(tmp_path / "marks.csv", [("R1", "A", 0, 0, 0, 5)])
        detection_readers.main_stage(config, tmp_path / "marks.csv", out / "cases.parquet", tmp_path / "x",
                                     tmp_path / "y")


# --- networks: preprocessing, training, inference, release --------------------------------------


@pytest.fixture
def trained(study, tmp_path):
    """Preprocessed volumes, 2 folds (A | B), one tiny DeepMedic per fold."""
    root, out = study
    config = settings()
    detection_preprocessing.main_stage(config, out / "cases.parquet", out / "volumes.npz", out / "volumes.parquet")
    write_folds(pd.DataFrame({"patient_id": ["A", "B"], "diagnosis": ["x", "y"], "label": [1, 0], "fold": [0, 1]}),
                out / "folds.tsv")
    torch.manual_seed(0)
    for fold in (0, 1):
        # fold 0 validates on A (with lesions); fold 1 on B (none): refused
        if fold == 1:
            with pytest.raises(InputError, match="hold no lesion"):
                detection_training.train(config, out / "volumes.npz", out / "cases.parquet", out / "folds.tsv",
                                         "dm", "both", 1, out / "models/fold1")
            continue
        detection_training.train(config, out / "volumes.npz", out / "cases.parquet", out / "folds.tsv", "dm", "both",
                                 fold, out / f"models/fold{fold}")
    return config, root, out


def test_preprocessing_training_and_checkpoint(trained):
    config, _, out = trained
    cache = VolumeCache(out / "volumes.npz")
    assert cache.sequences == ["black_blood", "bright_blood"] and cache.patients == ["A", "B", "C"]
    table = pd.read_parquet(out / "volumes.parquet")
    assert len(table) == 6 and (table["p_high"] > table["p_low"]).all()
    folder = out / "models/fold0"
    assert {p.name for p in folder.iterdir()} == {paths.CHECKPOINT_FILE, paths.HISTORY_FILE, paths.JOB_CONFIG_FILE}
    checkpoint = load_checkpoint(folder / paths.CHECKPOINT_FILE)
    assert (checkpoint["task"], checkpoint["model"], checkpoint["input"], checkpoint["fold"]) == ("detection", "dm",
                                                                                                  "both", 0)
    assert checkpoint["sequences"] == ["black_blood", "bright_blood"] and checkpoint["in_channels"] == 2
    assert checkpoint["intensity"] == {"kind": "percentile", "low": 0.5, "high": 99.5, "region": "volume"}
    history = pd.read_csv(folder / paths.HISTORY_FILE, sep="\t")
    assert history["epoch"].tolist() == [1, 2] and history["selected"].sum() == 1
    best = history.loc[history["selected"]].iloc[0]
    assert best["val_metric"] == history["val_metric"].max()
    assert checkpoint["epoch"] == best["epoch"] and checkpoint["val_metric"] == best["val_metric"]


def test_ties_keep_the_earlier_epoch_and_only_validated_epochs_count(study, tmp_path, monkeypatch):
    _, out = study
    config = settings(training={"epochs": 3}, detection={"selection": {"every": 2}})
    detection_preprocessing.main_stage(config, out / "cases.parquet", out / "volumes.npz", out / "volumes.parquet")
    write_folds(pd.DataFrame({"patient_id": ["A", "B"], "diagnosis": ["x", "y"], "label": [1, 0], "fold": [0, 1]}),
                out / "folds.tsv")
    validated = []

    def constant(self):
        validated.append(len(self.history) + 1)
        return {"val_metric": 0.5, "val_cpm": 0.5, "val_sensitivity_at_fp": 0.5, "val_lesions": 2,
                "val_candidates": 0}

    monkeypatch.setattr(detection_training.DetectionTrainer, "validate", constant)
    detection_training.train(config, out / "volumes.npz", out / "cases.parquet", out / "folds.tsv", "dm", "both", 0,
                             tmp_path / "m")
    assert validated == [2, 3]  # every 2nd epoch and the last
    history = pd.read_csv(tmp_path / "m" / paths.HISTORY_FILE, sep="\t")
    assert history["val_metric"].isna().tolist() == [True, False, False]
    assert history.loc[history["selected"], "epoch"].tolist() == [2]


def test_inference_gives_out_of_fold_and_ensemble_maps_on_the_original_grid(trained, tmp_path):
    config, _, out = trained
    checkpoint = out / "models/fold0" / paths.CHECKPOINT_FILE
    # the same model twice as folds 0 and 1: the ensemble equals each fold's map
    second = load_checkpoint(checkpoint)
    second["fold"] = 1
    torch.save(second, tmp_path / "fold1.pt")
    detection_inference.main_stage(config, [checkpoint, tmp_path / "fold1.pt"], out / "volumes.npz",
                                   out / "cases.parquet", out / "folds.tsv", "dm", "both", tmp_path / "maps.npz")
    meta, maps = read_maps(tmp_path / "maps.npz")
    assert meta["maps"] == {"A": "oof", "B": "oof", "C": "ensemble"} and meta["n_folds"] == 2
    assert all(maps[p].shape == SHAPE for p in "ABC")
    assert 0 <= float(maps["C"].min()) and float(maps["C"].max()) <= 1
    with pytest.raises(InputError, match="folds 0..1"):
        detection_inference.main_stage(config, [checkpoint, checkpoint], out / "volumes.npz", out / "cases.parquet",
                                       out / "folds.tsv", "dm", "both", tmp_path / "x.npz")
    with pytest.raises(InputError, match="not of dm x bright"):
        detection_inference.main_stage(config, [checkpoint], out / "volumes.npz", out / "cases.parquet", None, "dm",
                                       "bright", tmp_path / "x.npz")


def test_bundle_audit_check_and_provenance(trained, tmp_path):
    config, root, out = trained
    checkpoint = out / "models/fold0" / paths.CHECKPOINT_FILE
    second = load_checkpoint(checkpoint)
    second["fold"] = 1
    torch.save(second, tmp_path / "fold1.pt")
    pd.DataFrame([{"model": "dm", "input": "both", "threshold": 0.8, "chosen_on": "internal"}]).to_csv(
        tmp_path / "points.csv", index=False)
    pd.DataFrame([{"model": "dm", "input": "both", "cohort": "external", "cpm": 0.5}]).to_csv(
        tmp_path / "summary.csv", index=False)
    bundle = tmp_path / "bundle"
    card = detection_bundle.write_bundle([checkpoint, tmp_path / "fold1.pt"], out / "cases.parquet",
                                         tmp_path / "points.csv", tmp_path / "summary.csv", config, bundle)
    assert verify(bundle)["backbones"] == ["dm"]
    assert card["sequences"] == {"both": ["black_blood", "bright_blood"]}
    assert card["detection"]["operating_points"][0]["threshold"] == 0.8
    assert card["detection"]["intensity_recipe"]["high"] == 99.5
    cases = pd.read_parquet(out / "cases.parquet")
    internal = cases[cases["cohort"] == "internal"]
    assert set(card["training_images_sha256"]) == set(internal[["sha256_black_blood", "sha256_bright_blood",
                                                                "sha256_lesions"]].to_numpy().ravel())
    assert "## Limitations" in (bundle / paths.BUNDLE_CARD_MD).read_text()
    # audit: a cohort holding a training volume is refused, the external patient alone passes
    with pytest.raises(InputError, match="training volumes"):
        detection_audit.check_cohort(config, bundle, out / "cases.parquet")
    cases[cases["cohort"] == "external"].to_parquet(tmp_path / "external.parquet")
    detection_audit.main_stage(config, bundle, tmp_path / "external.parquet", tmp_path / "verified.json")
    assert json.loads((tmp_path / "verified.json").read_text())["cohort"]["patients"] == 1
    # the auditor's config takes the models' settings from the card, keeps its own evaluation
    auditor = settings(sequences={"black_blood": ["bb"], "bright_blood": ["db"]},
                       detection_evaluation={"size_bands_mm": [0, 1, 2]})
    apply_detection_bundle(auditor, card["config"])
    assert auditor["sequences"]["black_blood"] == ["BB", "bb"]
    assert auditor["detection"]["models"] == config["detection"]["models"]
    assert auditor["detection_evaluation"]["size_bands_mm"] == [0, 1, 2]
    (tmp_path / "results/tables").mkdir(parents=True)
    (tmp_path / "results/tables/t.csv").write_text("a\n1\n")
    record = detection_provenance.main_stage(config, [], out / "cases.parquet", root / "cases.csv", None,
                                             tmp_path / "results", tmp_path / "results/provenance.json")
    assert len(record["inputs"]["volumes"]) == 9 and record["outputs"][0]["path"] == "tables/t.csv"


def test_figures_stage_draws_every_figure(study, tmp_path):
    _, out = study
    run_candidates(out, tmp_path)
    write_maps(tmp_path / "maps.npz", hand_maps(), {"model": "dm", "input": "both",
                                                     "maps": {"A": "oof", "B": "oof", "C": "ensemble"}})
    config = settings()
    tables = tmp_path / "tables"
    detection_evaluation.main_stage(config, out / "cases.parquet", [tmp_path / "cand.parquet"],
                                    [tmp_path / "hits.parquet"], None, None, tables)
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.5, 0.4], "val_metric": [0.2, 0.3],
                            "selected": [False, True]})
    for k in (0, 1):
        history.to_csv(tmp_path / f"h{k}.tsv", sep="\t", index=False)
    figures = tmp_path / "figures"
    detection_figures.main_stage(config, out / "cases.parquet", out / "lesions.parquet", tables,
                                 [tmp_path / "cand.parquet"], [tmp_path / "hits.parquet"], [tmp_path / "maps.npz"],
                                 [tmp_path / "h0.tsv", tmp_path / "h1.tsv"], figures, tmp_path / "cohort.csv")
    for stem in (paths.DETECTION_FROC_FIGURE, paths.detection_examples_figure("dm", "both"),
                 paths.detection_curves_figure("dm", "both")):
        pdf, png = paths.figure_files(str(figures / stem))
        assert open(pdf, "rb").read(5) == b"%PDF-" and open(png, "rb").read(4) == b"\x89PNG"
    cohort = pd.read_csv(tmp_path / "cohort.csv").set_index("cohort")
    assert cohort.loc["all", "lesions"] == 3 and cohort.loc["internal", "patients_with_lesions"] == 1
    with pytest.raises(InputError, match="histories"):
        detection_figures.main_stage(config, out / "cases.parquet", out / "lesions.parquet", tables,
                                     [tmp_path / "cand.parquet"], [tmp_path / "hits.parquet"], [tmp_path / "maps.npz"],
                                     [tmp_path / "h0.tsv"], figures, tmp_path / "cohort.csv")


def test_verify_expects_the_released_model_input_pairs_not_the_full_grid(tmp_path):
    # A U-Net trained on one of two inputs: the card's operating points name the 3 pairs.
    from spinedx.io import sha256_file
    from spinedx.readers.bundle import BUNDLE_FORMAT

    pairs = [("dm", "both"), ("dm", "bright"), ("unet", "both")]
    files = [paths.bundle_model(m, i, 0) for m, i in pairs]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())

    def release(models):
        card = {"format": BUNDLE_FORMAT, "backbones": ["dm", "unet"], "sequences": {"both": [], "bright": []},
                "n_folds": 1, "models": [{"file": f} for f in models],
                "detection": {"operating_points": [{"model": m, "input": i} for m, i in pairs]}}
        (tmp_path / paths.BUNDLE_CARD_JSON).write_text(json.dumps(card))
        names = [*models, paths.BUNDLE_CARD_JSON]
        (tmp_path / paths.BUNDLE_MANIFEST).write_text("".join(f"{sha256_file(tmp_path / n)}  {n}\n" for n in names))

    release(files)
    assert len(verify(tmp_path)["models"]) == 3
    (tmp_path / files[-1]).unlink()
    release(files[:-1])
    with pytest.raises(InputError, match="do not match"):
        verify(tmp_path)
