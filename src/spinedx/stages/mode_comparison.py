"""Mode-comparison stage of a volume study: 2d vs 2.5d vs 3d on the same cases.

From the case-level predictions of every model (a model is an input mode x network,
:mod:`spinedx.input_modes`; a case's probability is the mean over its crops, so a 2d or
2.5d case averages its slices as a labelme study averages its images), per cohort
(external: the fold models' ensemble; internal: the out-of-fold predictions) and input:

* ``table4_input_modes``: per model, AUC with DeLong's interval
  (:func:`spinedx.stats.delong.auc_confidence_interval`), sensitivity, specificity and
  accuracy with Wilson intervals, F1 of the positive class with a patient bootstrap
  interval stratified by class (:func:`spinedx.stats.multiclass.multiclass_tables`, the
  binary tables' resampling rule), at the study's decision rule;
* ``table4_input_modes_delong``: every pair of models of different input modes: DeLong's
  paired test of the AUC difference and McNemar's exact tests of sensitivity and
  specificity (:func:`spinedx.stats.comparisons.paired_comparison_table`), Holm-adjusted
  within each metric, cohort and input;
* ``fig8_roc_input_modes``: the models' ROC curves, one panel per cohort.

Pairs need the same cases: a model that misses a case another one has is an error, not a
smaller comparison.
"""

from __future__ import annotations

import logging
from itertools import combinations

import numpy as np
import pandas as pd

from spinedx.aggregation import ALL_INPUT
from spinedx.errors import InputError
from spinedx.input_modes import model_mode, model_names
from spinedx.io import read_parquets, write_csv
from spinedx.plotting import PAGE_WIDTH, colors, pyplot, save_figure
from spinedx.stats.comparisons import COLUMNS as TEST_COLUMNS
from spinedx.stats.comparisons import paired_comparison_table
from spinedx.stats.delong import auc_confidence_interval
from spinedx.stats.multiclass import multiclass_tables
from spinedx.task import BinaryTask

log = logging.getLogger(__name__)

#: (cohort, prediction model) compared: the external cohort by the fold models'
#: ensemble, the internal cohort by its out-of-fold predictions.
COHORTS = (("external", "ensemble"), ("internal", "oof"))
METRIC_COLUMNS = ["cohort", "input", "model", "mode", "network", "n_cases", "n_pos", "n_neg",
                  "tp", "fp", "fn", "tn", "auc", "auc_lo", "auc_hi",
                  "sensitivity", "sensitivity_lo", "sensitivity_hi",
                  "specificity", "specificity_lo", "specificity_hi",
                  "accuracy", "accuracy_lo", "accuracy_hi", "f1", "f1_lo", "f1_hi"]


def inputs_of(cases: pd.DataFrame) -> list[str]:
    """The inputs compared: each sequence, and ALL when there are several sequences (with
    one, ALL repeats it)."""
    inputs = list(dict.fromkeys(cases["input"]))
    sequences = [name for name in inputs if name != ALL_INPUT]
    return inputs if len(sequences) > 1 else sequences


def paired_cases(cases: pd.DataFrame, models: list[str], task: BinaryTask, what: str):
    """(patient ids, labels, {model: positive-class probability}) on the common cases."""
    wide = cases.pivot_table(index=["patient_id", "label"], columns="backbone", values=task.positive_column,
                             aggfunc="first")
    missing = [model for model in models if model not in wide.columns]
    if missing:
        raise InputError(f"{what}: no case-level predictions of {missing}; rerun case_level")
    incomplete = wide[models].isna().any(axis=1)
    if incomplete.any():
        patients = wide.index[incomplete].get_level_values("patient_id").tolist()[:5]
        raise InputError(f"{what}: patients {patients} lack a prediction of some model; the modes must be "
                         "compared on the same cases (check the crops of every input mode)")
    wide = wide.sort_index()
    return (wide.index.get_level_values("patient_id").to_numpy(), wide.index.get_level_values("label").to_numpy(),
            {model: wide[model].to_numpy(dtype=float) for model in models})


def model_metrics(labels, probs, patients, task: BinaryTask, evaluation: dict) -> dict:
    """AUC (DeLong interval), sensitivity/specificity/accuracy (Wilson), F1 (bootstrap)."""
    decisions = task.decide(pd.DataFrame({task.positive_column: probs}))
    tables = multiclass_tables(labels, patients, task.classes,
                               probs=np.column_stack([1 - probs, probs]), decisions=decisions,
                               n_boot=evaluation["bootstrap_replicates"], seed=evaluation["seed"],
                               level=evaluation["ci_level"], proportion_intervals="wilson", stratify="class")
    positive = tables["per_class"].iloc[task.positive_label]
    overall = tables["overall"].iloc[0]
    n_pos, n_neg = int(labels.sum()), int(len(labels) - labels.sum())
    if n_pos and n_neg:
        auc = auc_confidence_interval(labels, probs, evaluation["ci_level"])
    else:
        auc = dict.fromkeys(("auc", "auc_lo", "auc_hi"), np.nan)
    return {"n_cases": len(labels), "n_pos": n_pos, "n_neg": n_neg,
            **{key: int(positive[key]) for key in ("tp", "fp", "fn", "tn")},
            "auc": auc["auc"], "auc_lo": auc["auc_lo"], "auc_hi": auc["auc_hi"],
            **{f"{name}{end}": float(positive[f"{name}{end}"]) for name in ("sensitivity", "specificity", "f1")
               for end in ("", "_lo", "_hi")},
            **{f"accuracy{end}": float(overall[f"accuracy{end}"]) for end in ("", "_lo", "_hi")}}


