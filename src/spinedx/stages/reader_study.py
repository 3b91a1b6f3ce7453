"""Reader-study stage: readers (and the model) per condition, the multi-reader multi-case
comparison of the conditions and of the model against the readers, and the figure.

* ``reader_study_metrics.csv``: per reader x condition, and the model: AUC of the
  ratings with DeLong's interval (:func:`spinedx.stats.delong.auc_confidence_interval`),
  sensitivity, specificity and accuracy of the decisions with Wilson intervals
  (:func:`spinedx.stats.binary.metrics_from_counts`), F1 of the positive class with the
  patient-bootstrap interval of the evaluation tables (evaluation.bootstrap_replicates,
  seed). Then rows ``reader = mean`` per reader group (``experience``: ``all`` readers,
  and each experience group, e.g. senior / junior, of at least 2 readers) x condition:
  mean AUC with the Obuchowski-Rockette single-modality interval of the primary analysis,
  mean sensitivity, specificity, accuracy and F1 with case-bootstrap intervals (readers
  fixed). The model's decisions are the study's rule (positive class's probability >
  decision.threshold).
* ``reader_study_mrmc.csv``: Obuchowski-Rockette analyses with Hillis' ddf
  (:func:`spinedx.stats.mrmc.obuchowski_rockette`) of config ``reader_study.analyses``
  (RRRC, FRRC, RRFC) with ``reader_study.covariance`` covariances: the conditions
  compared with each other (differences: a later condition minus an earlier one), also
  within each experience group (contrast ``conditions, <group> readers``), and, with
  ``model_vs_readers``, the model against the readers of each condition. The model
  is a second modality whose rating of a case is its case-level probability, duplicated
  for every reader (RJafroc's "2T" approach; its reader AUCs are all equal, so the model
  modality adds case variance but no reader variance). Rows: ``modality`` (mean AUC and
  interval), ``difference`` (difference of mean AUCs, its test and interval), ``global``
  (the F or chi-square test and the OR variance components), ``reader difference``
  (FRRC, each reader's own difference).
* ``reader_study_decisions.csv``: each reader's (and the model's) decisions against the
  truth, per condition: class x class counts (the 2x2 for two classes, the confusion
  table for more).
* ``reader_study_roc``: the model's ROC curve on the read cases with every reader's
  operating point in each condition and arrows from the first condition to the last.

The model's ratings are those of the model the readers were aided by
(:func:`spinedx.final_system.aiding_model`: config ``reader_study.aiding_model``, else the
final system): case-level ALL input of that backbone (a volume study's model, e.g.
``2.5d_resnet10t``), each case scored by the prediction that never saw it
(:func:`spinedx.final_system.scoring_predictions`: every external cohort's ensemble, the
internal cohort's out-of-fold predictions, or with a hold-out split the internal-test
prediction of the first repeat testing the case). With more
than two classes, ratings, truth and the MRMC analysis
are those of the binary contrast ``reader_study.positive_classes``; decisions stay class
names (accuracy and confusion tables); the model's rating of the contrast is the sum of
its probabilities of the positive classes and its decision the class of highest
probability.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.final_system import aiding_model, scoring_predictions
from spinedx.io import read_parquets, write_csv
from spinedx.plotting import PAGE_WIDTH, colors, pyplot, roc_axis, roc_points, save_figure
from spinedx.readers.cases import read_cases
from spinedx.readers.reader_study import positive_set, read_reader_study
from spinedx.stats.binary import confusion_counts, metrics_from_counts, positive_calls, wilson_interval
from spinedx.stats.bootstrap import reader_mean_intervals
from spinedx.stats.delong import auc_confidence_interval
from spinedx.stats.mrmc import obuchowski_rockette
from spinedx.stats.multiclass import multiclass_tables
from spinedx.task import PROBABILITY_PREFIX

log = logging.getLogger(__name__)

MODEL = "model"
#: ``reader`` of the rows that summarise a group of readers (``experience``: the group, or ALL_READERS).
GROUP_MEAN, ALL_READERS = "mean", "all"
METRIC_COLUMNS = ["reader", "experience", "condition", "n_readers", "n_cases", "n_pos", "n_neg", "auc", "auc_se",
                  "auc_lo", "auc_hi", "tp", "fp", "fn", "tn", "sensitivity", "sensitivity_lo", "sensitivity_hi",
                  "specificity", "specificity_lo", "specificity_hi", "accuracy", "accuracy_lo", "accuracy_hi",
                  "f1", "f1_lo", "f1_hi"]
MRMC_COLUMNS = ["contrast", "analysis", "covariance", "row_type", "modality", "comparison", "reader", "estimate",
                "se", "df", "statistic", "p", "ci_lo", "ci_hi", "df1", "df2", "var_R", "var_TR", "var_E", "cov1",
                "cov2", "cov3", "n_readers", "n_cases", "n_positive"]


def model_ratings(case_predictions: pd.DataFrame, backbone: str, classes, positives, threshold: float) -> pd.DataFrame:
    """The final system's rating (probability of the positive contrast), decision and
    decided class per case: patient_id, rating, called_positive, decision."""
    rows = scoring_predictions(case_predictions, backbone)
    columns = [f"{PROBABILITY_PREFIX}{name}" for name in classes]
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise InputError(f"case-level predictions lack {missing}; rerun case_level with config `classes` {list(classes)}")
    probabilities = rows[columns].to_numpy(dtype=float)
    rating = probabilities[:, [classes.index(name) for name in positives]].sum(axis=1)
    if len(classes) == 2:
        called = positive_calls(rating, threshold).astype(int)
        decision = np.where(called == 1, classes[1], classes[0])
    else:
        decision = np.asarray(classes)[probabilities.argmax(axis=1)]
        called = np.isin(decision, positives).astype(int)
    return pd.DataFrame({"patient_id": rows["patient_id"].to_numpy(), "rating": rating,
                         "called_positive": called, "decision": decision})


def _f1(truth, called, cases, bootstrap: dict | None, level: float) -> dict:
    """F1 of the positive (contrast) class with the patient-bootstrap interval of the
    evaluation tables (:func:`spinedx.stats.multiclass.multiclass_tables`, stratified by
    class, Wilson for proportions): on the same cases the model's row equals the F1 of
    table 4 of a volume study. ``bootstrap``: n_boot and seed (None: no interval)."""
    tables = multiclass_tables(np.asarray(truth, dtype=int), np.asarray(cases), ("negative", "positive"),
                               decisions=np.asarray(called, dtype=int), n_boot=bootstrap["n_boot"] if bootstrap else 0,
                               seed=bootstrap["seed"] if bootstrap else 0, level=level,
                               proportion_intervals="wilson", stratify="class")
    positive = tables["per_class"].iloc[1]
    return {key: float(positive[key]) for key in ("f1", "f1_lo", "f1_hi")}


def _metrics_row(reader, experience, condition, truth, rating, called, correct, level, cases=None,
                 bootstrap: dict | None = None) -> dict:
    counts = confusion_counts(truth, called.astype(float), 0.5)
    row = {"reader": reader, "experience": experience, "condition": condition, "n_readers": 1,
           "n_cases": int(truth.size)}
    row.update(metrics_from_counts(**counts, level=level))
    interval = auc_confidence_interval(truth, rating, level)
    row.update(auc=interval["auc"], auc_se=interval["se"], auc_lo=interval["auc_lo"], auc_hi=interval["auc_hi"])
    # Accuracy of the decided class (equals the 2x2 accuracy for two classes).
    n_correct = int(np.sum(correct))
    row["accuracy"] = n_correct / truth.size
    row["accuracy_lo"], row["accuracy_hi"] = wilson_interval(n_correct, int(truth.size), level)
    row.update(_f1(truth, called, np.arange(truth.size) if cases is None else cases, bootstrap, level))
    return row


def reader_groups(study: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """(group, its readers): every reader (ALL_READERS), then each experience group when
    readers.csv gives more than one; groups of fewer than 2 readers are left out (no
    random-reader variance)."""
    experience = study.drop_duplicates("reader").set_index("reader")["experience"]
    groups = [(ALL_READERS, sorted(experience.index))]
    levels = sorted(set(experience) - {""})
    if len(levels) > 1:
        groups += [(level, sorted(experience.index[experience == level])) for level in levels]
    return [(name, readers) for name, readers in groups if len(readers) >= 2]


def group_metrics(study: pd.DataFrame, conditions, settings: dict, level: float, bootstrap: dict | None,
                  source: str) -> list[dict]:
    """Per reader group (:func:`reader_groups`) x condition: the readers' mean AUC with the
    single-modality Obuchowski-Rockette interval of the primary analysis (first of
    reader_study.analyses, with reader_study.covariance; the same numbers as the
    ``modality`` rows of the MRMC table), and mean sensitivity, specificity, accuracy and
    F1 with case-bootstrap intervals, the group's readers fixed
    (:func:`spinedx.stats.bootstrap.reader_mean_intervals`)."""
    rows = []
    analysis = settings["analyses"][0]
    for group, readers in reader_groups(study):
        for condition in conditions:
            readings = study[(study["condition"] == condition) & study["reader"].isin(readers)]
            long = readings.rename(columns={"patient_id": "case", "condition": "modality"})
            result = obuchowski_rockette(long, analysis=analysis, covariance=settings["covariance"], level=level,
                                         modalities=[condition], source=source)
            auc = result.modality_auc.iloc[0]
            wide = readings.pivot(index="reader", columns="patient_id", values="called_positive")
            truth = readings.drop_duplicates("patient_id").set_index("patient_id")["truth"].loc[wide.columns]
            means = reader_mean_intervals(truth.to_numpy(), wide.to_numpy(),
                                          n_boot=bootstrap["n_boot"] if bootstrap else 0,
                                          seed=bootstrap["seed"] if bootstrap else 0, level=level)
            rows.append({"reader": GROUP_MEAN, "experience": group, "condition": condition,
                         "n_readers": len(readers), "n_cases": int(truth.size), "n_pos": int(truth.sum()),
                         "n_neg": int(truth.size - truth.sum()), "auc": auc["auc"], "auc_se": auc["se"],
                         "auc_lo": auc["ci_lo"], "auc_hi": auc["ci_hi"], **means})
    return rows


def reader_metrics(study: pd.DataFrame, model: pd.DataFrame, conditions, level: float,
                   settings: dict | None = None, bootstrap: dict | None = None, source: str = "reader study"
                   ) -> pd.DataFrame:
    """Per reader x condition metrics, then (with ``settings``: config reader_study) the
    reader groups' means (:func:`group_metrics`), then the model's on the read cases it
    scored. ``bootstrap``: n_boot and seed of the F1 and group intervals (None: none)."""
    rows = []
    for condition in conditions:
        for reader, readings in study[study["condition"] == condition].groupby("reader", sort=True):
            rows.append(_metrics_row(reader, readings["experience"].iloc[0], condition,
                                     readings["truth"].to_numpy(), readings["rating"].to_numpy(),
                                     readings["called_positive"].to_numpy(),
                                     readings["decision_label"].to_numpy() == readings["label"].to_numpy(), level,
                                     readings["patient_id"].to_numpy(), bootstrap))
    if settings is not None:
        rows += group_metrics(study, conditions, settings, level, bootstrap, source)
    scored = study.drop_duplicates("patient_id")[["patient_id", "truth", "diagnosis"]].merge(model, on="patient_id")
    if len(scored):
        rows.append(_metrics_row(MODEL, "", MODEL, scored["truth"].to_numpy(), scored["rating"].to_numpy(),
                                 scored["called_positive"].to_numpy(),
                                 scored["decision"].to_numpy() == scored["diagnosis"].to_numpy(), level,
                                 scored["patient_id"].to_numpy(), bootstrap))
        rows[-1]["n_readers"] = None  # the model is no reader
    return pd.DataFrame(rows).reindex(columns=METRIC_COLUMNS)


def decision_table(study: pd.DataFrame, model: pd.DataFrame, classes) -> pd.DataFrame:
    """Counts of (true class, decided class) per reader x condition, then the model's."""
    rows = []
    for (condition, reader), readings in study.groupby(["condition", "reader"], sort=False):
        counts = readings.groupby(["diagnosis", "decision"]).size()
        for truth in classes:
            for decided in classes:
                rows.append({"reader": reader, "condition": condition, "true_class": truth,
                             "decided_class": decided, "n": int(counts.get((truth, decided), 0))})
    scored = study.drop_duplicates("patient_id")[["patient_id", "diagnosis"]].merge(model, on="patient_id")
    counts = scored.groupby(["diagnosis", "decision"]).size()
    for truth in classes:
        for decided in classes:
            rows.append({"reader": MODEL, "condition": MODEL, "true_class": truth, "decided_class": decided,
                         "n": int(counts.get((truth, decided), 0))})
    return pd.DataFrame(rows, columns=["reader", "condition", "true_class", "decided_class", "n"])



