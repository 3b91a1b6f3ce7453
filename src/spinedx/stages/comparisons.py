"""Paired-comparisons stage: every pair of backbones (per input), every pair of inputs (per
backbone) and, when the study fuses clinical data, fusion against image only, compared
on the same cases. A volume study's models (``<mode>_<network>``) are its backbones, so
every pair of models is compared, also of the same mode (``table4_input_modes_delong``
has the pairs of different modes, Holm-adjusted per metric). With one sequence only the
ALL input is compared (the sequence's predictions are the same).

One table (``paired_comparisons.csv``) of :func:`spinedx.stats.comparisons.paired_comparison_table`
rows: AUC by DeLong's test for correlated AUCs, sensitivity and specificity by McNemar's
exact test with Newcombe's interval of the paired difference (decisions: the study's
rule, probability > decision.threshold), differences ``model_a - model_b``. Each pair is
compared on the cases both models scored (a patient lacking a sequence has no
prediction of that input). Case level; per cohort: the external cohort scored by the
ensemble of the fold models and the internal cohort by its out-of-fold predictions
(:mod:`spinedx.final_system`). p-values are adjusted within each cohort
(:func:`spinedx.stats.comparisons.adjust_family`, config ``comparisons.adjust``) over
every row (``family: all``) or per metric (``family: metric``).

Studies of any other shape labelled per case (:func:`multiclass_main_stage`: N classes,
and two classes with a hold-out split, several external cohorts, clinical fusion or
planes): the same pairs and, with clinical fusion, ``image+clinical`` vs ``image`` of each
backbone (the fusion stage's ``fusion_input``, :data:`spinedx.stats.fusion.FUSED` and
:data:`~spinedx.stats.fusion.IMAGE_ONLY`: the same learner without the covariates, the
fair baseline) on each test set of :func:`spinedx.final_system.evaluated_sets` (the
internal test set, each external cohort, the pooled external cohorts; every model scored
by :func:`spinedx.final_system.scoring_predictions`). N classes:
:func:`spinedx.stats.comparisons.multiclass_paired_comparison_table` rows (accuracy of the
argmax decisions by exact McNemar; per class one-vs-rest AUC by DeLong and sensitivity by
exact McNemar). Two classes: the two-class rows above (AUC by DeLong, sensitivity and
specificity by exact McNemar at decision.threshold), ``class`` the positive class. p
adjusted within each test set over every pair, fusion included. (The reference shape has
no fusion: a fused study is of another shape.)

Studies whose labels belong to images (:func:`image_main_stage`; labels.source annotation,
no case level): the same pairs on images (inputs: each sequence, each plane, ALL; every
image scored by :func:`spinedx.final_system.scoring_image_predictions`) on each test set,
:func:`spinedx.stats.comparisons.cluster_bootstrap_comparison_table` rows: images of one
dog are correlated, so the difference (accuracy, per-class AUC and sensitivity) is
bootstrapped over the dogs both models scored (evaluation.bootstrap_replicates, seed),
with its percentile interval and bootstrap p, not McNemar or DeLong; p adjusted within
each test set.
"""

from __future__ import annotations

import logging
from itertools import combinations

import pandas as pd

from spinedx.errors import InputError
from spinedx.aggregation import ALL_INPUT, distinct_inputs, image_inputs
from spinedx.final_system import evaluated_cases, evaluated_sets, scoring_image_predictions, scoring_predictions
from spinedx.input_modes import model_names
from spinedx.io import read_parquets, write_csv
from spinedx.stats.comparisons import (COLUMNS, MULTICLASS_COLUMNS, adjust_family, cluster_bootstrap_comparison_table,
                                       multiclass_paired_comparison_table, paired_comparison_table)
from spinedx.task import BinaryTask, task_from_config

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["cohort", "kind", *COLUMNS]


def model_name(backbone: str, input_: str) -> str:
    return f"{backbone}/{input_}"


