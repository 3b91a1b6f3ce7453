"""N-class reader-study stage (studies of more than two classes, e.g. ISMF-Net's observer
study): readers' class decisions per condition, grouped by experience, the gain of each
later condition (aided) over the first (unaided), the multi-reader multi-case comparison
of the conditions and of the model against the readers, and the figure. Also the demo's
simulated readers (:func:`demo_stage`).

The readers' input: :func:`spinedx.readers.reader_study.read_multiclass_reader_study`
(a class ``decision`` per reader x case x condition; optional ``rating`` = confidence and
``prob_<class>``).

Tables (names: :mod:`spinedx.paths`):

* ``reader_study_metrics.csv``: one row per reader x condition (``row_type`` reader:
  :func:`spinedx.stats.multiclass.multiclass_tables` on that reader's decisions: accuracy
  with a Wilson interval, macro sensitivity, macro specificity, macro-F1, Cohen's kappa
  and, with ``prob_<class>``, macro-AUC, with case-bootstrap percentile intervals), per
  experience group x condition and for all readers (``row_type`` experience / all
  readers: the group's pooled readings, :func:`spinedx.stats.multiclass_readers.pooled_reader_metrics`,
  case-bootstrap intervals), then the model on the read cases (``row_type`` model: the
  same call the N-class evaluation makes for its case-level table, so on the same cases
  the row equals that table's row).
* ``reader_study_per_class.csv``: per-class (one-vs-rest) sensitivity of each reader,
  group and the model, with intervals (Wilson for a reader and the model, case bootstrap
  for a group).
* ``reader_study_gain.csv``: per experience group and all readers, per metric: the value
  in the first condition, in each later one, the gain (later - first) and its
  case-bootstrap interval (both conditions from the same replicates).
* ``reader_study_mrmc.csv``: Obuchowski-Rockette with Hillis' ddf
  (:func:`spinedx.stats.mrmc.obuchowski_rockette`, analyses of config
  ``reader_study.analyses``) on the figure of merit ``accuracy`` (proportion of cases
  decided correctly: defined for any number of classes) with jackknife covariances
  (DeLong's exist only for the AUC; with ``covariance: delong`` the table says jackknife
  and the log says why). Column ``figure_of_merit`` names it. Rows as in the two-class
  reader study (``modality``, ``difference``, ``global``, ``reader difference``); the
  model is a modality whose decision is the same for every reader (RJafroc's "2T").
* ``reader_study_decisions.csv``: true class x decided class counts per reader x
  condition and for the model.
* ``reader_study_accuracy`` figure: each reader's accuracy from the first to the last
  condition, coloured by experience, group means, and the model's accuracy on the same
  cases as a reference line.

The model is the final system: the case-level ALL input of ``figures.final_backbone``
(else the best case-level macro-AUC on the external test set) scoring each read case by
the prediction that never saw it (:func:`spinedx.final_system.scoring_predictions`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.config import ConfigError
from spinedx.demo.reader_study import EXPERIENCE_LEVELS, simulate_multiclass_readers
from spinedx.errors import InputError
from spinedx.final_system import EXTERNAL_POOLED, choose_final_backbone_multiclass, scoring_predictions
from spinedx.io import read_parquets, write_csv
from spinedx.plotting import PAGE_WIDTH, colors, pyplot, save_figure
from spinedx.readers.cases import read_cases
from spinedx.readers.reader_study import read_multiclass_reader_study
from spinedx.stats.mrmc import ACCURACY, obuchowski_rockette
from spinedx.stats.multiclass import CONFUSION_METRICS, multiclass_tables
from spinedx.stats.multiclass_readers import condition_gain, pooled_reader_metrics
from spinedx.task import task_from_config

log = logging.getLogger(__name__)

MODEL = "model"
ALL_READERS = "all readers"
METRICS = ("accuracy", "macro_sensitivity", "macro_specificity", "macro_f1", "kappa", "macro_auc")
METRIC_COLUMNS = ["row_type", "reader", "experience", "condition", "n_readers", "n_cases",
                  *(f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi")), "intervals"]
PER_CLASS_COLUMNS = ["row_type", "reader", "experience", "condition", "class", "n_true", "tp", "sensitivity",
                     "sensitivity_lo", "sensitivity_hi", "intervals"]
GAIN_COLUMNS = ["experience", "n_readers", "n_cases", "metric", "reference_condition", "condition", "reference",
                "value", "gain", "gain_lo", "gain_hi"]
MRMC_COLUMNS = ["contrast", "figure_of_merit", "analysis", "covariance", "row_type", "modality", "comparison", "reader",
                "estimate", "se", "df", "statistic", "p", "ci_lo", "ci_hi", "df1", "df2", "var_R", "var_TR", "var_E",
                "cov1", "cov2", "cov3", "n_readers", "n_cases"]


def external_test_set(config) -> str:
    """The prediction set of the N-class tables that the demo readers read: the pooled
    external cohorts (their single cohort when there is one)."""
    cohorts = list(config["data"]["external_cohorts"])
    return EXTERNAL_POOLED if len(cohorts) > 1 else cohorts[0]


def model_predictions(case_predictions: pd.DataFrame, overall: pd.DataFrame, config) -> tuple[str, pd.DataFrame]:
    """The final system's backbone and its case-level prediction of every scored patient."""
    backbone = choose_final_backbone_multiclass(overall, config, external_test_set(config))
    return backbone, scoring_predictions(case_predictions, backbone)


