"""Annotations stage: walk the labelme tree, validate it and tabulate one row per image.

Folder convention (documented in README): ``<images_dir>/<patient_id>/<sequence folder>/
<image>.json``, each labelme JSON pointing at its image through ``imagePath`` (relative
to the JSON, never outside ``images_dir``). Sequence folder names map to canonical
sequence names through the config. Each image's class (``label``) comes from config
``labels.source``: ``cases`` (the reference study) = the patient's diagnosis in the cases
table (histopathology), never the free-text shape label; ``annotation`` = the rectangle's
shape label mapped to a class through ``labels.shape_labels``, and an image without a
shape is ``labels.reference_class``. The readers (:mod:`spinedx.readers`) parse and
check each file; this stage tabulates them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from spinedx.errors import InputError
from spinedx.io import read_parquets, write_csv, write_parquet
from spinedx.readers.cases import read_cases
from spinedx.readers.exclusions import exclusion_record, exclusion_row
from spinedx.readers.labelme import read_annotation
from spinedx.readers.tree import annotation_files, check_tree, sequence_files

log = logging.getLogger(__name__)

IMAGE_COLUMNS = [
    "image_id", "patient_id", "sequence", "sequence_folder", "diagnosis", "label", "cohort",
    "json_path", "image_path", "width", "height", "x0", "y0", "x1", "y1",
    "image_sha256", "json_sha256", "shape_label",
]


def shape_label_classes(config) -> dict[str, str]:
    """Normalised shape label -> class (config ``labels.shape_labels``; a class not listed
    matches its own name)."""
    labels = config["labels"]["shape_labels"]
    return {alias.strip().lower(): name for name in config["classes"] for alias in labels.get(name, [name])}


def image_class(record: dict, json_path: Path, config, lookup: dict[str, str]) -> str:
    """The class of an image whose labels come from the annotation."""
    shape_label = record["shape_label"]
    if shape_label is None:
        return config["labels"]["reference_class"]
    try:
        return lookup[shape_label.strip().lower()]
    except KeyError:
        raise InputError(
            f"{json_path}: shape label {shape_label!r} maps to no class of {list(config['classes'])}; "
            f"add it to config `labels.shape_labels` under its class (e.g. {{{config['classes'][0]}: "
            f"[{shape_label}]}}) or correct the label in labelme") from None


def tabulate(images_dir: str | Path, cases_path: str | Path, config,
             sequence: str | None = None) -> pd.DataFrame:
    """One row per annotated image (of one sequence, or of all)."""
    images_dir = Path(images_dir)
    sequences = config["sequences"]
    if sequence is not None and sequence not in sequences:
        raise InputError(f"unknown sequence {sequence!r}; use one of config `sequences`: {list(sequences)}")
    cases = read_cases(cases_path, config["classes"], all_external=bool(config["audit"]["bundle"]),
                       external_cohorts=config["data"]["external_cohorts"])
    check_tree(images_dir, sequences, cases, cases_path)
    by_patient = cases.set_index("patient_id")
    from_annotation = config["labels"]["source"] == "annotation"
    lookup = shape_label_classes(config) if from_annotation else {}
    class_index = {name: k for k, name in enumerate(config["classes"])}
    rows = []
    for json_path, patient_id, folder, canonical in annotation_files(images_dir, sequences, sequence):
        record = read_annotation(json_path, images_dir, config["data"]["max_image_pixels"],
                                 lesion_optional=from_annotation)
        case = by_patient.loc[patient_id]
        relative_json = json_path.relative_to(images_dir).as_posix()
        label = (class_index[image_class(record, json_path, config, lookup)] if from_annotation
                 else int(case["label"]))
        rows.append({
            "image_id": relative_json[: -len(".json")],
            "patient_id": patient_id,
            "sequence": canonical,
            "sequence_folder": folder,
            "diagnosis": case["diagnosis"],
            "label": label,
            "cohort": case["cohort"],
            "json_path": relative_json,
            "image_path": record.pop("image_path").relative_to(images_dir.resolve()).as_posix(),
            **record,
        })
    table = pd.DataFrame(rows, columns=IMAGE_COLUMNS)
    what = f"sequence {sequence}" if sequence else "any sequence"
    if table.empty:
        raise no_annotation_error(images_dir, config, sequence)
    check_duplicates(table, images_dir)
    missing = sorted(set(cases["patient_id"]) - set(table["patient_id"]))
    if missing:
        # Documented behaviour: a patient may lack a sequence (they then count in the
        # sequences they have and in ALL); a warning names them so a typo is noticed.
        log.warning("%d patient(s) of %s have no image for %s: %s; add their images under "
                    "%s or ignore this if the sequence was not acquired", len(missing),
                    cases_path, what, missing[:10], images_dir)
    return table.astype({"width": int, "height": int, "label": int})


def no_annotation_error(images_dir: Path, config, sequence: str | None) -> InputError:
    """No labelme JSON for ``sequence`` (None: any): the first image file that lacks one and
    the fix; where labels come from the annotation (an image-labelled study, or the audit of
    its bundle, whose card sets labels.source) the labelme file is the image's label."""
    what = f"sequence {sequence}" if sequence else "any sequence"
    names = [sequence] if sequence else list(config["sequences"])
    images = [path for name in names for path in sequence_files(images_dir, config["sequences"], name)
              if path.suffix.lower() != ".json"]
    labels = config["labels"]
    if labels["source"] == "annotation":
        fix = (f"the models' labels come from the annotation (labels.source annotation; in audit mode the "
               f"bundle's model card sets it), so each image needs its labelme JSON beside it: the lesion's "
               f"rectangle labelled with its class (one of {list(config['classes'])}, or a label of "
               f"labels.shape_labels), or no shape for an image of {labels['reference_class']!r}")
    else:
        fix = "annotate each image in labelme (one JSON beside it, with the lesion's rectangle)"
    if images:
        return InputError(f"{images[0]}: no labelme JSON names this image, nor any of the {len(images)} image "
                          f"file(s) of {what} under {images_dir}; {fix}")
    return InputError(f"{images_dir}: no labelme JSON files found for {what} (no image files either); {fix}")


