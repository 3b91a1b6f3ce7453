"""Annotations stage: walk the labelme tree, validate it and tabulate one row per image.

Folder convention (documented in README): ``<images_dir>/<patient_id>/<sequence folder>/
<image>.json``, each labelme JSON pointing at its image through ``imagePath`` (relative
to the JSON, never outside ``images_dir``). Sequence folder names map to canonical
sequence names through the config. The diagnosis comes from the cases table
(histopathology), never from the free-text shape label.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd
from PIL import Image

from spinedx.errors import InputError

log = logging.getLogger(__name__)

COHORTS = ("internal", "external")
CASES_REQUIRED_COLUMNS = ("patient_id", "diagnosis", "cohort")
IMAGE_COLUMNS = [
    "image_id", "patient_id", "sequence", "sequence_folder", "diagnosis", "label", "cohort",
    "json_path", "image_path", "width", "height", "x0", "y0", "x1", "y1",
    "image_sha256", "json_sha256",
]
# Shape types that describe an axis-aligned box: labelme >= 3 writes "rectangle" with two
# opposite corners; older files (and some converters) write 4-point polygons.
RECTANGLE_SHAPES = {"rectangle", "polygon", None}


def sequence_folder_lookup(sequences: dict[str, list[str]]) -> dict[str, str]:
    """Lower-cased folder name -> canonical sequence name."""
    return {name.lower(): sequence for sequence, names in sequences.items() for name in names}


def read_cases(path: str | Path, classes: list[str], all_external: bool = False) -> pd.DataFrame:
    """Read and validate the cases table (one row per patient).

    ``all_external`` (audit mode): every patient is external test data; the cohort
    column is optional and ignored.
    """
    path = Path(path)
    try:
        cases = pd.read_csv(path, dtype={"patient_id": str, "diagnosis": str, "cohort": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the cases table: {error}") from error
    if all_external and len(cases.columns):
        cases["cohort"] = "external"
    missing = [c for c in CASES_REQUIRED_COLUMNS if c not in cases.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {missing}; the cases table needs "
            f"{list(CASES_REQUIRED_COLUMNS)} (optional: age, sex)"
        )
    for column in CASES_REQUIRED_COLUMNS:
        cases[column] = cases[column].astype("string").str.strip()
        empty = cases[column].isna() | (cases[column] == "")
        if empty.any():
            raise InputError(f"{path}: empty {column} on line(s) {_lines(empty)}")
    duplicated = cases["patient_id"].duplicated(keep=False)
    if duplicated.any():
        ids = sorted(set(cases.loc[duplicated, "patient_id"]))
        raise InputError(
            f"{path}: patient(s) listed more than once: {ids}; a patient belongs to one "
            "cohort with one diagnosis (the same patient in both cohorts would leak); keep one "
            "row per patient"
        )
    _check_values(cases, "diagnosis", list(classes), path, " (config key `classes`)")
    _check_values(cases, "cohort", list(COHORTS), path)
    cases["label"] = cases["diagnosis"].map({name: i for i, name in enumerate(classes)})
    return cases.astype({"patient_id": str, "diagnosis": str, "cohort": str})


def _check_values(cases: pd.DataFrame, column: str, allowed: list[str], path, hint: str = "") -> None:
    unknown = ~cases[column].isin(allowed)
    if unknown.any():
        values = sorted(set(cases.loc[unknown, column]))
        raise InputError(f"{path}: unknown {column} {values} on line(s) {_lines(unknown)}; "
                         f"expected one of {allowed}{hint}")


def _lines(mask: pd.Series) -> list[int]:
    # +2: one for the header line, one because pandas counts from zero.
    return [int(i) + 2 for i in np.flatnonzero(mask.to_numpy())][:10]


def sequence_files(images_dir: str | Path, sequences: dict[str, list[str]], sequence: str):
    """Every file under the folders of one sequence (JSONs and images), sorted.

    Used by the workflow to declare a sequence's inputs, so editing one T2 image reruns
    the T2 branch only.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        return []
    wanted = {name.lower() for name in sequences[sequence]}
    files = []
    for patient_dir in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        for folder in sorted(p for p in patient_dir.iterdir() if p.is_dir()):
            if folder.name.lower() in wanted:
                files.extend(f for f in sorted(folder.rglob("*"))
                             if f.is_file() and not f.name.startswith("."))
    return files


