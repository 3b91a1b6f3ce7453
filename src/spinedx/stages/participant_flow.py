"""Participant-flow stage (STARD 2015 item 19): how many patients and images the study
found, left out (and why), split, and analysed, from the pipeline's own records.

Records read: the cases table (patients listed), the image table of the annotations
stage (annotated images found), the annotations stage's exclusion records (patients
without an image of a sequence, image files without an annotation), the splits of the
splits stage (internal cohort; absent in audit mode): k-fold folds, or the hold-out
partitions of every repeat (training, validation, internal test), the case-level
predictions (the cases analysed, per input, by the predictions that score each cohort:
the out-of-fold ones, or with a hold-out split the internal-test ones, and the ensemble
for every external cohort) and, when the study has one, the reader study (cases read,
cases without reader ratings). Cohorts: ``internal`` and each external cohort of config
``data.external_cohorts`` (one column each in the figure).

Studies whose labels belong to images (labels.source annotation, e.g. the canine study;
no case level) count images where others count patients' cases: the classes of the
annotated images (``with annotated images``: images of each class and the patients
having one), and the analysed images of each input (each sequence, each plane of config
``planes``, ALL) and class, from the image-level predictions that score each cohort
(:func:`spinedx.final_system.scoring_image_predictions`: the external cohorts' ensemble,
the internal test partition of a hold-out; validation images chose the epoch and are
not analysed).

Detection studies (:func:`detection_main_stage`): the detection_cases stage's tables
(every listed patient with a volume of each sequence and the lesion labels: a patient
lacking one stops that stage, so nothing is left out silently), the folds, the lesion
tables of the candidates stage (the lesions each model x input was evaluated on) and the
readers' lesion table; the patients are split by lesion load (with lesions, without), a
``lesions`` column counts the ground-truth lesions, ``images`` are volumes (patients x
sequences of the input), and every patient of a cohort is analysed (internal: the
out-of-fold maps; external: the fold ensemble).

``participant_flow.csv``: one row per count: step, cohort, group (a fold, an input, a
class, a reason), patients, images. ``participant_flow`` figure: the STARD diagram, boxes
and arrows, one column per cohort.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pandas as pd

from spinedx.aggregation import ALL_INPUT, ENSEMBLE, PREDICTION_SET, image_inputs
from spinedx.final_system import EVALUATED_MODEL, INTERNAL_TEST, evaluated_cases, scoring_image_predictions
from spinedx.detection_task import DetectionTask
from spinedx.input_modes import volume_study
from spinedx.io import read_parquets, write_csv
from spinedx.plotting import PAGE_WIDTH, PALETTE, pyplot, save_figure
from spinedx.readers.cases import COHORTS, INTERNAL_COHORT, read_cases
from spinedx.readers.detection_cases import read_cases_table
from spinedx.splitting import read_splits

log = logging.getLogger(__name__)

FLOW_COLUMNS = ["step", "cohort", "group", "patients", "images"]
LISTED, WITH_IMAGES, EXCLUDED, SPLIT, ANALYSED, READ = (
    "listed in the cases table", "with annotated images", "excluded", "split", "analysed", "reader study")
NO_ANNOTATED_IMAGE = "no annotated image of any sequence"
LACKING = "lacking a sequence (still analysed in the others and ALL)"
NO_RATINGS = "no reader ratings"
NO_TEST_PARTITION = "none (no internal test partition)"
LESION_LOADS = ("with lesions", "without lesions")
NO_EXCLUSION = "none (a patient lacking a volume or its lesion labels stops the detection_cases stage)"
DETECTION_FLOW_COLUMNS = [*FLOW_COLUMNS, "lesions"]


def _scored(case_predictions: pd.DataFrame, cohort: str) -> pd.DataFrame:
    """The case-level rows that score ``cohort`` (every backbone and input): external
    cohorts by the ensemble; the internal one by the out-of-fold predictions, or with a
    hold-out split (prediction sets ``internal_test``) by the first repeat testing each
    patient."""
    if cohort in EVALUATED_MODEL and not (
            cohort == INTERNAL_COHORT and PREDICTION_SET in case_predictions.columns
            and (case_predictions[PREDICTION_SET] == INTERNAL_TEST).any()):
        return evaluated_cases(case_predictions, input_=None, cohorts=(cohort,))
    if cohort != INTERNAL_COHORT:
        return case_predictions[(case_predictions["cohort"] == cohort)
                                & (case_predictions["model"] == ENSEMBLE)].reset_index(drop=True)
    tested = case_predictions[(case_predictions["cohort"] == cohort)
                              & (case_predictions[PREDICTION_SET] == INTERNAL_TEST)]
    repeat = tested["model"].str.extract(r"(\d+)$", expand=False).astype(int)
    return (tested.assign(_repeat=repeat).sort_values("_repeat", kind="stable")
            .drop_duplicates(["backbone", "input", "patient_id"]).drop(columns="_repeat").reset_index(drop=True))


def _split_rows(folds: pd.DataFrame, with_images: set, their_images: pd.DataFrame):
    """(group, patients, images) of the internal split: per fold, or per hold-out repeat
    and partition."""
    if "partition" in folds.columns:
        for (repeat, partition), group in folds.groupby(["repeat", "partition"], sort=False):
            ids = set(group["patient_id"])
            yield (f"repeat {repeat}: {partition}", len(ids & with_images),
                   int(their_images["patient_id"].isin(ids).sum()))
        return
    for fold, group in folds.groupby("fold"):
        fold_ids = set(group["patient_id"])
        yield f"fold {fold}", len(fold_ids & with_images), int(their_images["patient_id"].isin(fold_ids).sum())


def flow_table(cases: pd.DataFrame, images: pd.DataFrame, excluded: pd.DataFrame, folds: pd.DataFrame | None,
               case_predictions: pd.DataFrame | None, classes, readers: pd.DataFrame | None = None,
               cohorts=COHORTS, volumes: bool = False, image_predictions: pd.DataFrame | None = None,
               sequences=(), planes=None) -> pd.DataFrame:
    """The flow's counts (module docstring); ``cohorts``: internal, then the external
    cohorts. ``volumes``: a volume study, whose image table has one volume per case x
    sequence; the analysed ``images`` are then the volumes of the analysed cases (a
    case-level row's ``n_images`` counts the model's crops, which differ between modes).
    ``image_predictions`` (labels of images; instead of ``case_predictions``): the scored
    image rows of one backbone, counted per input (``sequences``, ``planes``, ALL) and
    class."""
    rows = []
    image_labels = image_predictions is not None

    def add(step, cohort, group, patients, images_=None):
        rows.append({"step": step, "cohort": cohort, "group": group, "patients": int(patients),
                     "images": None if images_ is None else int(images_)})

    for cohort in cohorts:
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
        for label, name in enumerate(classes):
            if image_labels:
                of_class = their_images[their_images["label"] == label]
                add(WITH_IMAGES, cohort, name, of_class["patient_id"].nunique(), len(of_class))
            else:
                add(WITH_IMAGES, cohort, name,
                    int(listed[listed["patient_id"].isin(with_images)]["diagnosis"].eq(name).sum()))
        add(EXCLUDED, cohort, NO_ANNOTATED_IMAGE, len(ids - with_images), 0)
        theirs = excluded[excluded["patient_id"].isin(ids)]
        lacking = theirs[(theirs["level"] == "patient") & theirs["patient_id"].isin(with_images)]
        for sequence, group in lacking.groupby("sequence", sort=False):
            add(EXCLUDED, cohort, f"{LACKING}: {sequence}", group["patient_id"].nunique(), 0)
        files = theirs[theirs["level"] == "image"]
        for (sequence, reason), group in files.groupby(["sequence", "reason"], sort=False):
            add(EXCLUDED, cohort, f"{reason}: {sequence}", group["patient_id"].nunique(), len(group))
        if cohort == INTERNAL_COHORT and folds is not None:
            for group, patients, n_images in _split_rows(folds, with_images, their_images):
                add(SPLIT, cohort, group, patients, n_images)
        else:
            add(SPLIT, cohort, "all" if cohort == INTERNAL_COHORT else "test", len(with_images), len(their_images))
        if image_labels:
            _add_analysed_images(add, cohort, image_predictions[image_predictions["cohort"] == cohort], classes,
                                 sequences, planes or {})
            continue
        scored = _scored(case_predictions, cohort)
        scored = scored[scored["backbone"] == scored["backbone"].iloc[0]] if len(scored) else scored
        if scored.empty and cohort == INTERNAL_COHORT:
            add(ANALYSED, cohort, NO_TEST_PARTITION, 0, 0)
        for input_, group in scored.groupby("input", sort=False):
            if volumes:
                analysed = their_images[their_images["patient_id"].isin(set(group["patient_id"]))]
                n_analysed = len(analysed) if input_ == ALL_INPUT else int((analysed["sequence"] == input_).sum())
            else:
                n_analysed = int(group["n_images"].sum())
            add(ANALYSED, cohort, input_, group["patient_id"].nunique(), n_analysed)
        all_input = scored[scored["input"] == ALL_INPUT]
        for label, name in enumerate(classes):
            add(ANALYSED, cohort, f"{ALL_INPUT}: {name}", int((all_input["label"] == label).sum()))
        if readers is not None:
            read = set(readers["patient_id"]) & ids
            if read or cohort != INTERNAL_COHORT:
                add(READ, cohort, f"read by {readers['reader'].nunique()} readers", len(read))
                add(READ, cohort, NO_RATINGS, len(with_images - read))
    return pd.DataFrame(rows, columns=FLOW_COLUMNS).astype({"patients": int, "images": "Int64"})


def detection_flow_table(cases: pd.DataFrame, folds: pd.DataFrame | None, lesion_hits: dict[str, pd.DataFrame],
                         input_sequences: dict[str, tuple], n_sequences: int, readers: dict | None = None,
                         cohorts=("internal", "external")) -> pd.DataFrame:
    """Detection studies (module docstring). ``cases``: the detection cases table (one row
    per patient, ``n_lesions``); ``lesion_hits``: per detection input, the lesion table of
    one model evaluated on it; ``input_sequences``: each input's sequences; ``readers``:
    {"cohort": the cohort read, "n_readers": how many} or None."""
    rows = []

    def add(step, cohort, group, patients, volumes=None, lesions=None):
        rows.append({"step": step, "cohort": cohort, "group": group, "patients": int(patients),
                     "images": None if volumes is None else int(volumes),
                     "lesions": None if lesions is None else int(lesions)})

    for cohort in cohorts:
        listed = cases[cases["cohort"] == cohort]
        if listed.empty:
            continue
        loads = {LESION_LOADS[0]: listed[listed["n_lesions"] > 0], LESION_LOADS[1]: listed[listed["n_lesions"] == 0]}
        add(LISTED, cohort, "all", len(listed), None, listed["n_lesions"].sum())
        for name, group in loads.items():
            add(LISTED, cohort, name, len(group), None, group["n_lesions"].sum())
        add(WITH_IMAGES, cohort, "all", len(listed), len(listed) * n_sequences, listed["n_lesions"].sum())
        for name, group in loads.items():
            add(WITH_IMAGES, cohort, name, len(group), len(group) * n_sequences, group["n_lesions"].sum())
        add(EXCLUDED, cohort, NO_EXCLUSION, 0, 0, 0)
        if cohort == INTERNAL_COHORT and folds is not None:
            for fold, group in folds.groupby("fold"):
                mine = listed[listed["patient_id"].isin(set(group["patient_id"]))]
                add(SPLIT, cohort, f"fold {fold}", len(mine), len(mine) * n_sequences, mine["n_lesions"].sum())
        else:
            add(SPLIT, cohort, "all" if cohort == INTERNAL_COHORT else "test", len(listed), len(listed) * n_sequences,
                listed["n_lesions"].sum())
        for input_, hits in lesion_hits.items():
            analysed = hits[hits["cohort"] == cohort]
            add(ANALYSED, cohort, input_, len(listed), len(listed) * len(input_sequences[input_]), len(analysed))
        for name, group in loads.items():
            add(ANALYSED, cohort, f"{ALL_INPUT}: {name}", len(group), None, group["n_lesions"].sum())
        if readers and readers["cohort"] == cohort:
            add(READ, cohort, f"read by {readers['n_readers']} readers", len(listed), None, listed["n_lesions"].sum())
    return pd.DataFrame(rows, columns=DETECTION_FLOW_COLUMNS).astype(
        {"patients": int, "images": "Int64", "lesions": "Int64"})


def _add_analysed_images(add, cohort: str, scored: pd.DataFrame, classes, sequences, planes) -> None:
    """Labels of images: the analysed images per input and per class (ALL input)."""
    if scored.empty:
        if cohort == INTERNAL_COHORT:
            add(ANALYSED, cohort, NO_TEST_PARTITION, 0, 0)
        return
    for input_, group in image_inputs(scored, sequences, planes):
        if len(group):
            add(ANALYSED, cohort, input_, group["patient_id"].nunique(), len(group))
    for label, name in enumerate(classes):
        of_class = scored[scored["label"] == label]
        add(ANALYSED, cohort, f"{ALL_INPUT}: {name}", of_class["patient_id"].nunique(), len(of_class))


def _count(table: pd.DataFrame, step: str, cohort: str, group: str, what: str = "patients") -> int:
    rows = table[(table["step"] == step) & (table["cohort"] == cohort) & (table["group"] == group)]
    return int(rows[what].iloc[0]) if len(rows) and pd.notna(rows[what].iloc[0]) else 0


def _short(reason: str) -> str:
    """The figure's short form of an exclusion reason (the table keeps the long one)."""
    if reason.startswith(LACKING):
        return f"lacking {reason.rsplit(': ', 1)[1]} (analysed in other inputs)"
    if reason == NO_ANNOTATED_IMAGE:
        return "no annotated image"
    head, _, sequence = reason.rpartition(": ")
    return f"{head.split(' (')[0]} ({sequence})" if sequence else reason