def _pairs(backbones, inputs) -> list[tuple[str, tuple[str, str], tuple[str, str]]]:
    """(kind, (backbone, input) a, b): backbones per input, then inputs per backbone."""
    pairs = [("backbones", (a, input_), (b, input_)) for input_ in inputs for a, b in combinations(backbones, 2)]
    pairs += [("inputs", (backbone, a), (backbone, b)) for backbone in backbones for a, b in combinations(inputs, 2)]
    return pairs


def _paired_cases(name_a: str, cases_a: pd.DataFrame, name_b: str, cases_b: pd.DataFrame,
                  score_cols) -> pd.DataFrame:
    """The cases both models scored: ``patient_id``, ``label_a``, ``label_b`` and each score
    column with suffix ``_a`` / ``_b``; the two must agree on every label."""
    columns = ["patient_id", "label", *score_cols]
    both = cases_a[columns].merge(cases_b[columns], on="patient_id", suffixes=("_a", "_b"))
    if (both["label_a"] != both["label_b"]).any():
        raise InputError(f"{name_a} and {name_b} disagree on the labels of patient(s) "
                         f"{both.loc[both['label_a'] != both['label_b'], 'patient_id'].tolist()[:5]}; rerun case_level")
    return both


def _compare(kind: str, name_a: str, cases_a: pd.DataFrame, name_b: str, cases_b: pd.DataFrame,
             score_col: str, threshold: float, level: float) -> pd.DataFrame:
    """One pair on the cases both scored (``patient_id``, ``label``, ``score_col``)."""
    both = _paired_cases(name_a, cases_a, name_b, cases_b, [score_col])
    if both.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    table = paired_comparison_table(both["label_a"].to_numpy(), {name_a: both[f"{score_col}_a"].to_numpy(),
                                                                 name_b: both[f"{score_col}_b"].to_numpy()},
                                    [(name_a, name_b)], threshold=threshold, level=level)
    return table.assign(kind=kind)


def comparisons_table(case_predictions: pd.DataFrame, backbones, inputs, score_col: str, threshold: float,
                      level: float, adjust: str, family: str) -> pd.DataFrame:
    """Every comparison of every cohort, p adjusted within each cohort's family."""
    tables = []
    for cohort in ("external", "internal"):
        cases = evaluated_cases(case_predictions, input_=None, cohorts=(cohort,))
        if cases.empty:
            continue
        parts = []
        for kind, (backbone_a, input_a), (backbone_b, input_b) in _pairs(backbones, inputs):
            a = cases[(cases["backbone"] == backbone_a) & (cases["input"] == input_a)]
            b = cases[(cases["backbone"] == backbone_b) & (cases["input"] == input_b)]
            parts.append(_compare(kind, model_name(backbone_a, input_a), a, model_name(backbone_b, input_b), b,
                                  score_col, threshold, level))
        tables.append(_adjusted(parts, "cohort", cohort, adjust, family))
    return _joined(tables, TABLE_COLUMNS)


def _adjusted(parts: list[pd.DataFrame], column: str, name: str, adjust: str, family: str) -> pd.DataFrame | None:
    """One family's rows (a cohort's or a test set's: ``column`` = ``name``), p adjusted
    within it (None: no rows)."""
    parts = [p for p in parts if not p.empty]
    if not parts:
        return None
    table = pd.concat(parts, ignore_index=True).assign(**{column: name})
    return adjust_family(table, adjust, family, f"of {column.replace('_', ' ')} {name}")


def _joined(tables: list, columns: list[str]) -> pd.DataFrame:
    tables = [t for t in tables if t is not None]
    if not tables:
        return pd.DataFrame(columns=columns)
    return pd.concat(tables, ignore_index=True)[columns]