def check_tree(images_dir: Path, sequences: dict[str, list[str]], cases: pd.DataFrame,
               cases_path: str | Path) -> None:
    """The whole tree follows the convention and matches the cases table."""
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: the images folder (config data.images_dir) does not exist")
    lookup = sequence_folder_lookup(sequences)
    known_patients = set(cases["patient_id"])
    for patient_dir in sorted(p for p in images_dir.iterdir() if not p.name.startswith(".")):
        if not patient_dir.is_dir():
            raise InputError(
                f"{patient_dir}: unexpected file at the top of the images folder; expected "
                "one folder per patient (<patient_id>/<sequence>/<image>.json)"
            )
        if patient_dir.name not in known_patients:
            raise InputError(
                f"{patient_dir}: patient {patient_dir.name!r} is not in the cases table "
                f"{cases_path}; add a row (diagnosis, cohort) or remove the folder"
            )
        for folder in sorted(p for p in patient_dir.iterdir() if not p.name.startswith(".")):
            if folder.is_dir() and folder.name.lower() not in lookup:
                raise InputError(
                    f"{folder}: unknown sequence folder {folder.name!r}; map it to a sequence "
                    f"in config `sequences` (known: {sorted(lookup)})"
                )


def _resolve_image_path(json_path: Path, image_path: str, images_dir: Path) -> Path:
    """The image a labelme JSON points at, refusing paths that leave the data folder."""
    if not isinstance(image_path, str) or not image_path.strip():
        raise InputError(f"{json_path}: imagePath is missing or empty; save the image next to the JSON "
                         "and set imagePath to its file name (embedded imageData is not used)")
    # labelme on Windows writes backslashes; both separators mean the same here.
    parts = PureWindowsPath(image_path).parts if "\\" in image_path else PurePosixPath(image_path).parts
    if PureWindowsPath(image_path).is_absolute() or PurePosixPath(image_path).is_absolute() or (
        parts and parts[0].endswith(":")
    ):
        raise InputError(
            f"{json_path}: imagePath {image_path!r} is absolute; it must be relative to the JSON"
        )
    candidate = (json_path.parent.joinpath(*parts)).resolve()
    root = images_dir.resolve()
    if root != candidate and root not in candidate.parents:
        raise InputError(
            f"{json_path}: imagePath {image_path!r} points outside the images folder "
            f"{images_dir}; refused (annotation paths must stay inside their folder)"
        )
    return candidate