def compare(case_predictions: pd.DataFrame, config) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The metrics table, the paired tests and the ROC inputs of every cohort x input."""
    task = BinaryTask.from_config(config)
    evaluation = config["evaluation"]
    models = model_names(config)
    pairs = [(a, b) for a, b in combinations(models, 2) if model_mode(a)[0] != model_mode(b)[0]]
    metrics, tests, curves = [], [], {}
    for cohort, model in COHORTS:
        for input_ in inputs_of(case_predictions):
            selected = case_predictions[(case_predictions["cohort"] == cohort) & (case_predictions["model"] == model)
                                        & (case_predictions["input"] == input_)]
            if selected.empty:
                continue
            patients, labels, scores = paired_cases(selected, models, task, f"{cohort} {input_}")
            curves[(cohort, input_)] = (labels, scores)
            for name in models:
                mode, network = model_mode(name)
                metrics.append({"cohort": cohort, "input": input_, "model": name, "mode": mode, "network": network,
                                **model_metrics(labels, scores[name], patients, task, evaluation)})
            if pairs:
                table = paired_comparison_table(labels, scores, pairs, threshold=task.threshold,
                                                level=evaluation["ci_level"], adjust="holm", family="metric")
                tests.append(table.assign(cohort=cohort, input=input_))
    tests_table = (pd.concat(tests, ignore_index=True) if tests
                   else pd.DataFrame(columns=["cohort", "input", *TEST_COLUMNS]))
    tests_table = tests_table[["cohort", "input", *TEST_COLUMNS]]
    return pd.DataFrame(metrics, columns=METRIC_COLUMNS), tests_table, curves


def roc_figure(metrics: pd.DataFrame, tests: pd.DataFrame, curves: dict, config):
    """ROC curves of every model, one panel per cohort x input; AUC (DeLong 95% CI) in the
    legend, Holm-adjusted DeLong p of each pair under the panel."""
    from matplotlib.lines import Line2D
    from sklearn.metrics import roc_curve

    plt = pyplot()
    task = BinaryTask.from_config(config)
    panels = list(curves)
    palette = colors(model_names(config))
    fig, axes = plt.subplots(1, len(panels), figsize=(PAGE_WIDTH, PAGE_WIDTH / max(len(panels), 2) + 1.6),
                             squeeze=False)
    for ax, (cohort, input_) in zip(axes[0], panels):
        labels, scores = curves[(cohort, input_)]
        rows = metrics[(metrics["cohort"] == cohort) & (metrics["input"] == input_)].set_index("model")
        for name, probs in scores.items():
            if len(np.unique(labels)) == 2:
                fpr, tpr, _ = roc_curve(labels, probs, drop_intermediate=False)
                row = rows.loc[name]
                ax.plot(fpr, tpr, drawstyle="steps-post", color=palette[name],
                        label=f"{name}: AUC {row['auc']:.3f} ({row['auc_lo']:.2f}–{row['auc_hi']:.2f})")
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", zorder=0)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("1 − specificity")
        ax.set_ylabel(f"Sensitivity ({task.positive_class} positive)")
        what = "external, fold ensemble" if cohort == "external" else "internal, out-of-fold"
        ax.set_title(f"{input_}: {what} ({int(labels.sum())} + {int(len(labels) - labels.sum())} cases)")
        # The paired tests as legend lines without a mark, under the curves' entries.
        auc_tests = tests[(tests["cohort"] == cohort) & (tests["input"] == input_) & (tests["metric"] == "auc")]
        lines = [f"{row.model_a} − {row.model_b}: ΔAUC {row.difference:+.3f}, p = {row.p:.3f} (Holm {row.p_adjusted:.3f})"
                 for row in auc_tests.itertuples() if np.isfinite(row.p)]
        handles, labels_ = ax.get_legend_handles_labels()
        if lines:
            blank = Line2D([], [], color="none")
            handles += [blank] * (len(lines) + 1)
            labels_ += ["DeLong paired tests of the AUC:", *lines]
        ax.legend(handles, labels_, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False,
                  handlelength=1.2)
    fig.tight_layout()
    return fig


def main_stage(config, case_prediction_paths, table_out, tests_out, figure_stem) -> pd.DataFrame:
    metrics, tests, curves = compare(read_parquets(case_prediction_paths), config)
    write_csv(metrics, table_out)
    write_csv(tests, tests_out)
    save_figure(roc_figure(metrics, tests, curves, config), figure_stem)
    for row in metrics.itertuples():
        log.info("%s %s %s: AUC %.3f (%.3f-%.3f), F1 %.3f", row.cohort, row.input, row.model, row.auc,
                 row.auc_lo, row.auc_hi, row.f1)
    return metrics
