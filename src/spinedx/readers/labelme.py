"""One labelme annotation: the JSON, its image and the one rectangle around the lesion.

Any labelme 3.x-5.x file; ``imagePath`` is relative to the JSON and never leaves the
images folder; the image is read through :func:`spinedx.readers.open_image`. The
rectangle's shape label is returned as written (``shape_label``); whether it means
anything is the study's choice (config ``labels``: the reference study takes the
diagnosis from the cases table and ignores it). Where labels belong to images, a file
without any shape is an image without a lesion (``lesion_optional``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from spinedx.errors import InputError
from spinedx.io import sha256_file
from spinedx.readers import open_image

# Shape types that describe an axis-aligned box: labelme >= 3 writes "rectangle" with two
# opposite corners; older files (and some converters) write 4-point polygons.
RECTANGLE_SHAPES = {"rectangle", "polygon", None}


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


def lesion_label(json_path: Path, shapes) -> str:
    """The label of the lesion rectangle (the one :func:`parse_box` accepted): of the
    shape typed "rectangle", else of the untyped 4-point box."""
    boxes = [shape for shape in shapes if isinstance(shape, dict) and shape.get("shape_type") == "rectangle"]
    if not boxes:
        boxes = [shape for shape in shapes if isinstance(shape, dict) and shape.get("shape_type") in RECTANGLE_SHAPES
                 and isinstance(shape.get("points"), list) and len(shape["points"]) == 4]
    labels = sorted({str(shape.get("label") or "").strip() for shape in boxes})
    if len(labels) != 1 or not labels[0]:
        raise InputError(f"{json_path}: the lesion rectangle needs one label (found {labels or 'none'}); "
                         "name the finding in labelme's label field")
    return labels[0]


def read_annotation(json_path: Path, images_dir: Path, max_pixels: int, lesion_optional: bool = False) -> dict:
    """Parse and check one labelme file and its image.

    ``lesion_optional`` (labels that belong to images): a file whose ``shapes`` is empty
    is an image without a lesion, returned with a NaN box and ``shape_label`` None.
    """
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
    shapes = document.get("shapes")
    if lesion_optional and (shapes is None or shapes == []):
        x0 = y0 = x1 = y1 = float("nan")
        label = None
    else:
        x0, y0, x1, y1 = parse_box(json_path, shapes, width, height)
        label = lesion_label(json_path, shapes) if lesion_optional else None
    return {
        "image_path": image_path,
        "width": width, "height": height,
        "x0": x0, "y0": y0, "x1": x1, "y1": y1,
        "shape_label": label,
        "image_sha256": sha256_file(image_path),
        "json_sha256": hashlib.sha256(raw).hexdigest(),
    }