def _wrap(text: str, width: int = 44) -> str:
    """Lines of at most ``width`` characters (five classes side by side overlap the next column)."""
    return "\n".join(textwrap.wrap(text, width)) or text


def flow_figure(table: pd.DataFrame, classes, n_folds: int | None, cohorts=COHORTS, holdout: str = "",
                unit: str = "images", image_labels: bool = False, level: str | None = None):
    """STARD-style diagram: listed -> with images (left out beside) -> one column per
    cohort: split -> analysed -> reader study. Arrows run from box edge to box edge.
    ``unit``: what the ``images`` counts are (``volumes`` in a volume study).
    ``image_labels``: the classes are the images' (counted in images, image level);
    ``level``: what the analysis scores (default: image or case level)."""
    per = "images" if image_labels else "patients"
    level = level or ("image level" if image_labels else "case level")
    has_lesions = "lesions" in table.columns

    def counted(r) -> str:
        """``(n volumes, m lesions)`` of a row (detection: lesions too)."""
        lesions = f", {r.lesions} lesions" if has_lesions and pd.notna(r.lesions) else ""
        return f"({r.images} {unit}{lesions})"

    plt = pyplot()
    cohorts = [c for c in cohorts if ((table["cohort"] == c) & (table["step"] == LISTED)).any()]
    fig = plt.figure(figsize=(PAGE_WIDTH * max(1.0, len(cohorts) / 2), 6.4))
    ax = fig.add_axes((0, 0, 1, 0.96))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")

    def box(x, y, text, color="white", edge="0.2"):
        return ax.text(x, y, text, ha="center", va="center", fontsize=7,
                       bbox=dict(boxstyle="round,pad=0.45", facecolor=color, edgecolor=edge, lw=0.8))

    def arrow(source, target):
        """From the bottom of ``source`` (a box, or an (x, y) point) to the top of ``target``."""
        start = dict(xytext=(0.5, 0), textcoords=source) if not isinstance(source, tuple) else dict(
            xytext=source, textcoords="data")
        ax.annotate("", xy=(0.5, 1), xycoords=target, **start,
                    arrowprops=dict(arrowstyle="-|>", color="0.25", lw=0.9, shrinkA=2, shrinkB=2))

    listed = {c: _count(table, LISTED, c, "all") for c in cohorts}
    with_images = {c: _count(table, WITH_IMAGES, c, "all") for c in cohorts}
    n_images = {c: _count(table, WITH_IMAGES, c, "all", "images") for c in cohorts}
    top = box(0.5, 0.95, f"Patients listed in the cases table: n = {sum(listed.values())}\n"
                         + ", ".join(f"{c} {n}" for c, n in listed.items()))
    found = box(0.5, 0.74, f"Patients with annotated {unit}: n = {sum(with_images.values())}\n"
                           f"annotated {unit}: {sum(n_images.values())}")
    arrow(top, found)
    lines = []
    for reason, group in table[table["step"] == EXCLUDED].groupby("group", sort=False):
        patients = int(group["patients"].sum())
        images = int(group["images"].fillna(0).sum())
        if patients or images:
            lines.append(f"{_short(reason)}: n = {patients}" + (f" ({images} files)" if images else ""))
    left_out = ax.text(0.6, 0.845, "Left out (patients)\n" + ("\n".join(lines) if lines else "none"), ha="left",
                       va="center", fontsize=7, bbox=dict(boxstyle="round,pad=0.45", facecolor="#f4f4f4",
                                                          edgecolor="0.2", lw=0.8))
    ax.annotate("", xy=(0, 0.5), xycoords=left_out, xytext=(0.5, 0.845), textcoords="data",
                arrowprops=dict(arrowstyle="-|>", color="0.25", lw=0.9, shrinkA=0, shrinkB=2))
    columns = {c: (i + 0.5) / len(cohorts) for i, c in enumerate(cohorts)}
    for index, (cohort, x) in enumerate(columns.items()):
        color = PALETTE[min(index, len(PALETTE) - 1)]
        per_class = ", ".join(f"{name} {_count(table, WITH_IMAGES, cohort, name, per)}" for name in classes)
        if cohort == INTERNAL_COHORT:
            folds = table[(table["step"] == SPLIT) & (table["cohort"] == cohort)]
            split = ("\n".join(f"{r.group}: n = {r.patients} {counted(r)}" for r in folds.itertuples())
                     if len(folds) and str(folds["group"].iloc[0]).startswith(("fold", "repeat"))
                     else "no folds (audit)")
            title = (f"Internal cohort (hold-out {holdout})" if holdout else
                     f"Internal cohort (cross-validation{f', {n_folds} folds' if n_folds else ''})")
        else:
            split = "test set: never used for training\nor model selection"
            title = "External cohort (test)" if cohort == "external" else f"External cohort {cohort} (test)"
        classes_text = (f"n = {with_images[cohort]}; {unit} by class: {per_class}" if image_labels
                        else f"n = {with_images[cohort]} ({per_class})")
        if has_lesions:
            classes_text += f"; {_count(table, WITH_IMAGES, cohort, 'all', 'lesions')} lesions"
        cohort_box = box(x, 0.57, f"{title}\n{_wrap(classes_text)}\n"
                                  f"{n_images[cohort]} {unit}",
                         color=color + "22", edge=color)
        arrow(found, cohort_box)
        split_box = box(x, 0.41, split, edge=color)
        arrow(cohort_box, split_box)
        analysed = table[(table["step"] == ANALYSED) & (table["cohort"] == cohort)
                         & ~table["group"].str.contains(":")]
        scorer = ("internal-test" if holdout and cohort == INTERNAL_COHORT
                  else EVALUATED_MODEL.get(cohort, EVALUATED_MODEL["external"]))
        text = (f"Analysed ({scorer} predictions, {level})\n"
                + "\n".join(f"{r.group}: n = {r.patients} {counted(r)}" for r in analysed.itertuples())
                + "\n" + _wrap(", ".join(f"{name} {_count(table, ANALYSED, cohort, f'{ALL_INPUT}: {name}', per)}"
                                         for name in classes)))
        analysed_box = box(x, 0.22, text, color=color + "22", edge=color)
        arrow(split_box, analysed_box)
        read = table[(table["step"] == READ) & (table["cohort"] == cohort)]
        if len(read):
            read_box = box(x, 0.05, "Reader study\n" + "\n".join(f"{r.group}: n = {r.patients}"
                                                                   for r in read.itertuples()),
                           color="#f4f4f4", edge=color)
            arrow(analysed_box, read_box)
    fig.suptitle("Participant flow (STARD 2015 item 19)", y=0.995)
    return fig


