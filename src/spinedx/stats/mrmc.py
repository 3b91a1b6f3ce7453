"""Multi-reader multi-case (MRMC) comparison of modalities: Obuchowski-Rockette (OR)
analysis with Hillis' denominator degrees of freedom.

Design: every reader rates every case under every modality (fully crossed factorial);
``t`` modalities, ``r`` readers, ``c`` cases. The figure of merit ``theta_ij`` of reader
``j`` in modality ``i`` is a callback (:class:`FigureOfMerit`):

* :data:`AUC` (the default): the empirical (trapezoidal, Wilcoxon) AUC of the ratings
  against a 0/1 truth; higher ratings mean "more likely positive" and ties count 1/2.
* :data:`ACCURACY`: the proportion of cases whose decided class (the "rating", an integer
  class index) equals the true class (an integer class index, any number of classes):
  the figure of merit of N-class reader studies. Its leave-one-case-out values are exact:
  ``(c acc - correct_k) / (c - 1)``. Only jackknife covariances apply (DeLong's are
  AUC's).

Any other figure of merit is a :class:`FigureOfMerit` with a ``values(truth, ratings)``
callback (and optionally a closed-form ``jackknife``; otherwise it is recomputed without
each case). The OR formulas below do not depend on which figure of merit is used
(Obuchowski & Rockette 1995 state them for any accuracy index; Hillis 2007 too).

OR model (Obuchowski & Rockette 1995)::

    theta_ij = mu + tau_i + R_j + (tau R)_ij + e_ij

with random reader effects, and errors ``e`` (the case-sampling variability) whose
covariance is described by four numbers::

    Var(e_ij)            = var_E
    Cov(e_ij, e_i'j)     = cov1   (same reader, different modalities)
    Cov(e_ij, e_ij')     = cov2   (same modality, different readers)
    Cov(e_ij, e_i'j')    = cov3   (different modality and reader)

They are estimated from the (t r) x (t r) covariance matrix of the reader AUCs over case
samples, by averaging its entries of each kind. That matrix comes either from DeLong's
structural components (``covariance="delong"``: ``S10/m + S01/n``) or from the jackknife
over cases (``covariance="jackknife"``, the OR-DBM MRMC software's default)::

    Cov(theta_a, theta_b) = (c - 1)/c * sum_k (theta_a(-k) - mean_a)(theta_b(-k) - mean_b)

where ``theta(-k)`` is the AUC without case ``k`` (computed exactly from DeLong's
placement values: removing positive case p gives ``(m AUC - V10_p)/(m - 1)``).

With the mean squares of the t x r table of AUCs (MS_T, MS_R, MS_TR; MS_R(i) the reader
mean square within modality i) the three analyses of Hillis (2007, Stat Med 26:596-619;
2008 with Berbaum & Metz, Acad Radiol 15:647-661) and the OR-DBM MRMC 2.5 software are:

* random readers, random cases (``"RRRC"``)::

      D   = MS_TR + r * max(cov2 - cov3, 0)
      F   = MS_T / D           on (t - 1, ddf_H) degrees of freedom
      ddf_H = D^2 / (MS_TR^2 / ((t - 1)(r - 1)))          (Hillis 2007)
      SE(theta_i. - theta_i'.) = sqrt(2 D / r), Student t on ddf_H
      single modality: SE_i = sqrt((MS_R(i) + r max(cov2_i, 0)) / r),
                       df_i = (MS_R(i) + r max(cov2_i, 0))^2 / (MS_R(i)^2 / (r - 1))

* fixed readers, random cases (``"FRRC"``)::

      D   = var_E - cov1 + (r - 1) max(cov2 - cov3, 0)
      X2  = (t - 1) MS_T / D   chi-square on t - 1 degrees of freedom
      SE(difference) = sqrt(2 D / r), normal
      single modality: SE_i = sqrt((var_E_i + (r - 1) max(cov2_i, 0)) / r), normal
      per reader: SE(theta_ij - theta_i'j) = sqrt(Var_ij + Var_i'j - 2 Cov(ij, i'j))
                  (= sqrt(2 (var_E_j - cov1_j)) for two modalities), normal

* random readers, fixed cases (``"RRFC"``): the conventional treatment x reader ANOVA,
  ``F = MS_T / MS_TR`` on (t - 1, (t - 1)(r - 1)), SE(difference) = sqrt(2 MS_TR / r),
  single modality SE_i = sqrt(MS_R(i) / r) on r - 1 degrees of freedom.

OR variance components (Hillis et al. 2005, Stat Med 24:1579-1607, from the expected
mean squares): ``var_TR = MS_TR - var_E + cov1 + cov2 - cov3`` and
``var_R = (MS_R - var_E - (t - 1) cov1 + cov2 + (t - 1) cov3 - var_TR) / t``; these ANOVA
estimates can be negative.

With jackknife covariances the RRRC F, ddf and p equal those of the Dorfman-Berbaum-Metz
ANOVA of jackknife pseudovalues with Hillis' ddf (Hillis et al. 2005); the tests check it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.stats.delong import structural_components

__all__ = ["ACCURACY", "ANALYSES", "AUC", "COVARIANCE_METHODS", "FIGURES_OF_MERIT", "FigureOfMerit", "ORResult",
           "ReaderStudy", "figure_of_merit", "jackknife_covariance", "obuchowski_rockette", "reader_case_table",
           "simulate_roe_metz"]

ANALYSES = ("RRRC", "FRRC", "RRFC")
COVARIANCE_METHODS = ("jackknife", "delong")


@dataclass(frozen=True)
class FigureOfMerit:
    """What the OR analysis compares: ``values(truth (c,), ratings (k, c)) -> (k,)``, one
    figure of merit per reading (a reader in a modality) over the same cases.

    ``jackknife(truth, ratings) -> (k, c)``: the values without each case, in any case
    order (the covariance sums over cases); None recomputes ``values`` without each case.
    ``binary_truth``: the truth is 0/1 and needs 2 cases of each value (AUC); otherwise
    the truth is an integer class index. ``delong``: DeLong covariances exist (AUC only).
    """

    name: str
    values: Callable[[np.ndarray, np.ndarray], np.ndarray]
    jackknife: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    binary_truth: bool = True
    delong: bool = False


def _auc_values(truth: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    return structural_components(truth, ratings).auc


def _auc_jackknife(truth: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """Leave-one-case-out AUCs from the placement values: exact, O(c) per reading;
    columns: the positive cases, then the negative ones."""
    components = structural_components(truth, ratings)
    m, n, auc = components.n_positive, components.n_negative, components.auc
    without_positive = (m * auc[:, None] - components.v10) / (m - 1)
    without_negative = (n * auc[:, None] - components.v01) / (n - 1)
    return np.hstack([without_positive, without_negative])


def _accuracy_values(truth: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    return (ratings == truth[None, :]).mean(axis=1)


def _accuracy_jackknife(truth: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    correct = (ratings == truth[None, :]).astype(float)
    c = truth.size
    return (correct.sum(axis=1, keepdims=True) - correct) / (c - 1)


#: Empirical AUC of ratings against a 0/1 truth (DeLong or jackknife covariances).
AUC = FigureOfMerit("auc", _auc_values, _auc_jackknife, binary_truth=True, delong=True)
#: Proportion of correctly decided cases; ratings and truth are class indexes (N classes).
ACCURACY = FigureOfMerit("accuracy", _accuracy_values, _accuracy_jackknife, binary_truth=False, delong=False)
FIGURES_OF_MERIT = {"auc": AUC, "accuracy": ACCURACY}


def figure_of_merit(value) -> FigureOfMerit:
    """A :class:`FigureOfMerit`, or its name in :data:`FIGURES_OF_MERIT`."""
    if isinstance(value, FigureOfMerit):
        return value
    if value in FIGURES_OF_MERIT:
        return FIGURES_OF_MERIT[value]
    raise InputError(f"figure of merit must be one of {sorted(FIGURES_OF_MERIT)} or a FigureOfMerit, got {value!r}")


def jackknife_covariance(truth: np.ndarray, ratings: np.ndarray, fom: FigureOfMerit) -> np.ndarray:
    """Jackknife covariance over cases of the ``k`` readings' figures of merit (k x k)::

        Cov(theta_a, theta_b) = (c - 1)/c * sum_k (theta_a(-k) - mean_a)(theta_b(-k) - mean_b)
    """
    c = truth.size
    if fom.jackknife is not None:
        jackknife = fom.jackknife(truth, ratings)
    else:
        keep = ~np.eye(c, dtype=bool)
        jackknife = np.stack([fom.values(truth[keep[k]], ratings[:, keep[k]]) for k in range(c)], axis=1)
    deviations = jackknife - jackknife.mean(axis=1, keepdims=True)
    return (c - 1) / c * deviations @ deviations.T


@dataclass(frozen=True)
class ReaderStudy:
    """A checked, fully crossed reader study as arrays: ratings (modality, reader, case),
    truth (case,), and the level names in array order."""

    ratings: np.ndarray
    truth: np.ndarray
    modalities: list
    readers: list
    cases: list


def reader_case_table(data: pd.DataFrame, *, reader: str = "reader", case: str = "case",
                      modality: str = "modality", truth: str = "truth", rating: str = "rating",
                      modalities=None, source: str = "reader study",
                      fom: FigureOfMerit | str = "auc") -> ReaderStudy:
    """Check a long table (one row per reader x case x modality) and turn it into arrays.

    ``fom``'s truth rule applies: 0/1 with 2 cases of each for AUC, integer class indexes
    (at least 2 cases) otherwise.

    ``modalities`` fixes their order (differences are reported as first minus second);
    by default the sorted distinct values. Readers and cases are sorted too. ``source``
    names the table in error messages (e.g. its file path).
    """
    columns = {"reader": reader, "case": case, "modality": modality, "truth": truth,
               "rating": rating}
    missing = [name for name in columns.values() if name not in data.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}; expected one row per reader, "
                         f"case and modality with columns {list(columns.values())}")
    frame = data[list(columns.values())].copy()
    frame.columns = list(columns)
    if frame.isna().any().any():
        bad = frame.index[frame.isna().any(axis=1)][:5].tolist()
        raise InputError(f"{source}: empty values in rows {bad}; every reading needs all "
                         f"of {list(columns.values())}")
    fom = figure_of_merit(fom)
    if fom.binary_truth and not frame["truth"].isin([0, 1]).all():
        raise InputError(f"{source}: column {truth!r} must be 0 or 1 (1 = positive case)")
    if not fom.binary_truth:
        values = pd.to_numeric(frame["truth"], errors="coerce")
        if values.isna().any() or (values != np.round(values)).any() or (values < 0).any():
            raise InputError(f"{source}: column {truth!r} must hold class indexes (0, 1, 2, ...) for "
                             f"the {fom.name} figure of merit")
    try:
        frame["rating"] = frame["rating"].astype(float)
    except (TypeError, ValueError) as error:
        raise InputError(f"{source}: column {rating!r} must be numeric ({error})") from error
    if not np.isfinite(frame["rating"].to_numpy()).all():
        raise InputError(f"{source}: column {rating!r} must be finite")
    duplicated = frame.duplicated(["modality", "reader", "case"], keep=False)
    if duplicated.any():
        example = frame.loc[duplicated, ["modality", "reader", "case"]].iloc[0].tolist()
        raise InputError(f"{source}: more than one rating for (modality, reader, case) = "
                         f"{example}; keep one reading per reader, case and modality")
    truth_per_case = frame.groupby("case")["truth"].nunique()
    if (truth_per_case > 1).any():
        raise InputError(f"{source}: case(s) {truth_per_case.index[truth_per_case > 1][:5].tolist()} "
                         f"have more than one {truth!r} value; a case's truth cannot change")

    modality_levels = sorted(frame["modality"].unique()) if modalities is None else list(modalities)
    unknown = set(frame["modality"].unique()) - set(modality_levels)
    if unknown or len(set(modality_levels)) != len(modality_levels):
        raise InputError(f"{source}: modalities {modality_levels} must list each modality of "
                         f"the table once (table has {sorted(frame['modality'].unique())})")
    reader_levels = sorted(frame["reader"].unique())
    case_levels = sorted(frame["case"].unique())
    expected = len(modality_levels) * len(reader_levels) * len(case_levels)
    if len(frame) != expected:
        raise InputError(
            f"{source}: the design is not fully crossed: {len(frame)} readings, expected "
            f"{len(modality_levels)} modalities x {len(reader_levels)} readers x "
            f"{len(case_levels)} cases = {expected}; every reader must rate every case in "
            "every modality (split partial designs into complete blocks)")
    frame["modality"] = pd.Categorical(frame["modality"], categories=modality_levels)
    frame["reader"] = pd.Categorical(frame["reader"], categories=reader_levels)
    frame["case"] = pd.Categorical(frame["case"], categories=case_levels)
    frame = frame.sort_values(["modality", "reader", "case"])
    ratings = frame["rating"].to_numpy().reshape(len(modality_levels), len(reader_levels),
                                                  len(case_levels))
    truth_values = (frame.drop_duplicates("case").sort_values("case")["truth"]
                    .to_numpy().astype(int))
    if fom.binary_truth:
        n_positive = int(truth_values.sum())
        if min(n_positive, truth_values.size - n_positive) < 2:
            raise InputError(f"{source}: need at least 2 positive and 2 negative cases, got "
                             f"{n_positive} positive of {truth_values.size}")
    elif truth_values.size < 2:
        raise InputError(f"{source}: need at least 2 cases, got {truth_values.size}")
    return ReaderStudy(ratings, truth_values, modality_levels, reader_levels, case_levels)


def _fom_covariance(study: ReaderStudy, method: str, fom: FigureOfMerit) -> tuple[np.ndarray, np.ndarray]:
    """Reader figures of merit (t, r) and their covariance over case samples ((t r) x (t r)),
    row/column index ``i * r + j`` for modality i, reader j: DeLong's ``S10/m + S01/n``
    (AUC) or the jackknife over cases (module docstring)."""
    t, r, c = study.ratings.shape
    ratings = study.ratings.reshape(t * r, c)
    if method == "delong":
        components = structural_components(study.truth, ratings)
        return components.auc.reshape(t, r), components.covariance()
    return fom.values(study.truth, ratings).reshape(t, r), jackknife_covariance(study.truth, ratings, fom)


def _error_covariances(covariance: np.ndarray, t: int, r: int) -> dict:
    """Average the AUC covariance matrix into var_E, cov1, cov2, cov3, overall and per
    modality (var_E_i, cov2_i) and per reader (var_E_j, cov1_j)."""
    modality_of = np.repeat(np.arange(t), r)
    reader_of = np.tile(np.arange(r), t)
    same_modality = modality_of[:, None] == modality_of[None, :]
    same_reader = reader_of[:, None] == reader_of[None, :]

    def mean(mask):
        return float(covariance[mask].mean()) if mask.any() else math.nan

    diagonal = np.diag(covariance).reshape(t, r)
    per_modality_cov2 = [mean(same_modality & ~same_reader & (modality_of[:, None] == i))
                         for i in range(t)]
    per_reader_cov1 = [mean(same_reader & ~same_modality & (reader_of[:, None] == j))
                       for j in range(r)]
    return {
        "var_E": float(diagonal.mean()),
        "cov1": mean(same_reader & ~same_modality),
        "cov2": mean(same_modality & ~same_reader),
        "cov3": mean(~same_modality & ~same_reader),
        "var_E_modality": diagonal.mean(axis=1),
        "cov2_modality": np.array(per_modality_cov2),
        "var_E_reader": diagonal.mean(axis=0),
        "cov1_reader": np.array(per_reader_cov1),
    }


def _mean_squares(theta: np.ndarray) -> dict:
    t, r = theta.shape
    grand = theta.mean()
    modality_means = theta.mean(axis=1)
    reader_means = theta.mean(axis=0)
    ss_t = r * float(((modality_means - grand) ** 2).sum())
    ss_r = t * float(((reader_means - grand) ** 2).sum())
    interaction = theta - modality_means[:, None] - reader_means[None, :] + grand
    ss_tr = float((interaction**2).sum())
    df_t, df_r, df_tr = t - 1, r - 1, (t - 1) * (r - 1)

    def ms(ss, df):
        return ss / df if df > 0 else math.nan

    ms_r_modality = (((theta - modality_means[:, None]) ** 2).sum(axis=1) / df_r
                     if df_r > 0 else np.full(t, math.nan))
    return {"ss_t": ss_t, "ss_r": ss_r, "ss_tr": ss_tr, "df_t": df_t, "df_r": df_r,
            "df_tr": df_tr, "ms_t": ms(ss_t, df_t), "ms_r": ms(ss_r, df_r),
            "ms_tr": ms(ss_tr, df_tr), "ms_r_modality": ms_r_modality}


def _student(df: float, level: float) -> float:
    from scipy import special

    return float(special.stdtrit(df, 0.5 + level / 2)) if math.isfinite(df) else float(
        special.ndtri(0.5 + level / 2))


def _t_two_sided(statistic: float, df: float) -> float:
    from scipy import special

    if math.isnan(statistic):
        return math.nan
    if not math.isfinite(df):
        return float(2 * special.ndtr(-abs(statistic)))
    return float(2 * special.stdtr(df, -abs(statistic)))


def _ratio(numerator: float, denominator: float) -> float:
    if math.isnan(denominator):
        return math.nan
    if denominator > 0:
        return numerator / denominator
    return math.nan if numerator == 0 or math.isnan(numerator) else math.inf


@dataclass
class ORResult:
    """One OR analysis.

    ``figure_of_merit``: its name ("auc", "accuracy", ...). The tables below hold it in
    column ``fom``, and for AUC also in ``auc`` (the name they had before other figures of
    merit existed; ``reader_auc`` and ``modality_auc`` keep theirs too).
    ``reader_auc``: modality, reader, fom, se (sqrt of the reader's case-sampling
    variance by the chosen covariance method), normal ci_lo/ci_hi.
    ``modality_auc``: modality, fom (mean over readers), se, df (inf = normal), ci_lo,
    ci_hi, and the inputs of its standard error.
    ``differences``: comparison ("a - b"), modality_a, modality_b, difference, se, df,
    statistic (t, or z when df is inf), p, ci_lo, ci_hi.
    ``global_test``: statistic (F, or X2 for FRRC), df1, df2 (ddf_H for RRRC, inf for
    FRRC), p, ms_t, ms_tr, denominator.
    ``anova``: source (T, R, T*R), ss, df, ms.
    ``variance_components``: var_R, var_TR, cov1, cov2, cov3, var_E and the correlations
    rho1..rho3 = cov / var_E.
    ``reader_differences`` (FRRC only): reader, comparison, difference, se, z, p, ci_lo,
    ci_hi, var_E, cov1 (of that reader).
    """

    analysis: str
    covariance_method: str
    level: float
    n_readers: int
    n_cases: int
    n_positive: int
    reader_auc: pd.DataFrame
    modality_auc: pd.DataFrame
    differences: pd.DataFrame
    global_test: dict
    anova: pd.DataFrame
    variance_components: dict
    reader_differences: pd.DataFrame = field(default_factory=pd.DataFrame)
    auc_covariance: np.ndarray = field(default=None, repr=False)
    figure_of_merit: str = "auc"

    @property
    def reader_fom(self) -> pd.DataFrame:
        return self.reader_auc

    @property
    def modality_fom(self) -> pd.DataFrame:
        return self.modality_auc

    def table_rows(self, base: dict, hypothesis: str) -> list[dict]:
        """This analysis as rows of a results table, each starting with ``base``: one per
        modality (``estimate`` = its figure of merit), per difference, the global test when
        there are several modalities (``hypothesis`` names it, e.g. "equal AUCs"), and the
        per-reader differences (FRRC). Degrees of freedom above 1e6 are reported as inf:
        a modality whose readers agree exactly (the model's) has a reader mean square of
        ~1e-33 instead of 0 and a df of ~1e60; t and normal quantiles agree to 6 digits
        there."""
        def df(value: float) -> float:
            return math.inf if value > 1e6 else value

        rows = [{**base, "row_type": "modality", "modality": row.modality, "estimate": row.fom, "se": row.se,
                 "df": df(row.df), "ci_lo": row.ci_lo, "ci_hi": row.ci_hi}
                for row in self.modality_fom.itertuples()]
        rows += [{**base, "row_type": "difference", "comparison": row.comparison, "estimate": row.difference,
                  "se": row.se, "df": df(row.df), "statistic": row.statistic, "p": row.p,
                  "ci_lo": row.ci_lo, "ci_hi": row.ci_hi}
                 for row in self.differences.itertuples()]
        if len(self.modality_fom) > 1:
            test, components = self.global_test, self.variance_components
            rows.append({**base, "row_type": "global", "comparison": f"{test['name']} test of {hypothesis}",
                         "statistic": test["statistic"], "df1": test["df1"], "df2": df(test["df2"]), "p": test["p"],
                         **{key: components[key] for key in ("var_R", "var_TR", "var_E", "cov1", "cov2", "cov3")}})
        rows += [{**base, "row_type": "reader difference", "comparison": row.comparison, "reader": row.reader,
                  "estimate": row.difference, "se": row.se, "statistic": row.z, "p": row.p,
                  "ci_lo": row.ci_lo, "ci_hi": row.ci_hi, "df": np.inf}
                 for row in self.reader_differences.itertuples()]
        return rows


def obuchowski_rockette(data: pd.DataFrame, *, analysis: str = "RRRC",
                        covariance: str = "jackknife", level: float = 0.95,
                        reader: str = "reader", case: str = "case", modality: str = "modality",
                        truth: str = "truth", rating: str = "rating", modalities=None,
                        source: str = "reader study", fom: FigureOfMerit | str = "auc") -> ORResult:
    """Obuchowski-Rockette MRMC analysis with Hillis' ddf of a long reader-study table.

    ``data`` has one row per (reader, case, modality) with the case's ``truth`` (0/1) and
    the reader's ``rating`` (higher = more confident the case is positive; a probability
    or an ordinal score). ``analysis``: "RRRC" (random readers and cases: results apply
    to the populations of both), "FRRC" (these readers only) or "RRFC" (these cases only).
    ``covariance``: "jackknife" or "delong" (AUC only). ``fom``: the figure of merit,
    :data:`AUC` (default) or :data:`ACCURACY` (ratings = decided class index, truth = true
    class index) or any :class:`FigureOfMerit`, or its name. See the module docstring for
    the formulas.
    """
    if analysis not in ANALYSES:
        raise InputError(f"analysis must be one of {ANALYSES}, got {analysis!r}")
    if covariance not in COVARIANCE_METHODS:
        raise InputError(f"covariance must be one of {COVARIANCE_METHODS}, got {covariance!r}")
    if not 0 < level < 1:
        raise InputError(f"level must lie strictly between 0 and 1, got {level}")
    fom = figure_of_merit(fom)
    if covariance == "delong" and not fom.delong:
        raise InputError(f"DeLong covariances exist for the AUC only; use covariance='jackknife' for {fom.name}")
    study = reader_case_table(data, reader=reader, case=case, modality=modality, truth=truth,
                              rating=rating, modalities=modalities, source=source, fom=fom)
    t, r, c = study.ratings.shape
    if analysis != "FRRC" and r < 2:
        raise InputError(f"{source}: {analysis} treats readers as random and needs at least 2 "
                         f"readers, got {r}; use analysis='FRRC' for a single reader")
    theta, auc_covariance = _fom_covariance(study, covariance, fom)
    errors = _error_covariances(auc_covariance, t, r)
    squares = _mean_squares(theta)
    from scipy import special

    z_quantile = float(special.ndtri(0.5 + level / 2))
    ms_t, ms_tr = squares["ms_t"], squares["ms_tr"]
    var_e, cov1, cov2, cov3 = errors["var_E"], errors["cov1"], errors["cov2"], errors["cov3"]
    # Reader-pair covariances exist only with two or more readers; with one (FRRC) their
    # terms carry the factor r - 1 = 0 anyway.
    between_readers = max(cov2 - cov3, 0.0) if r > 1 else 0.0

    # Reader AUCs with their own case-sampling standard errors.
    reader_se = np.sqrt(np.clip(np.diag(auc_covariance), 0, None)).reshape(t, r)
    reader_auc = pd.DataFrame({
        "modality": np.repeat(study.modalities, r), "reader": np.tile(study.readers, t),
        "fom": theta.ravel(), "se": reader_se.ravel(),
        "ci_lo": (theta - z_quantile * reader_se).ravel(),
        "ci_hi": (theta + z_quantile * reader_se).ravel()})

    # Denominator of the global test (also the variance scale of differences) and its df.
    if analysis == "RRRC":
        denominator = ms_tr + r * between_readers
        df2 = _ratio(denominator**2, ms_tr**2 / squares["df_tr"]) if t > 1 else math.nan
        df_difference = df2
    elif analysis == "FRRC":
        denominator = var_e - cov1 + (r - 1) * between_readers
        df2 = df_difference = math.inf
    else:
        denominator = ms_tr
        df2 = df_difference = float(squares["df_tr"])

    # Single-modality intervals, each from that modality's data only.
    modality_rows = []
    for i, name in enumerate(study.modalities):
        ms_r_i = float(squares["ms_r_modality"][i])
        cov2_i, var_e_i = float(errors["cov2_modality"][i]), float(errors["var_E_modality"][i])
        if analysis == "RRRC":
            scale = ms_r_i + r * max(cov2_i, 0.0)
            df_i = _ratio(scale**2, ms_r_i**2 / (r - 1))
        elif analysis == "FRRC":
            scale = var_e_i + ((r - 1) * max(cov2_i, 0.0) if r > 1 else 0.0)
            df_i = math.inf
        else:
            scale, df_i = ms_r_i, float(r - 1)
        se_i = math.sqrt(max(scale, 0.0) / r)
        half = _student(df_i, level) * se_i
        modality_rows.append({"modality": name, "fom": float(theta[i].mean()), "se": se_i,
                              "df": df_i, "ci_lo": float(theta[i].mean()) - half,
                              "ci_hi": float(theta[i].mean()) + half, "ms_r": ms_r_i,
                              "var_E": var_e_i, "cov2": cov2_i})
    modality_auc = pd.DataFrame(modality_rows)
    if fom is AUC:  # the column's name before other figures of merit existed
        reader_auc.insert(2, "auc", reader_auc["fom"])
        modality_auc.insert(1, "auc", modality_auc["fom"])

    difference_rows = []
    se_difference = math.sqrt(max(2 * denominator / r, 0.0))
    for a, b in combinations(range(t), 2):
        difference = float(theta[a].mean() - theta[b].mean())
        statistic = _ratio(difference, se_difference) if difference else 0.0
        half = _student(df_difference, level) * se_difference
        difference_rows.append({
            "comparison": f"{study.modalities[a]} - {study.modalities[b]}",
            "modality_a": study.modalities[a], "modality_b": study.modalities[b],
            "difference": difference, "se": se_difference, "df": df_difference,
            "statistic": statistic, "p": _t_two_sided(statistic, df_difference),
            "ci_lo": difference - half, "ci_hi": difference + half})
    differences = pd.DataFrame(difference_rows, columns=[
        "comparison", "modality_a", "modality_b", "difference", "se", "df", "statistic", "p",
        "ci_lo", "ci_hi"])

    if t > 1:
        if analysis == "FRRC":
            statistic = _ratio((t - 1) * ms_t, denominator)
            p = float(special.chdtrc(t - 1, statistic))
        else:
            statistic = _ratio(ms_t, denominator)
            p = (float(special.fdtrc(t - 1, df2, statistic)) if math.isfinite(df2)
                 else float(special.chdtrc(t - 1, (t - 1) * statistic)))
    else:
        statistic = p = math.nan
    global_test = {"statistic": statistic, "df1": t - 1, "df2": df2, "p": p, "ms_t": ms_t,
                   "ms_tr": ms_tr, "denominator": denominator,
                   "name": "X2" if analysis == "FRRC" else "F"}

    if t > 1:
        var_tr = ms_tr - var_e + cov1 + cov2 - cov3
        var_r = (squares["ms_r"] - var_e - (t - 1) * cov1 + cov2 + (t - 1) * cov3 - var_tr) / t
    else:  # one modality: the reader-by-modality interaction is part of var_R
        var_tr = math.nan
        var_r = squares["ms_r"] - var_e + cov2
    components = {"var_R": var_r, "var_TR": var_tr, "cov1": cov1, "cov2": cov2, "cov3": cov3,
                  "var_E": var_e, "rho1": _ratio(cov1, var_e), "rho2": _ratio(cov2, var_e),
                  "rho3": _ratio(cov3, var_e)}

    anova = pd.DataFrame({"source": ["T", "R", "T*R"],
                          "ss": [squares["ss_t"], squares["ss_r"], squares["ss_tr"]],
                          "df": [squares["df_t"], squares["df_r"], squares["df_tr"]],
                          "ms": [ms_t, squares["ms_r"], ms_tr]})

    reader_differences = pd.DataFrame()
    if analysis == "FRRC":
        rows = []
        for j, reader_name in enumerate(study.readers):
            for a, b in combinations(range(t), 2):
                ia, ib = a * r + j, b * r + j
                variance = (auc_covariance[ia, ia] + auc_covariance[ib, ib]
                            - 2 * auc_covariance[ia, ib])
                se = math.sqrt(max(float(variance), 0.0))
                difference = float(theta[a, j] - theta[b, j])
                z = _ratio(difference, se) if difference else 0.0
                rows.append({"reader": reader_name,
                             "comparison": f"{study.modalities[a]} - {study.modalities[b]}",
                             "difference": difference, "se": se, "z": z,
                             "p": _t_two_sided(z, math.inf),
                             "ci_lo": difference - z_quantile * se,
                             "ci_hi": difference + z_quantile * se,
                             "var_E": float(errors["var_E_reader"][j]),
                             "cov1": float(errors["cov1_reader"][j])})
        reader_differences = pd.DataFrame(rows)

    return ORResult(analysis=analysis, covariance_method=covariance, level=level,
                    n_readers=r, n_cases=c, n_positive=int(study.truth.sum()) if fom.binary_truth else 0,
                    reader_auc=reader_auc, modality_auc=modality_auc, differences=differences,
                    global_test=global_test, anova=anova, variance_components=components,
                    reader_differences=reader_differences, auc_covariance=auc_covariance,
                    figure_of_merit=fom.name)


def simulate_roe_metz(n_readers: int = 5, n_positive: int = 50, n_negative: int = 50,
                      separations=(1.5, 1.5), *, var_R: float = 0.011, var_TR: float = 0.011,
                      var_C: float = 0.3, var_TC: float = 0.3, var_RC: float = 0.2,
                      var_E: float = 0.2, seed=None) -> pd.DataFrame:
    """Simulate a fully crossed reader study under the Roe & Metz (1997, Acad Radiol
    4:298-303) model, as the long table :func:`obuchowski_rockette` reads.

    The latent rating of case k (truth s) by reader j in modality i is
    ``s * separations[i] + R_j + C_k + (TR)_ij + (TC)_ik + (RC)_jk + E_ijk``, every effect
    normal with its variance and drawn independently for positive and negative cases (as
    in Roe & Metz). The case components sum to 1 by default, as in their Table 1; equal
    separations make the modalities' expected AUCs equal (the null hypothesis).
    """
    rng = np.random.default_rng(seed)
    separations = np.asarray(separations, dtype=float)
    t, r = separations.size, int(n_readers)
    truth = np.r_[np.ones(int(n_positive), int), np.zeros(int(n_negative), int)]
    ratings = np.empty((t, r, truth.size))
    for status in (1, 0):
        cases = np.flatnonzero(truth == status)
        k = cases.size

        def draw(variance, *shape):
            return rng.normal(0.0, math.sqrt(variance), shape)

        ratings[:, :, cases] = (
            status * separations[:, None, None]
            + draw(var_R, 1, r, 1) + draw(var_C, 1, 1, k) + draw(var_TR, t, r, 1)
            + draw(var_TC, t, 1, k) + draw(var_RC, 1, r, k) + draw(var_E, t, r, k))
    index = pd.MultiIndex.from_product([range(t), range(r), range(truth.size)],
                                       names=["modality", "reader", "case"])
    table = index.to_frame(index=False)
    table["truth"] = truth[table["case"].to_numpy()]
    table["rating"] = ratings.ravel()
    return table