# --- the demo's readers -----------------------------------------------------------------

def demo_stage(config, case_prediction_paths, overall_path, out) -> pd.DataFrame:
    """Simulated readers (:func:`spinedx.demo.reader_study.simulate_multiclass_readers`) of
    the external cohorts' cases, written as the N-class readers.csv."""
    task = task_from_config(config)
    _, predictions = model_predictions(read_parquets(case_prediction_paths), pd.read_csv(overall_path), config)
    cases = predictions[predictions["cohort"] != "internal"]
    if cases.empty:
        cases = predictions
    if cases.empty:
        raise InputError("the demo reader study found no case-level predictions of the final system; rerun case_level")
    try:
        readers = simulate_multiclass_readers(cases, config["reader_study"]["demo"], task.classes,
                                              config["reader_study"]["conditions"])
    except ValueError as error:  # settings the schema allows but the simulation cannot honour
        raise ConfigError(f"reader_study.demo: {error}") from error
    write_csv(readers, out)
    log.info("demo N-class reader study: %d readers x %d cases x %d conditions -> %s", readers["reader"].nunique(),
             readers["patient_id"].nunique(), readers["condition"].nunique(), out)
    return readers


# --- metrics ----------------------------------------------------------------------------

def _experience_order(values) -> list[str]:
    """Experience groups, most experienced first for the known names, others alphabetically."""
    present = sorted({v for v in values if v})
    known = [v for v in EXPERIENCE_LEVELS if v in present]
    return known + [v for v in present if v not in known]


def _decision_matrix(readings: pd.DataFrame, readers, cases) -> np.ndarray:
    """(readers, cases) decided class indexes of one condition."""
    table = readings.pivot(index="reader", columns="patient_id", values="decision_label")
    return table.loc[list(readers), list(cases)].to_numpy(dtype=np.int64)


def _tables_row(tables: dict, keys: dict, classes, intervals: str) -> tuple[dict, list[dict]]:
    overall = tables["overall"].iloc[0]
    row = {**keys, "n_cases": int(overall["n"])}
    for metric in METRICS:
        row.update({metric: overall[metric], f"{metric}_lo": overall[f"{metric}_lo"],
                    f"{metric}_hi": overall[f"{metric}_hi"]})
    row["intervals"] = intervals
    per_class = [{**keys, "class": r["class"], "n_true": int(r["n_true"]), "tp": int(r["tp"]),
                  "sensitivity": r["sensitivity"], "sensitivity_lo": r["sensitivity_lo"],
                  "sensitivity_hi": r["sensitivity_hi"], "intervals": "wilson"}
                 for r in tables["per_class"].to_dict("records")]
    return row, per_class