def parse_box(json_path: Path, shapes, width: int, height: int) -> tuple[float, float, float, float]:
    """The one rectangle of a labelme file as (x0, y0, x1, y1), ordered and clipped."""
    if not isinstance(shapes, list):
        raise InputError(f"{json_path}: `shapes` must be a list")
    boxes = []
    for shape in shapes:
        if not isinstance(shape, dict):
            raise InputError(f"{json_path}: every entry of `shapes` must be an object")
        kind = shape.get("shape_type")
        points = shape.get("points")
        if kind not in RECTANGLE_SHAPES:
            continue
        if not isinstance(points, list) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in points
        ):
            raise InputError(f"{json_path}: shape points must be a list of [x, y] pairs")
        if kind in ("polygon", None) and len(points) != 4:
            continue  # a real polygon outline, not a box
        if kind == "rectangle" and len(points) != 2:
            raise InputError(
                f"{json_path}: a rectangle needs exactly 2 corner points, found {len(points)}"
            )
        try:
            xy = np.asarray(points, dtype=float)
        except (TypeError, ValueError) as error:
            raise InputError(f"{json_path}: non-numeric shape point: {error}") from error
        if not np.isfinite(xy).all():
            raise InputError(f"{json_path}: shape points must be finite numbers")
        boxes.append(xy)
    if len(boxes) != 1:
        raise InputError(
            f"{json_path}: expected exactly one rectangle around the lesion, found {len(boxes)}; "
            "draw one rectangle per image in labelme"
        )
    xy = boxes[0]
    # Annotators drag rectangles from any corner: order the corners, then clip to the image.
    x0, y0 = np.clip(xy.min(axis=0), 0, [width, height])
    x1, y1 = np.clip(xy.max(axis=0), 0, [width, height])
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InputError(
            f"{json_path}: the rectangle {xy.tolist()} lies outside the {width}x{height} image "
            "or is empty after clipping; redraw it on the lesion"
        )
    return float(x0), float(y0), float(x1), float(y1)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def is_dicom(path: Path) -> bool:
    """DICOM by suffix, or by the ``DICM`` marker after the 128-byte preamble."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False  # unreadable: the image reader below reports it


def open_image(path: Path, max_pixels: int) -> Image.Image:
    """Open and fully decode an image (PNG/JPEG/... or DICOM), with a clear error for
    anything unreadable. The one image reader of every stage."""
    if not path.is_file():
        raise InputError(f"{path}: image file is missing; restore it or correct imagePath in its labelme JSON")
    if is_dicom(path):
        return open_dicom(path, max_pixels)
    Image.MAX_IMAGE_PIXELS = None  # our own limit below gives a clearer message
    try:
        with Image.open(path) as probe:
            width, height = probe.size
            _check_pixels(path, width, height, max_pixels)
            image = probe.copy()  # decodes every pixel: truncated files fail here
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"{path}: cannot decode image ({error}); re-export it as PNG, JPEG or DICOM") from error
    return image


def _check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InputError(
            f"{path}: {width}x{height} pixels exceeds the limit of {max_pixels} "
            "(config data.max_image_pixels); refusing a possible decompression bomb"
        )


def open_dicom(path: Path, max_pixels: int) -> Image.Image:
    """One DICOM slice as an 8-bit gray image, as a radiologist's viewer shows it.

    The stored rescale (modality LUT) gives scanner units; the stored window (first
    WindowCenter/WindowWidth, DICOM's linear VOI function) maps them to gray levels, or
    the slice's own minimum..maximum when no window is stored; MONOCHROME1 is inverted.
    Only pixel data and these display attributes are read: no header value (patient
    name, IDs, dates, institution) ever leaves this function, so none reaches an output,
    a log or an error message.
    """
    import pydicom  # imported here: only DICOM cohorts need it
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        rows, columns = int(header.get("Rows", 0)), int(header.get("Columns", 0))
        frames = int(header.get("NumberOfFrames", 1) or 1)
        if rows < 1 or columns < 1:
            raise InputError(f"{path}: DICOM file without an image (no Rows/Columns); "
                             "export the MR slice itself, not a report or structure set")
        _check_pixels(path, columns, rows * frames, max_pixels)
        if frames != 1:
            raise InputError(f"{path}: DICOM holds {frames} frames; annotate one slice per "
                             "file (export the slice as its own DICOM or PNG)")
        dataset = pydicom.dcmread(path)
        values = apply_modality_lut(dataset.pixel_array, dataset).astype(np.float64)
    except InputError:
        raise
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, KeyError,
            NotImplementedError, RuntimeError) as error:
        # Only the exception type: pydicom messages may quote header elements.
        raise InputError(f"{path}: cannot decode DICOM pixel data ({type(error).__name__}); "
                         "re-export the slice uncompressed or as PNG") from error
    if values.ndim != 2:
        raise InputError(f"{path}: DICOM pixel data of shape {values.shape} is not one gray "
                         "slice; export the MR slice as MONOCHROME")
    center, width = _first_value(dataset.get("WindowCenter")), _first_value(dataset.get("WindowWidth"))
    if center is not None and width is not None and width >= 1:
        # DICOM PS3.3 C.11.2.1.2.1, linear VOI function.
        scaled = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    else:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 1 - scaled
    return Image.fromarray(np.round(scaled * 255).astype(np.uint8), mode="L")


def _first_value(element) -> float | None:
    """WindowCenter/WindowWidth may be multi-valued (several presets): use the first."""
    if isinstance(element, Sequence) and not isinstance(element, (str, bytes)):
        element = element[0] if len(element) else None
    try:
        return None if element is None else float(element)
    except (TypeError, ValueError):
        return None


def read_annotation(json_path: Path, images_dir: Path, max_pixels: int) -> dict:
    """Parse and check one labelme file and its image."""
    try:
        raw = json_path.read_bytes()
        document = json.loads(raw)
    except OSError as error:
        raise InputError(f"{json_path}: cannot read: {error}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{json_path}: not valid JSON ({error}); re-save it from labelme") from error
    if not isinstance(document, dict):
        raise InputError(f"{json_path}: a labelme file is a JSON object")
    image_path = _resolve_image_path(json_path, document.get("imagePath"), images_dir)
    image = open_image(image_path, max_pixels)
    width, height = image.size
    declared = (document.get("imageWidth"), document.get("imageHeight"))
    if None not in declared and tuple(declared) != (width, height):
        raise InputError(
            f"{json_path}: imageWidth x imageHeight {declared[0]}x{declared[1]} differ from "
            f"the image {image_path.name} ({width}x{height}); the JSON belongs to another image"
        )
    x0, y0, x1, y1 = parse_box(json_path, document.get("shapes"), width, height)
    return {
        "image_path": image_path,
        "width": width, "height": height,
        "x0": x0, "y0": y0, "x1": x1, "y1": y1,
        "image_sha256": sha256_file(image_path),
        "json_sha256": hashlib.sha256(raw).hexdigest(),
    }


def tabulate(images_dir: str | Path, cases_path: str | Path, config: dict,
             sequence: str | None = None) -> pd.DataFrame:
    """One row per annotated image (of one sequence, or of all)."""
    images_dir = Path(images_dir)
    sequences = config["sequences"]
    if sequence is not None and sequence not in sequences:
        raise InputError(f"unknown sequence {sequence!r}; use one of config `sequences`: {list(sequences)}")
    cases = read_cases(cases_path, config["classes"], all_external=bool(config["audit"]["bundle"]))
    check_tree(images_dir, sequences, cases, cases_path)
    lookup = sequence_folder_lookup(sequences)
    by_patient = cases.set_index("patient_id")
    rows = []
    for json_path in sorted(images_dir.glob("*/*/*.json")):
        patient_id, folder = json_path.parent.parent.name, json_path.parent.name
        if folder.lower() not in lookup or (sequence and lookup[folder.lower()] != sequence):
            continue
        record = read_annotation(json_path, images_dir, config["data"]["max_image_pixels"])
        case = by_patient.loc[patient_id]
        relative_json = json_path.relative_to(images_dir).as_posix()
        rows.append({
            "image_id": relative_json[: -len(".json")],
            "patient_id": patient_id,
            "sequence": lookup[folder.lower()],
            "sequence_folder": folder,
            "diagnosis": case["diagnosis"],
            "label": int(case["label"]),
            "cohort": case["cohort"],
            "json_path": relative_json,
            "image_path": record.pop("image_path").relative_to(images_dir.resolve()).as_posix(),
            **record,
        })
    table = pd.DataFrame(rows, columns=IMAGE_COLUMNS)
    what = f"sequence {sequence}" if sequence else "any sequence"
    if table.empty:
        raise InputError(f"{images_dir}: no labelme JSON files found for {what}")
    check_duplicates(table, images_dir)
    missing = sorted(set(cases["patient_id"]) - set(table["patient_id"]))
    if missing:
        # Documented behaviour: a patient may lack a sequence (they then count in the
        # sequences they have and in ALL); a warning names them so a typo is noticed.
        log.warning("%d patient(s) of %s have no image for %s: %s; add their images under "
                    "%s or ignore this if the sequence was not acquired", len(missing),
                    cases_path, what, missing[:10], images_dir)
    return table.astype({"width": int, "height": int, "label": int})


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