def _or_rows(data: pd.DataFrame, contrast: str, modalities, settings: dict, level: float, source: str) -> list[dict]:
    rows = []
    for analysis in settings["analyses"]:
        result = obuchowski_rockette(data, analysis=analysis, covariance=settings["covariance"], level=level,
                                     modalities=modalities, source=source)
        base = {"contrast": contrast, "analysis": analysis, "covariance": result.covariance_method,
                "n_readers": result.n_readers, "n_cases": result.n_cases, "n_positive": result.n_positive}
        rows += result.table_rows(base, "equal AUCs")
    return rows


def mrmc_table(study: pd.DataFrame, model: pd.DataFrame, settings: dict, level: float, source: str) -> pd.DataFrame:
    """The OR analyses of the conditions and of the model against each condition's readers."""
    conditions = list(settings["conditions"])
    long = study.rename(columns={"patient_id": "case", "condition": "modality"})
    rows = []
    if len(conditions) > 1:
        # Later conditions first: the library reports "first minus second", i.e. later minus earlier.
        rows += _or_rows(long, "conditions", conditions[::-1], settings, level, source)
        # The same per experience group (e.g. senior and junior readers), when readers.csv has several.
        for group, readers in reader_groups(study)[1:]:
            rows += _or_rows(long[long["reader"].isin(readers)], f"conditions, {group} readers", conditions[::-1],
                             settings, level, source)
    if settings["model_vs_readers"]:
        scored = long[long["case"].isin(model["patient_id"])]
        unscored = sorted(set(long["case"]) - set(model["patient_id"]))
        if unscored:
            log.warning("reader study: %d read case(s) have no model prediction and are left out of the "
                        "model-vs-readers analysis: %s", len(unscored), unscored[:10])
        duplicated = scored[scored["modality"] == conditions[0]].drop(columns=["rating", "modality"]).merge(
            model[["patient_id", "rating"]].rename(columns={"patient_id": "case"}), on="case").assign(modality=MODEL)
        for condition in conditions:
            data = pd.concat([duplicated, scored[scored["modality"] == condition]], ignore_index=True)
            rows += _or_rows(data, f"model vs {condition}", [MODEL, condition], settings, level, source)
    return pd.DataFrame(rows).reindex(columns=MRMC_COLUMNS)


