"""One labelme annotation: the JSON, its image and the one rectangle around the lesion.

Any labelme 3.x-5.x file; ``imagePath`` is relative to the JSON and never leaves the
images folder; the image is read through :func:`spinedx.readers.open_image`. The free-text
shape label is not read: the diagnosis comes from the cases table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from spinedx.errors import InputError
from spinedx.io import sha256_file
from spinedx.readers import open_image

log = logging.getLogger(__name__)

# An old labelme box (no shape_type: labelme before 3.x drew boxes as 4-point polygons)
# is read as a rectangle only when each of its 4 points lies within this distance of a
# different corner of their bounding box: hand-drawn old boxes are a few pixels off, a
# trapezoid or a rotated outline is not a box. The tolerance is the larger of an absolute
# few pixels (small boxes) and a fraction of the box's shorter side (large boxes).
OLD_BOX_TOLERANCE_PX = 3.0
OLD_BOX_TOLERANCE_FRACTION = 0.1


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
    if not candidate.exists():
        existing = _same_but_case(root, candidate)
        if existing is not None:
            suggestion = os.path.relpath(existing, json_path.parent.resolve()).replace(os.sep, "/")
            raise InputError(
                f"{json_path}: imagePath {image_path!r} names no file, but {existing} exists: the "
                f"names differ in letter case only (file names are case-sensitive here); set "
                f"imagePath to {suggestion!r} or rename the file"
            )
    return candidate


def _same_but_case(root: Path, missing: Path) -> Path | None:
    """The one existing path under ``root`` that equals ``missing`` but for letter case
    (a file annotated on a case-insensitive file system), else None."""
    found = root
    for part in missing.relative_to(root).parts:
        if (found / part).exists():
            found = found / part
            continue
        if not found.is_dir():
            return None
        matches = [entry for entry in found.iterdir() if entry.name.lower() == part.lower()]
        if len(matches) != 1:
            return None
        found = matches[0]
    return found if found.is_file() else None


def _points(json_path: Path, shape: dict) -> np.ndarray:
    points = shape.get("points")
    if not isinstance(points, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points):
        raise InputError(f"{json_path}: shape points must be a list of [x, y] pairs")
    try:
        xy = np.asarray(points, dtype=float).reshape(-1, 2)
    except (TypeError, ValueError) as error:
        raise InputError(f"{json_path}: non-numeric shape point: {error}") from error
    if not np.isfinite(xy).all():
        raise InputError(f"{json_path}: shape points must be finite numbers")
    return xy


def old_box_offset(xy: np.ndarray) -> tuple[float, float]:
    """(largest distance of a point from its own corner of the bounding box, tolerance)
    of 4 untyped points; inf when two points share a corner (not a box)."""
    low, high = xy.min(axis=0), xy.max(axis=0)
    tolerance = max(OLD_BOX_TOLERANCE_PX, OLD_BOX_TOLERANCE_FRACTION * float((high - low).min()))
    corners = np.array([[low[0], low[1]], [high[0], low[1]], [high[0], high[1]], [low[0], high[1]]])
    distances = np.linalg.norm(xy[:, None, :] - corners[None, :, :], axis=2)
    nearest = distances.argmin(axis=1)
    if len(set(nearest.tolist())) != 4:
        return float("inf"), tolerance
    return float(distances[np.arange(4), nearest].max()), tolerance


def lesion_shape(json_path: Path, shapes) -> tuple[dict, np.ndarray]:
    """The one lesion rectangle of a labelme file and its points, as labelme defines shapes.

    A box is a shape with ``shape_type: "rectangle"`` (2 corners, labelme 3.x-5.x), or a
    shape without ``shape_type`` (labelme before 3.x, where every shape was a polygon)
    whose 4 points lie on the corners of an axis-aligned rectangle
    (:data:`OLD_BOX_TOLERANCE_PX`, :data:`OLD_BOX_TOLERANCE_FRACTION`). A shape typed
    "polygon" is never a box, whatever its points. Other shapes (polygons, points, lines,
    circles, masks, ...) are ignored and logged; a file needs exactly one box.
    """
    if not isinstance(shapes, list):
        raise InputError(f"{json_path}: `shapes` must be a list")
    boxes: list[tuple[dict, np.ndarray]] = []
    rectangles = old_boxes = 0
    ignored: dict[str, int] = {}
    hints: list[str] = []
    for shape in shapes:
        if not isinstance(shape, dict):
            raise InputError(f"{json_path}: every entry of `shapes` must be an object")
        kind = shape.get("shape_type")
        if kind == "rectangle":
            xy = _points(json_path, shape)
            if len(xy) != 2:
                raise InputError(f"{json_path}: a rectangle needs exactly 2 corner points, found {len(xy)}")
            boxes.append((shape, xy))
            rectangles += 1
        elif kind is None:
            xy = _points(json_path, shape)
            offset, tolerance = old_box_offset(xy) if len(xy) == 4 else (None, None)
            if offset is not None and offset <= tolerance:
                boxes.append((shape, xy))
                old_boxes += 1
            else:
                name = "untyped polygon" if offset is None else "untyped 4-point shape that is not a box"
                ignored[name] = ignored.get(name, 0) + 1
                if offset is not None:
                    hints.append(f"an untyped 4-point shape is read as a box only when each point is within "
                                 f"{tolerance:.1f} px of a corner of an axis-aligned rectangle "
                                 + ("(two points share a corner)" if offset == float("inf")
                                    else f"(this one is {offset:.1f} px off)"))
        else:
            name = str(kind)
            ignored[name] = ignored.get(name, 0) + 1
            if kind == "polygon" and isinstance(shape.get("points"), list) and len(shape["points"]) == 4:
                hints.append('a shape typed "polygon" is never read as a box, even with 4 points')
    other = ", ".join(f"{n} {name}{'s' if n > 1 else ''}" for name, n in sorted(ignored.items()))
    if len(boxes) != 1:
        found = [f"{rectangles} rectangle{'s' if rectangles != 1 else ''}"]
        if old_boxes:
            found.append(f"{old_boxes} untyped 4-point box{'es' if old_boxes != 1 else ''} (labelme < 3)")
        raise InputError(
            f"{json_path}: expected exactly one rectangle around the lesion, found {' and '.join(found)}"
            + (f"; other shapes ignored: {other}" if other else "")
            + ("".join(f"; {hint}" for hint in dict.fromkeys(hints)) if not boxes else "")
            + "; draw one rectangle per image in labelme (Create Rectangle)"
        )
    if other:
        log.info("%s: other shapes ignored: %s (only the rectangle is read)", json_path, other)
    return boxes[0]


def parse_box(json_path: Path, shapes, width: int, height: int) -> tuple[float, float, float, float]:
    """The one rectangle of a labelme file (:func:`lesion_shape`) as (x0, y0, x1, y1),
    ordered and clipped."""
    _, xy = lesion_shape(json_path, shapes)
    # Annotators drag rectangles from any corner: order the corners, then clip to the image.
    x0, y0 = np.clip(xy.min(axis=0), 0, [width, height])
    x1, y1 = np.clip(xy.max(axis=0), 0, [width, height])
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InputError(
            f"{json_path}: the rectangle {xy.tolist()} lies outside the {width}x{height} image "
            "or is empty after clipping; redraw it on the lesion"
        )
    return float(x0), float(y0), float(x1), float(y1)


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