def metric_tables(study: pd.DataFrame, model: pd.DataFrame, classes, conditions, options: dict,
                  model_probabilities: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The metrics table and the per-class sensitivity table (module docstring)."""
    probability_columns = [f"prob_{name}" for name in classes]
    has_probabilities = all(c in study.columns for c in probability_columns)
    common = dict(n_boot=options["n_boot"], seed=options["seed"], level=options["level"], stratify="none")
    rows, per_class = [], []
    cases = sorted(study["patient_id"].unique())
    truth = study.drop_duplicates("patient_id").set_index("patient_id").loc[cases, "label"].to_numpy(dtype=np.int64)
    experience = study.drop_duplicates("reader").set_index("reader")["experience"]
    groups = [(group, sorted(experience.index[experience == group])) for group in _experience_order(experience)]
    groups.append((ALL_READERS, sorted(experience.index)))
    for condition in conditions:
        readings = study[study["condition"] == condition]
        for reader, own in readings.groupby("reader", sort=True):
            tables = multiclass_tables(own["label"].to_numpy(), own["patient_id"].to_numpy(), classes,
                                       decisions=own["decision_label"].to_numpy(),
                                       probs=own[probability_columns].to_numpy() if has_probabilities else None,
                                       proportion_intervals="wilson", **common)
            keys = {"row_type": "reader", "reader": reader, "experience": experience[reader], "condition": condition,
                    "n_readers": 1}
            row, classes_rows = _tables_row(tables, keys, classes, "accuracy: Wilson; others: case bootstrap")
            rows.append(row)
            per_class += classes_rows
        for group, members in groups:
            decisions = _decision_matrix(readings, members, cases)
            pooled = pooled_reader_metrics(truth, decisions, len(classes), **{k: common[k] for k in
                                                                           ("n_boot", "seed", "level")})
            keys = {"row_type": "all readers" if group == ALL_READERS else "experience",
                    "reader": ALL_READERS if group == ALL_READERS else "", "experience": "" if group == ALL_READERS
                    else group, "condition": condition, "n_readers": len(members)}
            row = {**keys, "n_cases": len(cases), "intervals": "case bootstrap (pooled readings)"}
            for metric in CONFUSION_METRICS:
                row.update({metric: pooled[metric], f"{metric}_lo": pooled[f"{metric}_lo"],
                            f"{metric}_hi": pooled[f"{metric}_hi"]})
            rows.append(row)
            n_true = np.bincount(truth, minlength=len(classes))
            for k, name in enumerate(classes):
                per_class.append({**keys, "class": name, "n_true": int(n_true[k] * len(members)),
                                  "tp": int(np.sum((decisions == k) & (truth[None, :] == k))),
                                  "sensitivity": pooled["sensitivity"][k], "sensitivity_lo": pooled["sensitivity_lo"][k],
                                  "sensitivity_hi": pooled["sensitivity_hi"][k],
                                  "intervals": "case bootstrap (pooled readings)"})
    if len(model):
        tables = multiclass_tables(model["label"].to_numpy(), model["patient_id"].to_numpy(), classes,
                                   probs=model[model_probabilities].to_numpy(), decisions=model["decision_label"].to_numpy(),
                                   proportion_intervals="wilson", **common)
        keys = {"row_type": MODEL, "reader": MODEL, "experience": "", "condition": MODEL, "n_readers": 0}
        row, classes_rows = _tables_row(tables, keys, classes, "accuracy: Wilson; others: case bootstrap")
        rows.append(row)
        per_class += classes_rows
    return (pd.DataFrame(rows).reindex(columns=METRIC_COLUMNS),
            pd.DataFrame(per_class).reindex(columns=PER_CLASS_COLUMNS))


def gain_table(study: pd.DataFrame, n_classes: int, conditions, options: dict) -> pd.DataFrame:
    """Per experience group and all readers: each later condition against the first."""
    cases = sorted(study["patient_id"].unique())
    truth = study.drop_duplicates("patient_id").set_index("patient_id").loc[cases, "label"].to_numpy(dtype=np.int64)
    experience = study.drop_duplicates("reader").set_index("reader")["experience"]
    groups = [(group, sorted(experience.index[experience == group])) for group in _experience_order(experience)]
    groups.append((ALL_READERS, sorted(experience.index)))
    rows = []
    first = conditions[0]
    for group, members in groups:
        reference = _decision_matrix(study[study["condition"] == first], members, cases)
        for condition in conditions[1:]:
            other = _decision_matrix(study[study["condition"] == condition], members, cases)
            gains = condition_gain(truth, reference, other, n_classes, **options)
            for metric in CONFUSION_METRICS:
                value = gains[metric]
                rows.append({"experience": group, "n_readers": len(members), "n_cases": len(cases), "metric": metric,
                             "reference_condition": first, "condition": condition, "reference": value["reference"],
                             "value": value["other"], "gain": value["gain"], "gain_lo": value["gain_lo"],
                             "gain_hi": value["gain_hi"]})
    return pd.DataFrame(rows, columns=GAIN_COLUMNS)


# --- MRMC -------------------------------------------------------------------------------


def _or_rows(data: pd.DataFrame, contrast: str, modalities, analyses, level: float, source: str) -> list[dict]:
    rows = []
    for analysis in analyses:
        result = obuchowski_rockette(data, analysis=analysis, covariance="jackknife", level=level,
                                     modalities=modalities, source=source, fom=ACCURACY, rating="decision_label",
                                     truth="label")
        base = {"contrast": contrast, "figure_of_merit": result.figure_of_merit, "analysis": analysis,
                "covariance": result.covariance_method, "n_readers": result.n_readers, "n_cases": result.n_cases}
        rows += result.table_rows(base, "equal accuracy")
    return rows


def mrmc_table(study: pd.DataFrame, model: pd.DataFrame, settings: dict, level: float, source: str) -> pd.DataFrame:
    """OR analyses on accuracy: the conditions (later minus earlier), and the model against
    each condition's readers (model minus readers)."""
    conditions = list(settings["conditions"])
    if settings["covariance"] != "jackknife":
        log.info("reader study: the accuracy figure of merit has jackknife covariances only (DeLong's are the "
                 "AUC's); reader_study.covariance %s is not used for N classes", settings["covariance"])
    long = study.rename(columns={"patient_id": "case", "condition": "modality"})
    rows = []
    if len(conditions) > 1:
        rows += _or_rows(long, "conditions", conditions[::-1], settings["analyses"], level, source)
    if settings["model_vs_readers"] and len(model):
        scored = long[long["case"].isin(model["patient_id"])]
        unscored = sorted(set(long["case"]) - set(model["patient_id"]))
        if unscored:
            log.warning("reader study: %d read case(s) have no model prediction and are left out of the "
                        "model-vs-readers analysis: %s", len(unscored), unscored[:10])
        duplicated = scored[scored["modality"] == conditions[0]].drop(columns=["decision_label", "modality"]).merge(
            model[["patient_id", "decision_label"]].rename(columns={"patient_id": "case"}), on="case"
        ).assign(modality=MODEL)
        for condition in conditions:
            data = pd.concat([duplicated, scored[scored["modality"] == condition]], ignore_index=True)
            rows += _or_rows(data, f"model vs {condition}", [MODEL, condition], settings["analyses"], level, source)
    return pd.DataFrame(rows).reindex(columns=MRMC_COLUMNS)


def decision_table(study: pd.DataFrame, model: pd.DataFrame, classes) -> pd.DataFrame:
    """Counts of (true class, decided class) per reader x condition, then the model's."""
    rows = []
    frames = [(key, group) for key, group in study.groupby(["condition", "reader"], sort=False)]
    if len(model):
        frames.append(((MODEL, MODEL), model))
    for (condition, reader), readings in frames:
        counts = readings.groupby(["diagnosis", "decision"]).size()
        for truth in classes:
            for decided in classes:
                rows.append({"reader": reader, "condition": condition, "true_class": truth, "decided_class": decided,
                             "n": int(counts.get((truth, decided), 0))})
    return pd.DataFrame(rows, columns=["reader", "condition", "true_class", "decided_class", "n"])


# --- figure -----------------------------------------------------------------------------

def accuracy_figure(metrics: pd.DataFrame, conditions, backbone: str):
    """Each reader's accuracy per condition (a line from the first to the last), coloured
    by experience group; group means as thick lines; the model's accuracy as a reference."""
    plt = pyplot()
    readers = metrics[metrics["row_type"] == "reader"]
    groups = _experience_order(readers["experience"]) or [""]
    palette = colors(groups)
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH * 0.62, PAGE_WIDTH * 0.5))
    positions = {condition: i for i, condition in enumerate(conditions)}
    offsets = np.linspace(-0.08, 0.08, max(readers["reader"].nunique(), 1))
    for offset, (reader, own) in zip(offsets, readers.groupby("reader", sort=True)):
        own = own.set_index("condition").loc[list(conditions)]
        color = palette[own["experience"].iloc[0] or ""] if groups != [""] else "0.4"
        x = np.array([positions[c] for c in conditions]) + offset
        ax.plot(x, own["accuracy"], "-o", color=color, lw=0.8, ms=3.5, alpha=0.75, zorder=3)
    group_rows = metrics[metrics["row_type"] == "experience"]
    for group, own in group_rows.groupby("experience", sort=False):
        own = own.set_index("condition").loc[list(conditions)]
        ax.plot([positions[c] for c in conditions], own["accuracy"], "-", color=palette[group], lw=2.4, zorder=4,
                label=f"{group} (n = {int(own['n_readers'].iloc[0])}), mean")
    model_row = metrics[metrics["row_type"] == MODEL]
    if len(model_row):
        accuracy = float(model_row["accuracy"].iloc[0])
        ax.axhline(accuracy, color="0.2", ls="--", lw=1.0, zorder=2, label=f"model ({backbone}) {accuracy:.2f}")
    ax.set_xticks(range(len(conditions)), list(conditions))
    ax.set_xlim(-0.4, len(conditions) - 0.6)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Accuracy (micro)")
    n_cases = int(readers["n_cases"].iloc[0]) if len(readers) else 0
    ax.set_title(f"Readers' accuracy by condition, {n_cases} cases")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return fig


