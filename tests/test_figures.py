"""Figures stage on hand-made inputs: values drawn where they belong, files valid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from spinedx import config as configuration
from spinedx.stages import figures, report_metadata
from spinedx.errors import InputError
from spinedx.plotting import pyplot, save_figure

PDF, PNG = b"%PDF-", b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def study_config():
    return configuration.resolve({"backbones": ["netA", "netB"], "splits": {"n_folds": 2}})


def metrics_row(backbone, input_, tp, fp, fn, tn, auc):
    return {"backbone": backbone, "input": input_, "n_pos": tp + fn, "n_neg": tn + fp, "tp": tp, "fp": fp,
            "fn": fn, "tn": tn, "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
            "auc": auc, "auc_lo": auc - 0.1, "auc_hi": min(auc + 0.05, 1.0), "kappa": 0.5}


def test_roc_points_match_hand_computed_curve():
    fpr, tpr = figures.roc_points([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    # Thresholds 0.9, 0.6, 0.4, 0.1 (schwannoma = label 1 positive).
    assert list(zip(fpr, tpr)) == [(0, 0), (0, 0.5), (0.5, 0.5), (0.5, 1), (1, 1)]


def test_final_backbone_is_best_all_auc_with_ties_in_config_order(study_config):
    table3 = pd.DataFrame([metrics_row("netA", "ALL", 3, 1, 1, 3, 0.80), metrics_row("netB", "ALL", 3, 1, 1, 3, 0.90),
                           metrics_row("netA", "T1", 3, 1, 1, 3, 0.99)])
    assert figures.choose_final_backbone(table3, study_config) == "netB"
    table3.loc[0, "auc"] = 0.90
    assert figures.choose_final_backbone(table3, study_config) == "netA"
    chosen = configuration.resolve({"backbones": ["netA", "netB"], "figures": {"final_backbone": "netB"}})
    assert figures.choose_final_backbone(table3, chosen) == "netB"


def test_final_backbone_must_be_a_configured_backbone():
    with pytest.raises(configuration.ConfigError, match="figures.final_backbone"):
        configuration.resolve({"backbones": ["netA"], "figures": {"final_backbone": "inception_v3"}})


def test_fig6_confusion_matrix_puts_counts_in_the_right_cells(study_config):
    table3 = pd.DataFrame([metrics_row("netA", "ALL", tp=32, fp=7, fn=2, tn=27, auc=0.928)])
    cases = pd.DataFrame({"backbone": "netA", "input": "ALL", "model": "ensemble", "cohort": "external",
                          "label": [0, 0, 1, 1], "prob": [0.2, 0.7, 0.4, 0.9]})
    fig = figures.fig6_final_system(cases, table3, "netA", study_config)
    roc_ax, cm_ax = fig.axes[:2]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in cm_ax.texts}
    # Rows = true class (0 ependymoma, 1 schwannoma), columns = predicted; % of the true class.
    assert cells[(0, 0)] == "27\n(79.4%)" and cells[(0, 1)] == "7\n(20.6%)"
    assert cells[(1, 0)] == "2\n(5.9%)" and cells[(1, 1)] == "32\n(94.1%)"
    assert [t.get_text() for t in cm_ax.get_xticklabels()] == ["ependymoma", "schwannoma"]
    assert "schwannoma positive" in roc_ax.get_ylabel()
    assert "AUC 0.928 (0.83–0.98)" in [t.get_text() for t in roc_ax.get_legend().get_texts()]


def test_fig3_legend_takes_auc_from_table2(study_config, tmp_path):
    rows = []
    for backbone in ("netA", "netB"):
        for sequence in ("T1", "T2", "CE-T1"):
            for i, (label, prob) in enumerate([(0, 0.2), (0, 0.6), (1, 0.4), (1, 0.9)]):
                rows.append(dict(backbone=backbone, sequence=sequence, image_id=f"{sequence}{i}", model="ensemble",
                                 cohort="external", label=label, prob=prob))
    table2 = pd.DataFrame([metrics_row(b, s, 1, 1, 1, 1, 0.75) for b in ("netA", "netB") for s in ("T1", "T2", "CE-T1")])
    fig = figures.fig3_roc_backbones(pd.DataFrame(rows), table2, study_config)
    assert len(fig.axes) == 3
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["netA\nAUC 0.750 (0.65–0.80)", "netB\nAUC 0.750 (0.65–0.80)"]
    paths = save_figure(fig, tmp_path / "fig3")
    assert paths[0].read_bytes()[:5] == PDF and paths[1].read_bytes()[:8] == PNG
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(InputError, match="expected one row for backbone netB, input T2"):
        figures.fig3_roc_backbones(pd.DataFrame(rows), table2.drop(index=4), study_config)


def test_training_curves_mark_the_selected_epoch(tmp_path):
    histories = []
    for fold in (0, 1):
        model_dir = tmp_path / f"fold{fold}"
        model_dir.mkdir()
        pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.7, 0.5, 0.4], "train_accuracy": [0.5, 0.7, 0.8],
                      "val_loss": [0.7, 0.6, 0.65], "val_accuracy": [0.5, 0.75 + fold / 10, 0.7],
                      "selected": [False, True, False]}).to_csv(model_dir / "history.tsv", sep="\t", index=False)
        (model_dir / "config.yaml").write_text(yaml.safe_dump({"job": {"backbone": "netA", "sequence": "T1", "fold": fold}}))
        histories.append(model_dir / "history.tsv")
    table = figures.read_histories(histories)
    fig = figures.training_curves(table, "netA", "T1")
    accuracy_ax = fig.axes[1]
    stars = [line for line in accuracy_ax.lines if line.get_marker() == "*"]
    assert [(list(s.get_xdata()), list(s.get_ydata())) for s in stars] == [([2], [0.75]), ([2], [0.85])]
    (tmp_path / "fold1/config.yaml").unlink()
    with pytest.raises(InputError, match="fold1/history.tsv"):
        figures.read_histories(histories)


def test_cohort_table_counts_patients_images_age_and_sex(config):
    cases = pd.DataFrame({"patient_id": ["A", "B", "C", "D"], "diagnosis": ["ependymoma", "ependymoma", "schwannoma", "schwannoma"],
                          "cohort": ["internal", "internal", "internal", "external"], "age": [40, 60, 70, None],
                          "sex": ["M", "f", "F", ""]})
    images = pd.DataFrame({"patient_id": ["A", "A", "B", "C", "D"], "sequence": ["T1", "T2", "T1", "CE-T1", "T2"]})
    table = figures.cohort_table(cases, images, config).set_index(["cohort", "diagnosis"])
    row = table.loc[("internal", "ependymoma")]
    assert (row.patients, row.images_T1, row.images_T2, row["images_CE-T1"], row.images_total) == (2, 2, 1, 0, 3)
    assert (row.age, row.male, row.female, row["male:female"]) == ("50 ± 14", 1, 1, "1:1")
    assert table.loc[("external", "schwannoma"), "age"] == "n/a"
    assert table.loc[("external", "schwannoma"), "sex_unknown"] == 1
    assert table.loc[("all", "all"), "patients"] == 4 and table.loc[("all", "all"), "images_total"] == 5


def test_report_metadata_writes_resolved_config_and_versions(config, tmp_path):
    report_metadata.main_stage(config, tmp_path / "config.yaml", tmp_path / "versions.csv")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == config
    versions = pd.read_csv(tmp_path / "versions.csv").set_index("software")["version"]
    from importlib.metadata import version
    assert versions["torch"] == version("torch") and versions["grad-cam"] == "1.5.7"


def test_one_style_for_every_figure():
    plt = pyplot()
    assert plt.rcParams["axes.prop_cycle"].by_key()["color"][0] == "#0072B2"
    assert plt.rcParams["pdf.fonttype"] == 42 and np.isclose(plt.rcParams["font.size"], 8)
