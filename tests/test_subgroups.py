"""Subgroups stage: variables from the cases table, age bands and DICOM acquisition
attributes (allow-listed, de-identified), per-level metrics against hand counts and
statsmodels' Wilson intervals, the forest plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spinedx.errors import InputError
from spinedx.readers.dicom import ACQUISITION_ATTRIBUTES, acquisition_attributes
from spinedx.stages import subgroups as stage

IDENTIFYING = {"PatientName": "Doe^Jane^Subgroup", "PatientID": "ID-5550123", "PatientBirthDate": "19510704",
               "InstitutionName": "St Example Hospital", "StationName": "MRI-ROOM-7",
               "ReferringPhysicianName": "Welby^Marcus", "DeviceSerialNumber": "SN-424242"}


def evaluation():
    return {"bootstrap_replicates": 100, "seed": 0, "ci_level": 0.95}


def cases_and_predictions(n=40, seed=0):
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 2
    cases = pd.DataFrame({"patient_id": [f"E{k:03d}" for k in range(n)], "diagnosis": "x", "cohort": "external",
                          "label": label, "age": rng.integers(20, 90, n).astype(float),
                          "sex": rng.choice(["F", "M"], n), "centre": rng.choice(["A", "B", "C"], n)})
    cases.loc[3, "age"] = np.nan
    cases.loc[5, "centre"] = None
    prob = 1 / (1 + np.exp(-(1.5 * (2 * label - 1) + rng.normal(0, 1, n))))
    predictions = pd.DataFrame({"backbone": "net", "input": "ALL", "model": "ensemble", "cohort": "external",
                                "patient_id": cases["patient_id"], "label": label, "prob_schwannoma": prob})
    return cases, predictions


def test_age_bands():
    bands = stage.age_bands(pd.Series([10, 49.9, 50, 64, 65, 90, None]), [50, 65])
    assert bands.tolist() == ["<50", "<50", "50 to <65", "50 to <65", ">=65", ">=65", "missing"]
    with pytest.raises(InputError, match="ascending"):
        stage.age_bands(pd.Series([1]), [65, 50])


def test_levels_and_metrics_match_hand_counts_and_statsmodels():
    from sklearn.metrics import roc_auc_score
    from statsmodels.stats.proportion import proportion_confint

    cases, predictions = cases_and_predictions()
    values = stage.subgroup_values(cases, ["sex", "age_band", "centre"], [50, 65], None, ".", "cases.csv")
    table = stage.subgroup_table(predictions, values, ["sex", "age_band", "centre"], "prob_schwannoma", 0.5,
                                 evaluation())
    assert table.iloc[0]["variable"] == "all cases" and table.iloc[0]["n_patients"] == 40
    assert table[table["variable"] == "age_band"]["level"].tolist() == ["<50", "50 to <65", ">=65", "missing"]
    assert table[table["variable"] == "centre"]["level"].tolist() == ["A", "B", "C", "missing"]
    merged = predictions.merge(values, on="patient_id")
    for row in table.iloc[1:].itertuples():
        group = merged[merged[row.variable] == row.level]
        called, truth = group["prob_schwannoma"] > 0.5, group["label"] == 1
        assert (row.tp, row.fn, row.tn, row.fp) == ((called & truth).sum(), (~called & truth).sum(),
                                                    (~called & ~truth).sum(), (called & ~truth).sum())
        if row.n_pos:
            assert (row.sensitivity_lo, row.sensitivity_hi) == pytest.approx(
                proportion_confint(row.tp, row.n_pos, method="wilson"), abs=1e-12)
        if row.n_pos and row.n_neg:
            assert row.auc == pytest.approx(roc_auc_score(group["label"], group["prob_schwannoma"]), abs=1e-12)
        else:
            assert np.isnan(row.auc)
    fig = stage.forest_figure(table, "net", "external")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0].startswith("all cases") and len(labels) == len(table)


def test_unknown_variable_names_the_cases_table_and_the_fix():
    cases, _ = cases_and_predictions()
    with pytest.raises(InputError, match="not a column of the cases table.*correct config subgroups.variables"):
        stage.subgroup_values(cases, ["scanner"], [50], None, ".", "cases.csv")
    with pytest.raises(InputError, match="needs an `age` column"):
        stage.subgroup_values(cases.drop(columns="age"), ["age_band"], [50], None, ".", "cases.csv")


def write_dicom(path, manufacturer="SIEMENS", model="Skyra", strength="3"):
    import pydicom
    from pydicom.data import get_testdata_file

    dataset = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for key, value in IDENTIFYING.items():
        setattr(dataset, key, value)
    dataset.Manufacturer, dataset.ManufacturerModelName = manufacturer, model
    dataset.MagneticFieldStrength = strength
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path)
    return path


def test_dicom_attributes_come_through_the_allow_list_only(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", manufacturer="GE MEDICAL SYSTEMS\u0007<script>", strength="1.5")
    values = acquisition_attributes(path)
    assert set(values) == set(ACQUISITION_ATTRIBUTES.values())
    assert values == {"vendor": "GE MEDICAL SYSTEMSscript", "scanner_model": "Skyra", "field_strength": "1.5 T"}
    for text in values.values():
        assert not any(identifying in text for identifying in IDENTIFYING.values())
    assert acquisition_attributes(tmp_path / "missing.dcm") == dict.fromkeys(ACQUISITION_ATTRIBUTES.values())


def test_dicom_variables_fill_the_table_without_identifying_values(tmp_path):
    cases, predictions = cases_and_predictions(n=8)
    images_dir = tmp_path / "images"
    rows = []
    for k, patient in enumerate(cases["patient_id"]):
        if k == 7:  # a PNG patient: not DICOM
            rows.append({"patient_id": patient, "image_path": f"{patient}/T1/x.png"})
            continue
        vendor, strength = ("SIEMENS", "3") if k % 2 else ("Philips", "1.5")
        for slice_ in range(2):
            write_dicom(images_dir / patient / "T1" / f"{slice_}.dcm", vendor, "Model-1", strength)
            rows.append({"patient_id": patient, "image_path": f"{patient}/T1/{slice_}.dcm"})
    values = stage.subgroup_values(cases, ["vendor", "field_strength", "sex"], [50], pd.DataFrame(rows), images_dir,
                                   "cases.csv")
    assert values["vendor"].tolist() == ["Philips", "SIEMENS"] * 3 + ["Philips", "not DICOM"]
    assert values["field_strength"].tolist()[:2] == ["1.5 T", "3 T"]
    table = stage.subgroup_table(predictions, values, ["vendor", "field_strength"], "prob_schwannoma", 0.5,
                                 evaluation())
    text = table.to_csv()
    assert "SIEMENS" in text and "not DICOM" in text
    for identifying in IDENTIFYING.values():
        assert identifying not in text and identifying.replace("^", " ") not in text
    # A cases-table column wins over the header.
    with_column = stage.subgroup_values(cases.assign(vendor="from table"), ["vendor"], [50], pd.DataFrame(rows),
                                        images_dir, "cases.csv")
    assert (with_column["vendor"] == "from table").all()


def test_a_volume_studys_dicom_series_gives_its_acquisition_attributes(tmp_path):
    """Volume studies list a DICOM series as its folder (image/): the attributes come from
    its first slice through the same allow-list; a NIfTI volume is not DICOM."""
    cases = cases_and_predictions(n=8)[0].iloc[:3]
    images_dir = tmp_path / "images"
    series = images_dir / cases["patient_id"][0] / "CT" / "image"
    for slice_ in range(3):
        write_dicom(series / f"s{slice_:03d}", "Canon", "Aquilion", "")  # no suffix: found by the DICM marker
    (series / "notes.txt").write_text("not a slice")
    write_dicom(images_dir / cases["patient_id"][1] / "CT" / "s000.dcm", "GE", "Revolution", "")
    (images_dir / cases["patient_id"][2] / "CT").mkdir(parents=True)
    (images_dir / cases["patient_id"][2] / "CT" / "image.nii.gz").write_bytes(b"\x1f\x8b")
    rows = pd.DataFrame({"patient_id": cases["patient_id"],
                         "image_path": [f"{cases['patient_id'][0]}/CT/image", f"{cases['patient_id'][1]}/CT",
                                        f"{cases['patient_id'][2]}/CT/image.nii.gz"]})
    values = stage.subgroup_values(cases, ["vendor", "scanner_model"], [50], rows, images_dir, "cases.csv")
    assert values["vendor"].tolist() == ["Canon", "GE", "not DICOM"]
    assert values["scanner_model"].tolist() == ["Aquilion", "Revolution", "not DICOM"]


def test_two_classes_of_another_shape_pool_every_external_cohort(tmp_path):
    """Two classes with a hold-out split and two external cohorts: the final system's
    cases are every external cohort's (ensemble, pooled), each once; ``cohort``, a column
    of the predictions too, is a variable like any other (one level per centre); rows are
    the two-class metrics (hand counts, scikit-learn)."""
    from sklearn.metrics import roc_auc_score

    from spinedx import config as configuration
    from test_comparisons_stage import BINARY, binary_holdout_case_predictions

    predictions = binary_holdout_case_predictions()
    patients = predictions.drop_duplicates("patient_id")
    cases = pd.DataFrame({"patient_id": patients["patient_id"],
                          "diagnosis": np.asarray(BINARY)[patients["label"].to_numpy()],
                          "cohort": patients["cohort"], "sex": np.where(np.arange(len(patients)) % 3, "F", "M")})
    cases.to_csv(tmp_path / "cases.csv", index=False)
    predictions.to_parquet(tmp_path / "case_level.parquet")
    pd.DataFrame({"backbone": ["netA", "netB"], "input": "ALL", "auc": [0.6, 0.7]}).to_csv(tmp_path / "t3.csv")
    config = configuration.resolve({"classes": BINARY, "backbones": ["netA", "netB"],
                                    "data": {"external_cohorts": ["external_c2", "external_c3"]},
                                    "splits": {"scheme": "holdout"}, "subgroups": {"variables": ["cohort", "sex"]},
                                    "evaluation": {"bootstrap_replicates": 20}})
    table = stage.main_stage(config, tmp_path / "cases.csv", None, tmp_path, [tmp_path / "case_level.parquet"],
                             tmp_path / "t3.csv", tmp_path / "subgroups.csv", tmp_path / "forest")
    assert set(table["cohort"]) == {"external_pooled (ensemble)"} and set(table["backbone"]) == {"netB"}
    external = predictions[(predictions["backbone"] == "netB") & (predictions["input"] == "ALL")
                           & (predictions["model"] == "ensemble")]
    everyone = table.iloc[0]
    assert everyone["variable"] == "all cases" and everyone["n_patients"] == len(external) == 30
    assert everyone["auc"] == pytest.approx(roc_auc_score(external["label"], external["prob_ependymoma"]), abs=1e-12)
    centres = table[table["variable"] == "cohort"].set_index("level")
    assert list(centres.index) == ["external_c2", "external_c3"]
    for centre, row in centres.iterrows():
        rows = external[external["cohort"] == centre]
        called, truth = rows["prob_ependymoma"] > 0.5, rows["label"] == 1
        assert (row.tp, row.fn, row.tn, row.fp) == ((called & truth).sum(), (~called & truth).sum(),
                                                    (~called & ~truth).sum(), (called & ~truth).sum())