# --- stage ------------------------------------------------------------------------------

def main_stage(config, readers_path, cases_path, case_prediction_paths, overall_path, out_metrics, out_per_class,
               out_gain, out_mrmc, out_decisions, figure_stem) -> dict:
    settings = config["reader_study"]
    task = task_from_config(config)
    classes = list(task.classes)
    conditions = list(settings["conditions"])
    evaluation = config["evaluation"]
    options = {"n_boot": int(evaluation["bootstrap_replicates"]), "seed": int(evaluation["seed"]),
               "level": float(evaluation["ci_level"])}
    cases = read_cases(cases_path, classes, all_external=bool(config["audit"]["bundle"]),
                       external_cohorts=config["data"]["external_cohorts"])
    study = read_multiclass_reader_study(readers_path, cases, classes, conditions, settings["rating_scale"])
    backbone, predictions = model_predictions(read_parquets(case_prediction_paths), pd.read_csv(overall_path), config)
    model = predictions[predictions["patient_id"].isin(study["patient_id"])].reset_index(drop=True)
    model = model.assign(decision_label=task.decide(model), diagnosis=np.asarray(classes)[model["label"].astype(int)])
    model["decision"] = np.asarray(classes)[model["decision_label"]]
    metrics, per_class = metric_tables(study, model, classes, conditions, options, list(task.probability_columns))
    gains = gain_table(study, len(classes), conditions, options)
    mrmc = mrmc_table(study, model, settings, options["level"], str(readers_path))
    write_csv(metrics, out_metrics)
    write_csv(per_class, out_per_class)
    write_csv(gains, out_gain)
    write_csv(mrmc, out_mrmc)
    write_csv(decision_table(study, model, classes), out_decisions)
    written = save_figure(accuracy_figure(metrics, conditions, backbone), Path(figure_stem))
    for row in gains[gains["metric"] == "accuracy"].itertuples():
        log.info("reader study, %s: accuracy %s %.3f -> %s %.3f, gain %+.3f (%.3f to %.3f)", row.experience,
                 row.reference_condition, row.reference, row.condition, row.value, row.gain, row.gain_lo, row.gain_hi)
    primary = mrmc[(mrmc["row_type"] == "difference") & (mrmc["analysis"] == settings["analyses"][0])]
    for row in primary.itertuples():
        log.info("reader study %s (%s, accuracy, jackknife): %s = %.3f (%.3f to %.3f), p = %.3g", row.contrast,
                 row.analysis, row.comparison, row.estimate, row.ci_lo, row.ci_hi, row.p)
    return {"metrics": metrics, "per_class": per_class, "gain": gains, "mrmc": mrmc, "figure": written}