def reader_roc_figure(study: pd.DataFrame, model: pd.DataFrame, metrics: pd.DataFrame, conditions, positive: str,
                      backbone: str):
    """The model's ROC on the read cases, every reader's operating point per condition,
    arrows from the first condition's point to the last's."""
    plt = pyplot()
    cases = study.drop_duplicates("patient_id")[["patient_id", "truth"]].merge(model, on="patient_id")
    readers = sorted(set(study["reader"]))
    palette = colors(readers)
    markers = ["o", "s", "^", "D", "v"]
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH * 0.62, PAGE_WIDTH * 0.62))
    roc_axis(ax, positive)
    model_row = metrics[metrics["reader"] == MODEL]
    metrics = metrics[metrics["reader"] != GROUP_MEAN]
    if len(cases):
        fpr, tpr = roc_points(cases["truth"], cases["rating"])
        label = f"model ({backbone}), AUC {model_row['auc'].iloc[0]:.2f}" if len(model_row) else "model"
        ax.plot(fpr, tpr, color="0.25", drawstyle="steps-post", label=label, zorder=2)
    by_reader = metrics[metrics["reader"] != MODEL].set_index(["reader", "condition"])
    for reader in readers:
        points = [(1 - by_reader.loc[(reader, c), "specificity"], by_reader.loc[(reader, c), "sensitivity"])
                  for c in conditions]
        for index, (x, y) in enumerate(points):
            filled = index == len(points) - 1 and len(points) > 1
            ax.plot(x, y, markers[index % len(markers)], ms=6, color=palette[reader], zorder=4,
                    mfc=palette[reader] if filled else "white", mew=1.3, clip_on=False)
        if len(points) > 1:
            (x0, y0), (x1, y1) = points[0], points[-1]
            if (x0, y0) != (x1, y1):
                ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=3,
                            arrowprops=dict(arrowstyle="-|>", color=palette[reader], lw=1.0, shrinkA=4, shrinkB=4))
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    for index, condition in enumerate(conditions):
        mean_auc = by_reader.xs(condition, level="condition")["auc"].mean()
        filled = index == len(conditions) - 1 and len(conditions) > 1
        handles.append(Line2D([], [], ls="", marker=markers[index % len(markers)], color="0.3",
                              mfc="0.3" if filled else "white", mew=1.3,
                              label=f"readers, {condition} (mean AUC {mean_auc:.2f})"))
    handles += [Line2D([], [], ls="", marker="o", color=palette[r], label=f"{r}"
                       + (f" ({by_reader.loc[(r, conditions[0]), 'experience']})"
                          if by_reader.loc[(r, conditions[0]), "experience"] else "")) for r in readers]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    n_pos = int(cases["truth"].sum()) if len(cases) else int(study.drop_duplicates("patient_id")["truth"].sum())
    n_all = len(cases) if len(cases) else study["patient_id"].nunique()
    ax.set_title(f"Readers and model, {n_pos} + {n_all - n_pos} cases"
                 + (f"\narrows: {conditions[0]} → {conditions[-1]}" if len(conditions) > 1 else ""))
    fig.tight_layout()
    return fig


