"""Participant-flow stage (STARD 2015 item 19): how many patients and images the study
found, left out (and why), split, and analysed, from the pipeline's own records.

Records read: the cases table (patients listed), the image table of the annotations
stage (annotated images found), the annotations stage's exclusion records (patients
without an image of a sequence, image files without an annotation), the folds of the
splits stage (internal cohort; absent in audit mode), the case-level predictions (the
cases analysed, per input, by the predictions that score each cohort) and, when the
study has one, the reader study (cases read, cases without reader ratings).

``participant_flow.csv``: one row per count: step, cohort, group (a fold, an input, a
class, a reason), patients, images. ``participant_flow`` figure: the STARD diagram, boxes
and arrows, one column per cohort.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from spinedx.aggregation import ALL_INPUT
from spinedx.final_system import EVALUATED_MODEL, evaluated_cases
from spinedx.io import read_parquets, write_csv
from spinedx.plotting import PAGE_WIDTH, PALETTE, pyplot, save_figure
from spinedx.readers.cases import COHORTS, read_cases
from spinedx.splitting import read_folds

log = logging.getLogger(__name__)

FLOW_COLUMNS = ["step", "cohort", "group", "patients", "images"]
LISTED, WITH_IMAGES, EXCLUDED, SPLIT, ANALYSED, READ = (
    "listed in the cases table", "with annotated images", "excluded", "split", "analysed", "reader study")
NO_ANNOTATED_IMAGE = "no annotated image of any sequence"
LACKING = "lacking a sequence (still analysed in the others and ALL)"
NO_RATINGS = "no reader ratings"


def flow_table(cases: pd.DataFrame, images: pd.DataFrame, excluded: pd.DataFrame, folds: pd.DataFrame | None,
               case_predictions: pd.DataFrame, classes, readers: pd.DataFrame | None = None) -> pd.DataFrame:
    rows = []

    def add(step, cohort, group, patients, images_=None):
        rows.append({"step": step, "cohort": cohort, "group": group, "patients": int(patients),
                     "images": None if images_ is None else int(images_)})

    for cohort in COHORTS:
        listed = cases[cases["cohort"] == cohort]
        if listed.empty:
            continue
        ids = set(listed["patient_id"])
        their_images = images[images["patient_id"].isin(ids)]
        add(LISTED, cohort, "all", len(listed))
        for name in classes:
            add(LISTED, cohort, name, int((listed["diagnosis"] == name).sum()))
        with_images = set(their_images["patient_id"])
        add(WITH_IMAGES, cohort, "all", len(with_images), len(their_images))
        add(EXCLUDED, cohort, NO_ANNOTATED_IMAGE, len(ids - with_images), 0)
        theirs = excluded[excluded["patient_id"].isin(ids)]
        lacking = theirs[(theirs["level"] == "patient") & theirs["patient_id"].isin(with_images)]
        for sequence, group in lacking.groupby("sequence", sort=False):
            add(EXCLUDED, cohort, f"{LACKING}: {sequence}", group["patient_id"].nunique(), 0)
        files = theirs[theirs["level"] == "image"]
        for (sequence, reason), group in files.groupby(["sequence", "reason"], sort=False):
            add(EXCLUDED, cohort, f"{reason}: {sequence}", group["patient_id"].nunique(), len(group))
        if cohort == "internal" and folds is not None:
            for fold, group in folds.groupby("fold"):
                fold_ids = set(group["patient_id"])
                add(SPLIT, cohort, f"fold {fold}", len(fold_ids & with_images),
                    int(their_images["patient_id"].isin(fold_ids).sum()))
        else:
            add(SPLIT, cohort, "test" if cohort == "external" else "all", len(with_images), len(their_images))
        scored = evaluated_cases(case_predictions, input_=None, cohorts=(cohort,))
        scored = scored[scored["backbone"] == scored["backbone"].iloc[0]] if len(scored) else scored
        for input_, group in scored.groupby("input", sort=False):
            add(ANALYSED, cohort, input_, group["patient_id"].nunique(), int(group["n_images"].sum()))
        all_input = scored[scored["input"] == ALL_INPUT]
        for label, name in enumerate(classes):
            add(ANALYSED, cohort, f"{ALL_INPUT}: {name}", int((all_input["label"] == label).sum()))
        if readers is not None:
            read = set(readers["patient_id"]) & ids
            if read or cohort == "external":
                add(READ, cohort, f"read by {readers['reader'].nunique()} readers", len(read))
                add(READ, cohort, NO_RATINGS, len(with_images - read))
    return pd.DataFrame(rows, columns=FLOW_COLUMNS).astype({"patients": int, "images": "Int64"})


def _count(table: pd.DataFrame, step: str, cohort: str, group: str, what: str = "patients") -> int:
    rows = table[(table["step"] == step) & (table["cohort"] == cohort) & (table["group"] == group)]
    return int(rows[what].iloc[0]) if len(rows) and pd.notna(rows[what].iloc[0]) else 0


def flow_figure(table: pd.DataFrame, classes, n_folds: int | None):
    """STARD-style diagram: listed -> with images (excluded beside) -> one column per cohort:
    split -> analysed -> reader study."""
    plt = pyplot()
    cohorts = [c for c in COHORTS if ((table["cohort"] == c) & (table["step"] == LISTED)).any()]
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 6.6))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")

    def box(x, y, text, width=0.34, color="white", edge="0.2"):
        ax.text(x, y, text, ha="center", va="center", fontsize=7, wrap=True,
                bbox=dict(boxstyle="round,pad=0.45", facecolor=color, edgecolor=edge, lw=0.8))

    def arrow(x0, y0, x1, y1):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="-|>", color="0.25", lw=0.9))

    listed = {c: _count(table, LISTED, c, "all") for c in cohorts}
    with_images = {c: _count(table, WITH_IMAGES, c, "all") for c in cohorts}
    n_images = {c: _count(table, WITH_IMAGES, c, "all", "images") for c in cohorts}
    box(0.5, 0.94, f"Patients listed in the cases table: {sum(listed.values())}\n"
                   + ", ".join(f"{c} {n}" for c, n in listed.items()), width=0.5)
    arrow(0.5, 0.9, 0.5, 0.81)
    box(0.5, 0.77, f"Patients with annotated images: {sum(with_images.values())}\n"
                   f"annotated images: {sum(n_images.values())}")
    excluded = table[table["step"] == EXCLUDED]
    lines = []
    for reason, group in excluded.groupby("group", sort=False):
        patients = int(group["patients"].sum())
        images = group["images"].fillna(0).sum()
        if patients == 0 and images == 0:
            continue
        lines.append(f"{reason}: {patients} patient(s)" + (f", {int(images)} file(s)" if images else ""))
    arrow(0.5, 0.855, 0.78, 0.855)
    box(0.86, 0.855, "Left out\n" + ("\n".join(lines) if lines else "none"), color="#f4f4f4")
    columns = {c: x for c, x in zip(cohorts, (0.25, 0.75) if len(cohorts) == 2 else (0.5,))}
    for cohort, x in columns.items():
        color = PALETTE[0] if cohort == "internal" else PALETTE[1]
        arrow(0.5, 0.73, x, 0.655)
        per_class = ", ".join(f"{name} {_count(table, LISTED, cohort, name)}" for name in classes)
        if cohort == "internal":
            folds = table[(table["step"] == SPLIT) & (table["cohort"] == cohort)]
            split = ("\n".join(f"{r.group}: {r.patients} patients, {r.images} images" for r in folds.itertuples())
                     if len(folds) and str(folds["group"].iloc[0]).startswith("fold") else "no folds (audit)")
            title = f"Internal cohort (cross-validation{f', {n_folds} folds' if n_folds else ''})"
        else:
            split = "test set: never used for training or model selection"
            title = "External cohort (test)"
        box(x, 0.6, f"{title}\n{with_images[cohort]} patients ({per_class})\n{n_images[cohort]} images",
            color=color + "22", edge=color)
        arrow(x, 0.55, x, 0.49)
        box(x, 0.42, split, color="white", edge=color)
        analysed = table[(table["step"] == ANALYSED) & (table["cohort"] == cohort)
                         & ~table["group"].str.contains(":")]
        arrow(x, 0.35, x, 0.29)
        text = (f"Analysed ({EVALUATED_MODEL[cohort]} predictions, case level)\n"
                + "\n".join(f"{r.group}: {r.patients} patients, {r.images} images" for r in analysed.itertuples())
                + "\n" + ", ".join(f"{name} {_count(table, ANALYSED, cohort, f'{ALL_INPUT}: {name}')}"
                                   for name in classes))
        box(x, 0.22, text, color=color + "22", edge=color)
        read = table[(table["step"] == READ) & (table["cohort"] == cohort)]
        if len(read):
            arrow(x, 0.13, x, 0.085)
            box(x, 0.045, "Reader study\n" + "\n".join(f"{r.group}: {r.patients} cases" for r in read.itertuples()),
                color="#f4f4f4", edge=color)
    fig.suptitle("Participant flow (STARD 2015 item 19)", y=0.995)
    return fig


def main_stage(config, cases_path, images_path, exclusion_paths, case_prediction_paths, out, figure_stem,
               folds_path=None, readers_path=None) -> pd.DataFrame:
    classes = list(config["classes"])
    cases = read_cases(cases_path, classes, all_external=bool(config["audit"]["bundle"]))
    images = pd.read_parquet(images_path)
    excluded = pd.concat([pd.read_csv(p, dtype=str) for p in exclusion_paths], ignore_index=True)
    folds = read_folds(folds_path) if folds_path else None
    readers = pd.read_csv(readers_path, dtype=str) if readers_path else None
    if readers is not None and "patient_id" not in readers.columns and "case" in readers.columns:
        readers = readers.rename(columns={"case": "patient_id"})
    table = flow_table(cases, images, excluded, folds, read_parquets(case_prediction_paths), classes, readers)
    write_csv(table, out)
    n_folds = int(folds["fold"].nunique()) if folds is not None else None
    save_figure(flow_figure(table, classes, n_folds), Path(figure_stem))
    log.info("participant flow: %d counts -> %s", len(table), out)
    return table
