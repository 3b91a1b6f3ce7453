"""Ensembling and case-level aggregation on hand-made predictions."""

import pandas as pd
import pytest

from spinedx.aggregation import aggregate, ensemble
from spinedx.errors import InputError


def fold_table(fold, external_probs, validation=()):
    rows = [dict(image_id=f"E{p}/{i}", patient_id=f"E{p}", sequence="T1", cohort="external",
                 label=p % 2, fold=fold, role="external", prob=prob)
            for i, (p, prob) in enumerate(external_probs)]
    rows += [dict(image_id=f"I{p}/0", patient_id=f"I{p}", sequence="T1", cohort="internal",
                  label=p % 2, fold=fold, role="validation", prob=prob) for p, prob in validation]
    columns = ["image_id", "patient_id", "sequence", "cohort", "label", "fold", "role", "prob"]
    return pd.DataFrame(rows, columns=columns).astype({"fold": int}).assign(fold=fold)


def test_ensemble_is_the_plain_mean_and_oof_comes_from_the_holding_fold():
    tables = [fold_table(0, [(0, 0.1), (1, 0.9)], validation=[(10, 0.3)]),
              fold_table(1, [(0, 0.3), (1, 0.5)], validation=[(11, 0.8)])]
    out = ensemble(pd.concat(tables), "net", 2)
    mean = out[out.model == "ensemble"].set_index("image_id")["prob"]
    assert mean.to_dict() == pytest.approx({"E0/0": 0.2, "E1/1": 0.7})
    assert set(out.model) == {"fold0", "fold1", "ensemble", "oof"}
    oof = out[out.model == "oof"].set_index("patient_id")["prob"]
    assert oof.to_dict() == {"I10": 0.3, "I11": 0.8}
    assert (out.backbone == "net").all()


def test_ensemble_refuses_inconsistent_fold_predictions():
    with pytest.raises(InputError, match="x.parquet: the fold models scored different external images"):
        ensemble(pd.concat([fold_table(0, [(0, 0.1)]), fold_table(1, [(1, 0.1)])]), "net", 2, "x.parquet")
    with pytest.raises(InputError, match="validated by two fold models"):
        ensemble(pd.concat([fold_table(0, [], [(5, 0.1)]), fold_table(1, [], [(5, 0.2)])]), "net", 2)
    with pytest.raises(InputError, match=r"expected predictions of folds 0..2, found \[0, 2\]"):
        ensemble(pd.concat([fold_table(0, [(0, 0.1)]), fold_table(2, [(0, 0.1)])]), "net", 3)


def image_predictions():
    # Patient A (label 1): T1 images 0.2, 0.4; T2 image 0.9.  Patient B (label 0): T1 0.6.
    rows = [("A", 1, "T1", 0.2), ("A", 1, "T1", 0.4), ("A", 1, "T2", 0.9), ("B", 0, "T1", 0.6)]
    return pd.DataFrame([dict(backbone="net", sequence=s, image_id=f"{p}{i}", patient_id=p,
                              cohort="external", label=y, model="ensemble", prob=q)
                         for i, (p, y, s, q) in enumerate(rows)])


def test_case_probability_is_the_mean_of_its_images_and_all_pools_images():
    cases = aggregate(image_predictions()).set_index(["input", "patient_id"])
    assert cases.loc[("T1", "A"), "prob"] == pytest.approx(0.3)
    assert cases.loc[("T2", "A"), "prob"] == pytest.approx(0.9)
    # ALL is the mean over the 3 images, not the mean of the per-sequence means (0.6).
    assert cases.loc[("ALL", "A"), "prob"] == pytest.approx(0.5)
    assert cases.loc[("ALL", "A"), "n_images"] == 3
    assert cases.loc[("ALL", "B"), "prob"] == pytest.approx(0.6)
    assert ("T2", "B") not in cases.index


def test_conflicting_labels_of_one_patient_are_an_error():
    bad = image_predictions()
    bad.loc[0, "label"] = 0
    with pytest.raises(InputError, match="different labels"):
        aggregate(bad)
