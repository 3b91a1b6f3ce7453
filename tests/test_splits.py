import pandas as pd
import pytest

from spinedx.errors import InputError
from spinedx.splitting import check_folds, make_folds


def cases_table(n_internal=(20, 20), n_external=(10, 10)):
    rows = []
    for cohort, counts in (("internal", n_internal), ("external", n_external)):
        for label, (diagnosis, n) in enumerate(zip(("ependymoma", "schwannoma"), counts)):
            rows += [{"patient_id": f"{cohort[0]}{diagnosis[0]}{i:03d}", "diagnosis": diagnosis,
                      "cohort": cohort, "label": label} for i in range(n)]
    return pd.DataFrame(rows)


def test_every_internal_patient_in_exactly_one_fold_and_no_external():
    cases = cases_table()
    folds = make_folds(cases, 5, seed=1)
    internal = set(cases.loc[cases.cohort == "internal", "patient_id"])
    assert set(folds.patient_id) == internal and len(folds) == len(internal)
    assert not folds.patient_id.duplicated().any()
    assert sorted(folds.fold.unique()) == [0, 1, 2, 3, 4]


def test_folds_are_stratified():
    folds = make_folds(cases_table((23, 17)), 5, seed=3)
    per_fold = folds.groupby("fold")["label"].agg(["size", "sum"])
    # 23 + 17 patients: every fold gets 4-5 ependymomas and 3-4 schwannomas.
    assert per_fold["size"].tolist() == [8] * 5
    assert per_fold["sum"].between(3, 4).all()


def test_seeded_and_reproducible():
    a, b = make_folds(cases_table(), 5, seed=7), make_folds(cases_table(), 5, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not make_folds(cases_table(), 5, seed=8).equals(a)


def test_too_few_patients_for_k_folds():
    with pytest.raises(InputError, match="too few internal patients"):
        make_folds(cases_table((4, 10)), 5, seed=0)


def test_single_class_internal_cohort():
    with pytest.raises(InputError, match="single diagnosis"):
        make_folds(cases_table((10, 0)), 5, seed=0)


def test_check_folds_catches_leaks():
    cases = cases_table()
    folds = make_folds(cases, 5, seed=0)
    leaked = pd.concat([folds, pd.DataFrame([{"patient_id": "ee000", "diagnosis": "ependymoma",
                                              "label": 0, "fold": 0}])])
    with pytest.raises(InputError, match="external patients"):
        check_folds(leaked, cases, 5)
    with pytest.raises(InputError, match="more than one fold"):
        check_folds(pd.concat([folds, folds.iloc[:1].assign(fold=1)]), cases, 5)
    one_class = folds.copy()
    one_class.loc[one_class.fold == 2, "label"] = 0
    with pytest.raises(InputError, match="one class only"):
        check_folds(one_class, cases, 5)