def main_stage(config, readers_path, cases_path, case_prediction_paths, table3_path, out_metrics, out_mrmc,
               out_decisions, figure_stem) -> dict:
    settings = config["reader_study"]
    classes = list(config["classes"])
    positives = positive_set(classes, settings["positive_classes"])
    level = config["evaluation"]["ci_level"]
    cases = read_cases(cases_path, classes, all_external=bool(config["audit"]["bundle"]), external_cohorts=None)
    study = read_reader_study(readers_path, cases, classes, settings["conditions"], settings["rating_scale"],
                              settings["positive_classes"])
    backbone = aiding_model(pd.read_csv(table3_path), config)
    model = model_ratings(read_parquets(case_prediction_paths), backbone, classes, positives,
                          config["decision"]["threshold"])
    model = model[model["patient_id"].isin(study["patient_id"])].reset_index(drop=True)
    evaluation = config["evaluation"]
    bootstrap = {"n_boot": int(evaluation["bootstrap_replicates"]), "seed": int(evaluation["seed"])}
    metrics = reader_metrics(study, model, settings["conditions"], level, settings, bootstrap, str(readers_path))
    mrmc = mrmc_table(study, model, settings, level, str(readers_path))
    write_csv(metrics, out_metrics)
    write_csv(mrmc, out_mrmc)
    write_csv(decision_table(study, model, classes), out_decisions)
    positive = positives[0] if len(positives) == 1 else " or ".join(positives)
    written = save_figure(reader_roc_figure(study, model, metrics, settings["conditions"], positive, backbone),
                          Path(figure_stem))
    primary = mrmc[(mrmc["row_type"] == "difference") & (mrmc["analysis"] == settings["analyses"][0])]
    for row in primary.itertuples():
        log.info("reader study %s (%s, %s): %s = %.3f (%.3f to %.3f), p = %.3g", row.contrast, row.analysis,
                 row.covariance, row.comparison, row.estimate, row.ci_lo, row.ci_hi, row.p)
    return {"metrics": metrics, "mrmc": mrmc, "figure": written}
