"""Clinical fusion by stacking: image probabilities + declared covariates -> classes.

A stacked model combines, per case, the image models' case-level class probabilities
with covariates of the cases table (numeric: age, ...; categorical: sex, site, ...) by a
multinomial logistic regression (binary logistic for two classes). Three models are
fitted on the same rows and reported side by side:

* ``image``: the image probabilities alone, re-calibrated by the same learner. It is the
  fair baseline for ``image+clinical``: both pass through the same learner, penalty and
  training rows, so their difference is the covariates' contribution and not a
  calibration effect. (The raw image probabilities are already in the unfused tables.)
* ``clinical``: the covariates alone;
* ``image+clinical``: both.

Features
--------
* Image: centred log-ratios of the probabilities, clr_k = log p_k - mean_j log p_j, with
  p floored at :data:`PROB_FLOOR` (a probability of exactly 0 would give -inf). clr is
  the log scale on which the softmax is linear (softmax(clr) = p), so the identity
  coefficients reproduce the input probabilities; for two classes it is +-logit / 2.
* Numeric covariates and the clr features: standardised with the mean and the
  population SD (ddof = 0) of the training rows, so that one L2 penalty weighs every
  feature alike. A numeric covariate constant in the training rows is refused (it
  cannot be standardised and carries no information).
* Categorical covariates: one indicator per level seen in the training rows (values
  compared as text). A level unseen in training gets all-zero indicators (the model's
  average over levels) and is reported by :meth:`FusionModel.predict`.
* Missing values (NaN/empty) in a declared covariate or a probability column are
  refused with an error naming the column and patients: imputing would be a modelling
  decision the study has not declared.

Learner: scikit-learn ``LogisticRegression(C=C, l1_ratio=0)`` (L2 penalty, ``C`` the
inverse penalty strength, given by the study config), lbfgs solver (deterministic; the
seed is passed as ``random_state`` all the same), intercept unpenalised.

No test data by construction
----------------------------
Rows say where their image probabilities come from in the column
:data:`PREDICTION_SET_COLUMN`: ``"oof"`` (internal k-fold out-of-fold predictions) or
``"validation"`` (the validation partition of a hold-out split) may train the stacker
(:data:`FIT_SETS`); anything else (``"internal_test"``, an external cohort's name, ...) is
test data. :func:`fit_fusion` refuses any row that is not in :data:`FIT_SETS`;
:meth:`FusionModel.predict` refuses rows tagged as fit sets and patients the model was
fitted on, and uses only statistics stored at fit time, so a test row's prediction
depends on that row alone.

Why ``stats`` and not ``models``: this is a small regularised regression on tabular
columns, estimated like a calibration model; ``models/`` holds networks, their
checkpoints and devices, none of which this needs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from spinedx.errors import InputError

__all__ = [
    "CLINICAL_ONLY",
    "FIT_SETS",
    "FUSED",
    "FUSION_INPUTS",
    "IMAGE_ONLY",
    "PREDICTION_SET_COLUMN",
    "PROB_FLOOR",
    "FusionModel",
    "FusionPrediction",
    "FusionSpec",
    "fit_fusion",
    "fit_fusion_models",
    "fusion_predictions",
]

#: Column naming where each row's image probabilities come from.
PREDICTION_SET_COLUMN = "prediction_set"
#: Prediction sets that may train the stacker: internal out-of-fold and validation rows.
FIT_SETS = ("oof", "validation")
#: The three fused models (each row's ``fusion_input``), in report order: image only (the
#: fair baseline), clinical only, image + clinical (the fused model).
IMAGE_ONLY, CLINICAL_ONLY, FUSED = "image", "clinical", "image+clinical"
FUSION_INPUTS = (IMAGE_ONLY, CLINICAL_ONLY, FUSED)
#: Floor of probabilities before the log ratio: a softmax output below it is rounding
#: noise, and the floor keeps one overconfident model from dominating the features.
PROB_FLOOR = 1e-6

# lbfgs stopping: tight, because the problems are tiny and results should not depend on
# the solver stopping early (max_iter is a guard, reaching it is an error).
_TOLERANCE = 1e-8
_MAX_ITER = 10_000
# At most this many patient ids are named in an error or report line.
_NAMED = 10


@dataclass(frozen=True)
class FusionSpec:
    """What the stacker uses (from the study config).

    ``class_names``: class order (probability columns ``prob_<class>``, labels 0..N-1);
    ``numeric``, ``categorical``: covariate columns of the cases table; ``C``: inverse L2
    penalty strength; ``seed``: passed to the learner.
    """

    class_names: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    C: float
    seed: int

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "numeric", tuple(self.numeric))
        object.__setattr__(self, "categorical", tuple(self.categorical))
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise InputError(f"fusion needs at least two distinct classes, got {list(self.class_names)}")
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise InputError(f"covariate(s) {sorted(both)} declared both numeric and categorical")
        if not (np.isfinite(self.C) and self.C > 0):
            raise InputError(f"fusion C (inverse penalty strength) must be a positive number, got {self.C!r}")

    @property
    def prob_columns(self) -> list[str]:
        return [f"prob_{name}" for name in self.class_names]

    @property
    def covariates(self) -> tuple[str, ...]:
        return self.numeric + self.categorical


@dataclass(frozen=True)
class FusionPrediction:
    """Fused probabilities of test rows and the categorical levels unseen in training.

    ``probs``: ``patient_id``, ``prediction_set``, ``label`` (when the input had it) and
    one ``prob_<class>`` column per class, in input row order. ``unseen_levels``:
    ``covariate, level, n_patients, patients`` (ids, comma-separated, at most 10).
    """

    probs: pd.DataFrame
    unseen_levels: pd.DataFrame


def _named(ids) -> str:
    ids = [str(i) for i in ids]
    more = f" and {len(ids) - _NAMED} more" if len(ids) > _NAMED else ""
    return ", ".join(ids[:_NAMED]) + more


def _check_frame(frame: pd.DataFrame, spec: FusionSpec, inputs: str, role: str) -> None:
    """Columns, one row per patient, and no missing values in what ``inputs`` uses."""
    if inputs not in FUSION_INPUTS:
        raise InputError(f"fusion inputs must be one of {FUSION_INPUTS}, got {inputs!r}")
    if inputs != IMAGE_ONLY and not spec.covariates:
        raise InputError(f"fusion inputs {inputs!r} need declared covariates; none are declared")
    used = (spec.prob_columns if inputs != CLINICAL_ONLY else []) + (
        list(spec.covariates) if inputs != IMAGE_ONLY else [])
    required = ["patient_id", PREDICTION_SET_COLUMN, *used] + (["label"] if role == "training" else [])
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise InputError(f"{role} rows lack column(s) {missing}")
    duplicated = frame["patient_id"][frame["patient_id"].duplicated()]
    if len(duplicated):
        raise InputError(f"{role} rows must be one per patient (case level); repeated: "
                         f"{_named(duplicated.unique())}")
    for column in used:
        empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        if empty.any():
            raise InputError(
                f"{role} rows: column {column!r} is missing for patient(s) "
                f"{_named(frame.loc[empty, 'patient_id'])}; complete the cases table or "
                "remove the covariate from the declared fusion covariates"
            )


def _clr(frame: pd.DataFrame, spec: FusionSpec) -> np.ndarray:
    probs = pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce") for c in spec.prob_columns})
    bad = ~np.isfinite(probs.to_numpy(dtype=float)) | (probs < 0).to_numpy() | (probs > 1).to_numpy()
    if bad.any():
        rows = bad.any(axis=1)
        raise InputError(f"probability columns must hold numbers in [0, 1]; patient(s) "
                         f"{_named(frame.loc[rows, 'patient_id'])} do not")
    log_probs = np.log(np.clip(probs.to_numpy(dtype=float), PROB_FLOOR, 1.0))
    return log_probs - log_probs.mean(axis=1, keepdims=True)


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | ~np.isfinite(values.astype(float))
    if bad.any():
        raise InputError(f"numeric covariate {column!r} is not a number for patient(s) "
                         f"{_named(frame.loc[bad, 'patient_id'])}: found {list(frame.loc[bad, column][:5])}")
    return values.to_numpy(dtype=float)


@dataclass(frozen=True)
class _Design:
    """The feature transform, learned from the training rows only."""

    spec: FusionSpec
    inputs: str
    numeric_names: tuple[str, ...]  # standardised features: clr_<class>, numeric covariates
    means: np.ndarray
    scales: np.ndarray
    levels: dict  # categorical covariate -> tuple of its training levels (as text)

    @classmethod
    def learn(cls, training: pd.DataFrame, spec: FusionSpec, inputs: str) -> _Design:
        names, values = cls._numeric_features(training, spec, inputs)
        if values.shape[1]:
            means, scales = values.mean(axis=0), values.std(axis=0)
            constant = [name for name, scale in zip(names, scales) if not scale > 0]
            if constant:
                raise InputError(f"fusion feature(s) {constant} are constant in the training rows; "
                                 "remove such covariates from the declared fusion covariates")
        else:
            means, scales = np.zeros(0), np.ones(0)
        levels = {}
        if inputs != IMAGE_ONLY:
            levels = {c: tuple(sorted(pd.unique(training[c].astype(str)))) for c in spec.categorical}
        return cls(spec, inputs, tuple(names), means, scales, levels)

    @staticmethod
    def _numeric_features(frame, spec, inputs) -> tuple[list[str], np.ndarray]:
        names: list[str] = []
        columns: list[np.ndarray] = [np.zeros((len(frame), 0))]
        if inputs != CLINICAL_ONLY:
            names += [f"clr_{name}" for name in spec.class_names]
            columns.append(_clr(frame, spec))
        if inputs != IMAGE_ONLY:
            names += list(spec.numeric)
            columns.extend(_numeric(frame, column)[:, None] for column in spec.numeric)
        return names, np.hstack(columns)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.numeric_names + tuple(
            f"{column}={level}" for column, levels in self.levels.items() for level in levels)

    def matrix(self, frame: pd.DataFrame) -> tuple[np.ndarray, list[dict]]:
        """Feature matrix of ``frame`` from the stored statistics alone (so a row's features
        depend on that row only), and the categorical levels unseen in training."""
        _, values = self._numeric_features(frame, self.spec, self.inputs)
        parts = [(values - self.means) / self.scales]
        unseen = []
        for column, levels in self.levels.items():
            text = frame[column].astype(str).to_numpy()
            parts.append((text[:, None] == np.array(levels, dtype=object)[None, :]).astype(float))
            for level in pd.unique(text[~np.isin(text, levels)]):
                patients = frame.loc[text == level, "patient_id"].tolist()
                unseen.append({"covariate": column, "level": level, "n_patients": len(patients),
                               "patients": _named(patients)})
        return np.hstack(parts), unseen


@dataclass(frozen=True)
class FusionModel:
    """A fitted stacker; create with :func:`fit_fusion`."""

    design: _Design
    training_patients: frozenset
    estimator: object  # the fitted scikit-learn LogisticRegression

    @property
    def spec(self) -> FusionSpec:
        return self.design.spec

    @property
    def inputs(self) -> str:
        return self.design.inputs

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.design.feature_names

    def predict(self, test: pd.DataFrame) -> FusionPrediction:
        """Fused class probabilities of ``test`` rows (test data only, see module docstring)."""
        _check_frame(test, self.spec, self.inputs, "test")
        tagged = test[PREDICTION_SET_COLUMN].isin(FIT_SETS)
        if tagged.any():
            raise InputError(
                f"fusion predicts test rows only; {int(tagged.sum())} row(s) are tagged "
                f"{sorted(test.loc[tagged, PREDICTION_SET_COLUMN].unique())} (training data), "
                f"e.g. patient(s) {_named(test.loc[tagged, 'patient_id'])}"
            )
        seen = test["patient_id"].isin(self.training_patients)
        if seen.any():
            raise InputError(f"patient(s) {_named(test.loc[seen, 'patient_id'])} trained the fusion "
                             "model; their predictions would be in-sample")
        design, unseen = self.design.matrix(test)
        with threadpool_limits(limits=1, user_api="blas"):  # see fit_fusion
            probs = self.estimator.predict_proba(design)
        out = test[[c for c in ("patient_id", PREDICTION_SET_COLUMN, "label") if c in test.columns]]
        out = out.reset_index(drop=True).assign(**dict(zip(self.spec.prob_columns, probs.T)))
        return FusionPrediction(out, pd.DataFrame(unseen, columns=["covariate", "level", "n_patients",
                                                                    "patients"]))

    def coefficients(self) -> pd.DataFrame:
        """Coefficients on the standardised features: one row per feature (and the
        intercept), one column per class (for two classes: one column, the log odds of
        the second class)."""
        coef = self.estimator.coef_
        columns = list(self.spec.class_names) if coef.shape[0] > 1 else [self.spec.class_names[1]]
        table = pd.DataFrame(coef.T, index=list(self.feature_names), columns=columns)
        intercept = pd.DataFrame([self.estimator.intercept_], index=["intercept"], columns=columns)
        return pd.concat([intercept, table])


def fit_fusion(training: pd.DataFrame, spec: FusionSpec, inputs: str) -> FusionModel:
    """Fit the stacker on internal out-of-fold or validation rows only.

    ``training``: one row per patient with ``patient_id``, :data:`PREDICTION_SET_COLUMN`
    (every row in :data:`FIT_SETS`, else an error naming the offending sets), ``label``
    (0..N-1), the probability columns and the declared covariates. ``inputs``: one of
    :data:`FUSION_INPUTS`. Every class must occur in the training rows.
    """
    _check_frame(training, spec, inputs, "training")
    not_fit = ~training[PREDICTION_SET_COLUMN].isin(FIT_SETS)
    if not_fit.any():
        sets = sorted(map(str, training.loc[not_fit, PREDICTION_SET_COLUMN].unique()))
        raise InputError(
            f"fusion is fitted on {' or '.join(FIT_SETS)} rows only; {int(not_fit.sum())} row(s) "
            f"are tagged {sets} (test data), e.g. patient(s) "
            f"{_named(training.loc[not_fit, 'patient_id'])}"
        )
    labels = pd.to_numeric(training["label"], errors="coerce")
    if not labels.isin(range(len(spec.class_names))).all():
        raise InputError(f"training labels must be class indices 0..{len(spec.class_names) - 1}")
    labels = labels.to_numpy(dtype=np.int64)
    absent = [spec.class_names[k] for k in range(len(spec.class_names)) if not (labels == k).any()]
    if absent:
        raise InputError(f"fusion training rows hold no patient of class(es) {absent}; the stacker "
                         "cannot learn a class it never saw")

    design = _Design.learn(training, spec, inputs)
    matrix, _ = design.matrix(training)

    from sklearn.exceptions import ConvergenceWarning  # slow import, needed only here
    from sklearn.linear_model import LogisticRegression

    estimator = LogisticRegression(C=spec.C, l1_ratio=0.0, solver="lbfgs", tol=_TOLERANCE,
                                   max_iter=_MAX_ITER, random_state=spec.seed)
    # One BLAS thread: the problems are tiny, and on a machine shared with other jobs BLAS
    # threads competing for the cores made these fits ten times slower (4.3 s against 0.4 s
    # for nine fits of 400 rows).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            estimator.fit(matrix, labels)
        except ConvergenceWarning as error:
            raise InputError(f"fusion ({inputs}) did not converge: {error}; check the covariates "
                             "for extreme values or lower C") from error
    return FusionModel(design, frozenset(training["patient_id"]), estimator)


def fit_fusion_models(training: pd.DataFrame, spec: FusionSpec) -> dict[str, FusionModel]:
    """The three models of :data:`FUSION_INPUTS`, fitted on the same training rows."""
    return {inputs: fit_fusion(training, spec, inputs) for inputs in FUSION_INPUTS}


def fusion_predictions(training: pd.DataFrame, test: pd.DataFrame, spec: FusionSpec
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test predictions of the three models side by side.

    Returns (predictions, unseen levels): predictions stack each model's
    :class:`FusionPrediction` rows with a leading ``fusion_input`` column (in
    :data:`FUSION_INPUTS` order), ready for per-model evaluation; the unseen-level
    report comes from the models that use covariates (identical for both).
    """
    models = fit_fusion_models(training, spec)
    predictions = {inputs: model.predict(test) for inputs, model in models.items()}
    stacked = pd.concat(
        [prediction.probs.assign(fusion_input=inputs) for inputs, prediction in predictions.items()],
        ignore_index=True,
    )
    stacked = stacked[["fusion_input", *[c for c in stacked.columns if c != "fusion_input"]]]
    return stacked, predictions[FUSED].unseen_levels