def main_stage(config, cases_path, images_path, exclusion_paths, case_prediction_paths, out, figure_stem,
               folds_path=None, readers_path=None, image_prediction_paths=()) -> pd.DataFrame:
    """``image_prediction_paths`` (the ensembling stage's tables) instead of
    ``case_prediction_paths`` where labels belong to images."""
    classes = list(config["classes"])
    cases = read_cases(cases_path, classes, all_external=bool(config["audit"]["bundle"]), external_cohorts=None)
    cohorts = list(dict.fromkeys([INTERNAL_COHORT, *config["data"]["external_cohorts"],
                                  *sorted(set(cases["cohort"]) - {INTERNAL_COHORT})]))
    images = pd.read_parquet(images_path)
    excluded = pd.concat([pd.read_csv(p, dtype=str) for p in exclusion_paths], ignore_index=True)
    folds = read_splits(folds_path) if folds_path else None
    readers = pd.read_csv(readers_path, dtype=str) if readers_path else None
    if readers is not None and "patient_id" not in readers.columns and "case" in readers.columns:
        readers = readers.rename(columns={"case": "patient_id"})
    volumes = volume_study(config)
    image_predictions = None
    if image_prediction_paths:
        predictions = read_parquets(image_prediction_paths)
        image_predictions = scoring_image_predictions(predictions, predictions["backbone"].iloc[0])
    table = flow_table(cases, images, excluded, folds,
                       read_parquets(case_prediction_paths) if case_prediction_paths else None, classes, readers,
                       cohorts, volumes=volumes, image_predictions=image_predictions,
                       sequences=list(config["sequences"]), planes=dict(config["planes"]))
    write_csv(table, out)
    holdout = folds is not None and "partition" in folds.columns
    n_folds = int(folds["fold"].nunique()) if folds is not None and not holdout else None
    ratios = ":".join(f"{r:g}" for r in config["splits"]["ratios"])
    holdout_text = (f"{ratios}, {int(folds['repeat'].nunique())} repeat(s)" if holdout else "")
    save_figure(flow_figure(table, classes, n_folds, cohorts, holdout_text, "volumes" if volumes else "images",
                            image_labels=image_predictions is not None), Path(figure_stem))
    log.info("participant flow: %d counts -> %s", len(table), out)
    return table