def check_duplicates(table: pd.DataFrame, images_dir: Path) -> None:
    """The same image file under two patients is a leak between folds or cohorts."""
    owners = table.groupby("image_sha256")["patient_id"].nunique()
    shared = owners[owners > 1]
    if not shared.empty:
        rows = table[table["image_sha256"].isin(shared.index)].sort_values("image_sha256")
        paths = [f"{images_dir / p}" for p in rows["image_path"]][:6]
        raise InputError(
            f"the same image (identical sha256) appears under different patients: {paths}; "
            "remove the copies so no image is both trained and tested on"
        )


NO_IMAGE = "no image of this sequence"
NO_ANNOTATION = "image without annotation (no labelme JSON names it)"


def exclusions(images_dir: str | Path, cases_path: str | Path, config, sequence: str | None,
               table: pd.DataFrame) -> pd.DataFrame:
    """What the image table of ``sequence`` (None: all) legitimately leaves out, one row
    each (:mod:`spinedx.readers.exclusions`): patients of the cases table without an image
    of it, and image files in its folders that no labelme JSON names. Bad input is not
    recorded here: it stops the stage (:func:`tabulate`). The participant-flow stage reads
    these records."""
    images_dir = Path(images_dir)

    def unannotated(name: str) -> list[dict]:
        annotated = set(table.loc[table["sequence"] == name, "image_path"])
        relatives = (path.relative_to(images_dir).as_posix() for path in
                     sequence_files(images_dir, config["sequences"], name) if path.suffix.lower() != ".json")
        return [exclusion_row(relative.split("/", 1)[0], name, "image", relative, NO_ANNOTATION)
                for relative in relatives if relative not in annotated]

    return exclusion_record(cases_path, config, table, sequence, NO_IMAGE, unannotated)


def main_stage(config, images_dir, cases_path, sequence, out, exclusions_out=None) -> pd.DataFrame:
    """The workflow stage: the image table of one sequence (and, with ``exclusions_out``,
    the record of what it leaves out)."""
    table = tabulate(images_dir, cases_path, config, sequence)
    if exclusions_out:
        excluded = exclusions(images_dir, cases_path, config, sequence, table)
        write_csv(excluded, exclusions_out)
        log.info("%d exclusion(s) recorded -> %s", len(excluded), exclusions_out)
    write_parquet(table, out)
    log.info("%d images of %d patients -> %s", len(table), table["patient_id"].nunique(), out)
    return table


def merge(tables, images_dir, out) -> pd.DataFrame:
    """The per-sequence image tables as one, checked again for images shared by patients."""
    table = read_parquets(tables)
    check_duplicates(table, Path(images_dir or "."))
    write_parquet(table, out)
    return table
