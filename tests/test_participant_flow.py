"""Participant flow: the annotations stage records what it legitimately leaves out (and
still stops on bad input), and the flow table and diagram count what the records say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_labelme
from spinedx import config as configuration
from spinedx.errors import InputError
from spinedx.stages import annotations, participant_flow


@pytest.fixture
def study(tmp_path):
    """4 patients: P1 (internal) has T1 and T2, P2 (internal) only T1 plus an image
    without annotation, P3 (external) T1 and T2, P4 (external) no images at all."""
    images = tmp_path / "images"
    for patient, folders in (("P1", ("T1WI", "T2WI")), ("P2", ("T1WI",)), ("P3", ("T1WI", "T2WI"))):
        for folder in folders:
            write_labelme(images / patient / folder / f"{patient}_{folder}.json", f"{patient}_{folder}.png",
                          [[5, 4], [20, 18]])
    Image.fromarray(np.full((30, 40), 7, np.uint8)).save(images / "P2" / "T1WI" / "unannotated.png")
    cases = tmp_path / "cases.csv"
    pd.DataFrame({"patient_id": ["P1", "P2", "P3", "P4"], "diagnosis": ["ependymoma", "schwannoma"] * 2,
                  "cohort": ["internal", "internal", "external", "external"]}).to_csv(cases, index=False)
    return images, cases


def test_annotations_record_missing_sequences_and_unannotated_images(study, tmp_path):
    images, cases = study
    config = configuration.resolve({"sequences": {"T1": ["T1WI"], "T2": ["T2WI"]}})
    records = {}
    for sequence in ("T1", "T2"):
        out = tmp_path / f"{sequence}.parquet"
        excluded = tmp_path / f"{sequence}_excluded.csv"
        annotations.main_stage(config, images, cases, sequence, out, excluded)
        records[sequence] = pd.read_csv(excluded)
    t1, t2 = records["T1"], records["T2"]
    assert t1[t1["level"] == "patient"]["patient_id"].tolist() == ["P4"]
    assert t1[t1["level"] == "image"][["patient_id", "item"]].values.tolist() == [["P2", "P2/T1WI/unannotated.png"]]
    assert sorted(t2["patient_id"]) == ["P2", "P4"] and (t2["reason"] == annotations.NO_IMAGE).all()
    # Bad input still stops the stage with the file and the fix, and nothing is recorded.
    (images / "P1" / "T1WI" / "P1_T1WI.json").write_text('{"shapes": [')
    with pytest.raises(InputError, match="re-save it from labelme"):
        annotations.main_stage(config, images, cases, "T1", tmp_path / "again.parquet", tmp_path / "again.csv")
    assert not (tmp_path / "again.csv").exists()


def flow_inputs():
    cases = pd.DataFrame({"patient_id": ["P1", "P2", "P3", "P4", "P5", "P6"],
                          "diagnosis": ["ependymoma", "schwannoma", "ependymoma", "schwannoma", "ependymoma",
                                        "schwannoma"],
                          "cohort": ["internal"] * 3 + ["external"] * 3})
    cases["label"] = (cases["diagnosis"] == "schwannoma").astype(int)
    images = pd.DataFrame({"patient_id": ["P1", "P1", "P2", "P3", "P4", "P4", "P5"],
                           "sequence": ["T1", "T2", "T1", "T2", "T1", "T2", "T1"]})
    excluded = pd.DataFrame({"patient_id": ["P2", "P3", "P5", "P6", "P6", "P1"],
                             "sequence": ["T2", "T1", "T2", "T1", "T2", "T1"],
                             "level": ["patient"] * 5 + ["image"], "item": [""] * 5 + ["P1/T1/x.png"],
                             "reason": [annotations.NO_IMAGE] * 5 + [annotations.NO_ANNOTATION]})
    folds = pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "fold": [0, 1, 1]})
    rows = []
    for patient, cohort, label, n_t1, n_t2 in (("P1", "internal", 0, 1, 1), ("P2", "internal", 1, 1, 0),
                                               ("P3", "internal", 0, 0, 1), ("P4", "external", 1, 1, 1),
                                               ("P5", "external", 0, 1, 0)):
        model = "oof" if cohort == "internal" else "ensemble"
        for input_, n in (("T1", n_t1), ("T2", n_t2), ("ALL", n_t1 + n_t2)):
            if n:
                rows.append({"backbone": "net", "input": input_, "model": model, "patient_id": patient,
                             "cohort": cohort, "label": label, "n_images": n})
    readers = pd.DataFrame({"reader": ["R1", "R2"] * 2, "patient_id": ["P4", "P4", "P5", "P5"]})
    return cases, images, excluded, folds, pd.DataFrame(rows), readers


def test_flow_counts_follow_the_records():
    cases, images, excluded, folds, predictions, readers = flow_inputs()
    table = participant_flow.flow_table(cases, images, excluded, folds, predictions, ["ependymoma", "schwannoma"],
                                        readers)
    get = table.set_index(["step", "cohort", "group"])
    assert get.loc[("listed in the cases table", "external", "all"), "patients"] == 3
    assert get.loc[("with annotated images", "external", "all")].tolist() == [2, 3]
    assert get.loc[("excluded", "external", participant_flow.NO_ANNOTATED_IMAGE), "patients"] == 1
    lacking = f"{participant_flow.LACKING}: T2"
    assert get.loc[("excluded", "internal", lacking), "patients"] == 1  # P2 (P3 lacks T1)
    assert get.loc[("excluded", "external", lacking), "patients"] == 1  # P5 (P6 has no image at all)
    assert get.loc[("excluded", "internal", f"{annotations.NO_ANNOTATION}: T1")].tolist() == [1, 1]
    assert get.loc[("split", "internal", "fold 1")].tolist() == [2, 2]
    assert get.loc[("analysed", "internal", "ALL")].tolist() == [3, 4]
    assert get.loc[("analysed", "external", "T2"), "patients"] == 1
    assert get.loc[("analysed", "external", "ALL: schwannoma"), "patients"] == 1
    assert get.loc[("reader study", "external", "read by 2 readers"), "patients"] == 2
    assert get.loc[("reader study", "external", participant_flow.NO_RATINGS), "patients"] == 0
    fig = participant_flow.flow_figure(table, ["ependymoma", "schwannoma"], 2)
    text = "\n".join(t.get_text() for t in fig.axes[0].texts)
    assert "Patients listed in the cases table: n = 6" in text and "no annotated image: n = 1" in text
    assert "lacking T2 (analysed in other inputs): n = 2" in text and "image without annotation (T1): n = 1 (1 files)" in text
    assert "fold 1: n = 2 (2 images)" in text and "read by 2 readers: n = 2" in text
    assert "n = 2 (ependymoma 1, schwannoma 1)" in text  # external: the patients with images


def test_a_volume_study_counts_volumes_not_the_models_crops():
    """Volume studies: one volume per case x sequence in the image table; a case-level
    row's n_images counts the model's crops (8 slices of a 2d model), which the flow
    must not report as images."""
    cases, images, excluded, folds, predictions, readers = flow_inputs()
    crops = predictions.assign(n_images=predictions["n_images"] * 8)
    table = participant_flow.flow_table(cases, images, excluded, folds, crops, ["ependymoma", "schwannoma"],
                                        readers, volumes=True)
    get = table.set_index(["step", "cohort", "group"])
    # Hand counts from the image table: internal P1 (T1, T2), P2 (T1), P3 (T2); external P4 (T1, T2), P5 (T1).
    assert get.loc[("analysed", "internal", "ALL")].tolist() == [3, 4]
    assert get.loc[("analysed", "internal", "T1")].tolist() == [2, 2]
    assert get.loc[("analysed", "external", "ALL")].tolist() == [2, 3]
    assert get.loc[("analysed", "external", "T2")].tolist() == [1, 1]
    fig = participant_flow.flow_figure(table, ["ependymoma", "schwannoma"], 2, unit="volumes")
    text = "\n".join(t.get_text() for t in fig.axes[0].texts)
    assert "annotated volumes: 7" in text and "ALL: n = 3 (4 volumes)" in text and "images" not in text