def main_stage(config, case_prediction_paths, out, fusion_paths=()) -> pd.DataFrame:
    task = BinaryTask.from_config(config)
    settings = config["comparisons"]
    if fusion_paths:
        raise InputError(f"{list(fusion_paths)}: fusion predictions are compared by the command multiclass_comparisons "
                         "(a study with clinical fusion is not of the reference shape); run that command instead")
    predictions = read_parquets(case_prediction_paths)
    # One sequence: only ALL (no pair counted twice in the multiplicity family).
    inputs = distinct_inputs(predictions["input"])
    # model_names: the backbones, or a volume study's models (2d_resnet10t, 3d_resnet10, ...).
    table = comparisons_table(predictions, model_names(config), inputs, task.positive_column,
                              task.threshold, config["evaluation"]["ci_level"], settings["adjust"],
                              settings["family"])
    write_csv(table, out)
    significant = table[table["p_adjusted"] < 1 - config["evaluation"]["ci_level"]]
    log.info("paired comparisons: %d rows, %d with adjusted p < %.2g -> %s", len(table), len(significant),
             1 - config["evaluation"]["ci_level"], out)
    return table


# --- N-class studies ------------------------------------------------------------------

MULTICLASS_TABLE_COLUMNS = ["test_set", "kind", *MULTICLASS_COLUMNS]


def _compare_multiclass(kind: str, name_a: str, cases_a: pd.DataFrame, name_b: str, cases_b: pd.DataFrame,
                        task, level: float) -> pd.DataFrame:
    """One N-class pair on the cases both scored (``patient_id``, ``label``, ``prob_<class>``);
    two classes (a :class:`~spinedx.task.BinaryTask`): the two-class rows (DeLong AUC,
    McNemar sensitivity and specificity at the task's threshold), ``class`` the positive class."""
    if isinstance(task, BinaryTask):
        both = _paired_cases(name_a, cases_a, name_b, cases_b, [task.positive_column])
        if both.empty:
            return pd.DataFrame(columns=MULTICLASS_TABLE_COLUMNS)
        scores = {name_a: both[f"{task.positive_column}_a"].to_numpy(float),
                  name_b: both[f"{task.positive_column}_b"].to_numpy(float)}
        return paired_comparison_table((both["label_a"] == task.positive_label).astype(int).to_numpy(), scores,
                                       [(name_a, name_b)], threshold=task.threshold, level=level).assign(
            kind=kind, **{"class": task.positive_class})
    columns = list(task.probability_columns)
    both = _paired_cases(name_a, cases_a, name_b, cases_b, columns)
    if both.empty:
        return pd.DataFrame(columns=MULTICLASS_TABLE_COLUMNS)
    probs = {name_a: both[[f"{c}_a" for c in columns]].to_numpy(float),
             name_b: both[[f"{c}_b" for c in columns]].to_numpy(float)}
    return multiclass_paired_comparison_table(both["label_a"].to_numpy(int), probs, task.classes,
                                              [(name_a, name_b)], level=level).assign(kind=kind)