def detection_main_stage(config, cases_path, lesion_hit_paths, out, figure_stem, folds_path=None,
                         reader_lesions_path=None) -> pd.DataFrame:
    """Detection studies: ``cases_path`` the detection_cases stage's cases table,
    ``lesion_hit_paths`` the candidates stage's lesion tables (one per model x input, in
    the study's order), ``reader_lesions_path`` the readers' lesion table (if any)."""
    task = DetectionTask.from_config(config)
    cases = read_cases_table(cases_path)
    hits = {}
    for (model, input_), path in zip(task.pairs, lesion_hit_paths):
        hits.setdefault(input_, pd.read_parquet(path))  # the first model of each input
    readers = None
    if reader_lesions_path:
        marked = pd.read_parquet(reader_lesions_path)
        readers = {"cohort": config["detection_evaluation"]["readers"]["cohort"],
                   "n_readers": int(marked["reader"].nunique())}
    folds = read_splits(folds_path) if folds_path else None
    table = detection_flow_table(cases, folds, hits, {name: tuple(m) for name, m in task.inputs.items()},
                                 len(config["sequences"]), readers)
    write_csv(table, out)
    n_folds = int(folds["fold"].nunique()) if folds is not None else None
    save_figure(flow_figure(table, LESION_LOADS, n_folds, ("internal", "external"), unit="volumes",
                            level="lesion level"),
                Path(figure_stem))
    log.info("participant flow (detection): %d counts -> %s", len(table), out)
    return table