def multiclass_comparisons_table(case_predictions: pd.DataFrame, backbones, inputs, task, level: float,
                                 adjust: str, family: str, fusion: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every N-class pair (two classes: two-class rows, :func:`_compare_multiclass`) on
    every test set; p adjusted within each test set over all its rows (``family: all``) or
    per metric."""
    models = {(backbone, input_): dict(evaluated_sets(scoring_predictions(case_predictions, backbone, input_)))
              for backbone in backbones for input_ in inputs}
    pairs = [(kind, a, b, models[a], models[b]) for kind, a, b in _pairs(backbones, inputs)]
    if fusion is not None and not fusion.empty:
        from spinedx.stats.fusion import FUSED, IMAGE_ONLY, PREDICTION_SET_COLUMN

        required = ["backbone", "fusion_input", "model", PREDICTION_SET_COLUMN, "patient_id", "cohort", "label"]
        missing = [c for c in [*required, *task.probability_columns] if c not in fusion.columns]
        if missing:
            raise InputError(f"fusion predictions lack column(s) {missing}; rerun the fusion stage")
        # The fusion table's fusion_input takes the case-level table's input place, so the
        # same scoring rule picks each patient's test prediction (external: the repeats' mean).
        fused = fusion.rename(columns={"fusion_input": "input"})
        for backbone in dict.fromkeys(fused["backbone"]):
            pairs.append(("fusion", (backbone, FUSED), (backbone, IMAGE_ONLY),
                          dict(evaluated_sets(scoring_predictions(fused, backbone, FUSED))),
                          dict(evaluated_sets(scoring_predictions(fused, backbone, IMAGE_ONLY)))))
    test_sets = list(dict.fromkeys(name for *_, sets_a, sets_b in pairs for name in [*sets_a, *sets_b]))
    tables = []
    for test_set in test_sets:
        parts = [_compare_multiclass(kind, model_name(*a), sets_a[test_set], model_name(*b), sets_b[test_set],
                                     task, level)
                 for kind, a, b, sets_a, sets_b in pairs if test_set in sets_a and test_set in sets_b]
        tables.append(_adjusted(parts, "test_set", test_set, adjust, family))
    return _joined(tables, MULTICLASS_TABLE_COLUMNS)


def multiclass_main_stage(config, case_prediction_paths, out, fusion_paths=()) -> pd.DataFrame:
    task = task_from_config(config)
    settings = config["comparisons"]
    predictions = read_parquets(case_prediction_paths)
    fusion = read_parquets(fusion_paths) if fusion_paths else None
    table = multiclass_comparisons_table(predictions, model_names(config), distinct_inputs(predictions["input"]),
                                         task, config["evaluation"]["ci_level"], settings["adjust"],
                                         settings["family"], fusion)
    write_csv(table, out)
    significant = table[table["p_adjusted"] < 1 - config["evaluation"]["ci_level"]]
    log.info("N-class paired comparisons: %d rows on %d test set(s), %d with adjusted p < %.2g -> %s", len(table),
             table["test_set"].nunique(), len(significant), 1 - config["evaluation"]["ci_level"], out)
    return table


# --- labels of images -------------------------------------------------------------------

def image_comparisons_table(image_predictions: pd.DataFrame, backbones, sequences, planes, task, n_boot: int,
                            seed: int, level: float, adjust: str, family: str) -> pd.DataFrame:
    """Every pair (backbones per input, inputs per backbone) on every test set, on images,
    the difference bootstrapped over dogs; p adjusted within each test set."""
    # one sequence: ALL is its images again (distinct_inputs)
    inputs = distinct_inputs([*sequences, *planes, ALL_INPUT])
    models = {}
    for backbone in backbones:
        scored = scoring_image_predictions(image_predictions, backbone)
        for input_, rows in image_inputs(scored, sequences, planes):
            if input_ in inputs:
                models[(backbone, input_)] = dict(evaluated_sets(rows))
    columns = list(task.probability_columns)
    tables = []
    for test_set in dict.fromkeys(name for sets in models.values() for name in sets):
        parts = []
        for kind, a, b in _pairs(backbones, inputs):
            rows_a, rows_b = models[a].get(test_set), models[b].get(test_set)
            if rows_a is None or rows_b is None:
                continue
            parts.append(cluster_bootstrap_comparison_table(
                model_name(*a), rows_a["label"], rows_a[columns], rows_a["patient_id"],
                model_name(*b), rows_b["label"], rows_b[columns], rows_b["patient_id"], task.classes,
                n_boot=n_boot, seed=seed, level=level).assign(kind=kind))
        tables.append(_adjusted(parts, "test_set", test_set, adjust, family))
    return _joined(tables, MULTICLASS_TABLE_COLUMNS)


def image_main_stage(config, image_prediction_paths, out) -> pd.DataFrame:
    task = task_from_config(config)
    settings, evaluation = config["comparisons"], config["evaluation"]
    table = image_comparisons_table(read_parquets(image_prediction_paths), model_names(config),
                                    list(config["sequences"]), dict(config["planes"] or {}), task,
                                    int(evaluation["bootstrap_replicates"]), int(evaluation["seed"]),
                                    evaluation["ci_level"], settings["adjust"], settings["family"])
    write_csv(table, out)
    significant = table[table["p_adjusted"] < 1 - evaluation["ci_level"]]
    log.info("paired comparisons on images (dog bootstrap): %d rows on %d test set(s), %d with adjusted p < %.2g "
             "-> %s", len(table), table["test_set"].nunique(), len(significant), 1 - evaluation["ci_level"], out)
    return table
