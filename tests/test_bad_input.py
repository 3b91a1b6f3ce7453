"""Catalogue of bad (or merely unusual) input: one parametrised row per case.

Each refused case asserts the exception type, that the message names the offending file
and that it says how to fix it. Each tolerated case asserts the documented handling.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from spinedx import splitting
from spinedx.errors import InputError
from spinedx.imaging.cache import write_cache
from spinedx.models import checkpoints
from spinedx.splitting import check_folds, make_folds, write_folds
from spinedx.stages import training
from spinedx.stages.annotations import tabulate
from spinedx.stages.preprocessing import build_cache

from conftest import write_labelme

T1 = "T1WI"


def labelme(images: Path, patient="P1", name="P1_a", **options) -> Path:
    options.setdefault("points", [[5, 4], [20, 18]])
    image_name = options.pop("image_name", f"{name}.png")
    return write_labelme(images / patient / T1 / f"{name}.json", image_name, **options)


def cases_file(path: Path, rows) -> Path:
    pd.DataFrame(rows, columns=["patient_id", "diagnosis", "cohort"]).to_csv(path, index=False)
    return path


# --- refused cases: each returns (action, offending file, fix pattern) --------------------

def malformed_json(images, cases, config):
    path = images / "P1" / T1 / "P1_a.json"
    path.write_text('{"shapes": [')
    return lambda: tabulate(images, cases, config, "T1"), path, "re-save it from labelme"


def missing_image(images, cases, config):
    png = images / "P1" / T1 / "P1_a.png"
    png.unlink()
    return lambda: tabulate(images, cases, config, "T1"), png, "restore it or correct imagePath"


def unreadable_image(images, cases, config):
    png = images / "P1" / T1 / "P1_a.png"
    png.write_bytes(b"this is not an image")
    return lambda: tabulate(images, cases, config, "T1"), png, "re-export it"


def truncated_image(images, cases, config):
    png = images / "P1" / T1 / "P1_a.png"
    png.write_bytes(png.read_bytes()[:60])
    return lambda: tabulate(images, cases, config, "T1"), png, "re-export it"


def image_path_escaping(images, cases, config):
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(images.parent / "outside.png")
    path = labelme(images, image_name=None, extra={"imagePath": "..\\..\\..\\outside.png"})
    return lambda: tabulate(images, cases, config, "T1"), path, "must stay inside"


def image_path_absolute(images, cases, config):
    path = labelme(images, image_name=None, extra={"imagePath": "C:\\scans\\P1_a.png"})
    return lambda: tabulate(images, cases, config, "T1"), path, "relative to the JSON"


def embedded_image_data_only(images, cases, config):
    path = labelme(images, image_name=None, extra={"imagePath": None, "imageData": "iVBORw0KGgo="})
    return lambda: tabulate(images, cases, config, "T1"), path, "set imagePath"


def decompression_bomb(images, cases, config):
    png = images / "P1" / T1 / "P1_a.png"
    Image.new("L", (5000, 5000)).save(png)  # 25 Mpx of zeros compress to a few kB
    labelme(images, image_name=None, size=(5000, 5000), extra={"imagePath": "P1_a.png"})
    config["data"]["max_image_pixels"] = 10_000_000
    return lambda: tabulate(images, cases, config, "T1"), png, "data.max_image_pixels"


def no_rectangle(images, cases, config):
    path = labelme(images, points=None, shapes=[{"label": "cord", "points": [[1, 1], [3, 3]], "shape_type": "line"}])
    return lambda: tabulate(images, cases, config, "T1"), path, "draw one rectangle"


def several_rectangles(images, cases, config):
    box = {"label": "tumor", "points": [[5, 4], [20, 18]], "shape_type": "rectangle"}
    path = labelme(images, points=None, shapes=[box, box])
    return lambda: tabulate(images, cases, config, "T1"), path, "draw one rectangle"


# labelme shapes as labelme defines them (readers/labelme.py): only an untyped 4-point
# shape close to an axis-aligned rectangle is an old-style box; refusals count what was
# found. A "fix" may be a tuple of parts the message must all hold.

def polygon_only_segmentation(images, cases, config):
    """A segmentation file: no rectangle, one small 4-point polygon (was read as the box)."""
    outline = {"label": "tumor", "points": [[8, 6], [14, 7], [13, 12], [7, 11]], "shape_type": "polygon"}
    path = labelme(images, points=None, shapes=[outline])
    return (lambda: tabulate(images, cases, config, "T1"), path,
            ("found 0 rectangles; other shapes ignored: 1 polygon", 'typed "polygon" is never read as a box',
             "draw one rectangle"))


def two_rectangles_and_polygon(images, cases, config):
    """Not "found 3": the polygon is not a rectangle."""
    box = {"label": "tumor", "points": [[5, 4], [20, 18]], "shape_type": "rectangle"}
    outline = {"label": "cord", "points": [[1, 1], [9, 1], [9, 9], [1, 9]], "shape_type": "polygon"}
    path = labelme(images, points=None, shapes=[box, dict(box, points=[[22, 4], [30, 12]]), outline])
    return (lambda: tabulate(images, cases, config, "T1"), path,
            ("found 2 rectangles; other shapes ignored: 1 polygon", "draw one rectangle"))


def untyped_trapezoid(images, cases, config):
    """labelme < 3 (no shape_type): a 4-point outline hundreds of pixels off a rectangle."""
    trapezoid = {"label": "tumor", "points": [[250, 20], [350, 20], [580, 380], [20, 380]]}
    path = labelme(images, points=None, shapes=[trapezoid], size=(600, 400))
    return (lambda: tabulate(images, cases, config, "T1"), path,
            ("found 0 rectangles; other shapes ignored: 1 untyped 4-point shape that is not a box",
             "within 36.0 px of a corner", "230.0 px off", "draw one rectangle"))


def untyped_box_and_rectangle(images, cases, config):
    """An old-style box and a rectangle: two boxes, each kind counted."""
    box = {"label": "tumor", "points": [[5, 4], [20, 18]], "shape_type": "rectangle"}
    old = {"label": "tumor", "points": [[22, 4], [30, 4], [30, 12], [22, 12]]}
    path = labelme(images, points=None, shapes=[box, old])
    return (lambda: tabulate(images, cases, config, "T1"), path,
            ("found 1 rectangle and 1 untyped 4-point box (labelme < 3)", "draw one rectangle"))


def image_path_differs_in_case(images, cases, config):
    """Annotated on a case-insensitive file system: the message names the file that exists."""
    path = labelme(images, extra={"imagePath": "p1_A.PNG"})
    existing = images / "P1" / T1 / "P1_a.png"
    return (lambda: tabulate(images, cases, config, "T1"), path,
            (f"but {existing} exists", "letter case only", "set imagePath to 'P1_a.png'"))


def image_folder_differs_in_case(images, cases, config):
    sub = images / "P1" / T1 / "PNG"
    sub.mkdir()
    (images / "P1" / T1 / "P1_a.png").rename(sub / "P1_a.png")
    path = labelme(images, image_name=None, extra={"imagePath": "png\\P1_A.png"})
    return (lambda: tabulate(images, cases, config, "T1"), path,
            (f"but {sub / 'P1_a.png'} exists", "set imagePath to 'PNG/P1_a.png'"))


def box_outside_image(images, cases, config):
    path = labelme(images, points=[[50, 40], [60, 45]])
    return lambda: tabulate(images, cases, config, "T1"), path, "redraw it"


def unknown_diagnosis(images, cases, config):
    cases_file(cases, [("P1", "glioma", "internal"), ("P2", "schwannoma", "external")])
    return lambda: tabulate(images, cases, config, "T1"), cases, "expected one of"


def unknown_sequence_folder(images, cases, config):
    folder = images / "P1" / "FLAIR"
    write_labelme(folder / "x.json", "x.png", [[5, 4], [20, 18]])
    return lambda: tabulate(images, cases, config, "T1"), folder, "map it to a sequence in config"


def patient_missing_from_cases(images, cases, config):
    labelme(images, patient="P9", name="P9_a")
    return lambda: tabulate(images, cases, config, "T1"), images / "P9", "add a row"


def patient_in_both_cohorts(images, cases, config):
    cases_file(cases, [("P1", "ependymoma", "internal"), ("P1", "ependymoma", "external"),
                       ("P2", "schwannoma", "external")])
    return lambda: tabulate(images, cases, config, "T1"), cases, "keep one row per patient"


def same_image_two_patients(images, cases, config):
    same = np.full((30, 40), 7, np.uint8)
    labelme(images, "P1", "P1_a", image=same)
    labelme(images, "P2", "P2_a", image=same)
    return lambda: tabulate(images, cases, config, "T1"), images / "P1" / T1 / "P1_a.png", "remove the copies"


def fold_with_one_class(images, cases, config):
    cases_file(cases, [(f"P{i}", ["ependymoma", "schwannoma"][i % 2], "internal") for i in range(4)])
    folds = pd.DataFrame({"patient_id": ["P0", "P2", "P1", "P3"], "diagnosis": "x",
                          "label": [0, 0, 1, 1], "fold": [0, 0, 1, 1]})
    table = pd.DataFrame({"patient_id": [f"P{i}" for i in range(4)], "cohort": "internal"})
    return lambda: check_folds(folds, table, 2, cases), cases, "rerun the splits stage"


def too_few_patients_for_folds(images, cases, config):
    from spinedx.readers.cases import read_cases
    cases_file(cases, [(f"P{i}", ["ependymoma", "schwannoma"][i % 2], "internal") for i in range(6)])
    return (lambda: make_folds(read_cases(cases, config["classes"]), 5, 0, cases), cases,
            "lower config splits.n_folds")


def training_fold_with_one_class(images, cases, config):
    """A sequence whose validation patients of one fold are all of one class."""
    folds_path = cases.parent / "folds.tsv"
    write_folds(pd.DataFrame({"patient_id": ["P0", "P1", "P2", "P3"], "diagnosis": "x",
                              "label": [0, 1, 0, 1], "fold": [0, 1, 1, 0]}), folds_path)
    table = pd.DataFrame({"patient_id": ["P0", "P1", "P2"], "cohort": "internal", "label": [0, 1, 0]})
    from spinedx.splitting import read_folds
    return (lambda: splitting.split_indices(table, read_folds(folds_path), 0, folds_path), folds_path,
            "add patients of both classes")


def corrupt_dicom(images, cases, config):
    from pydicom.data import get_testdata_file
    dcm = images / "P1" / T1 / "P1_a.dcm"
    shutil.copy(get_testdata_file("MR_truncated.dcm"), dcm)
    labelme(images, image_name=None, size=(64, 64), extra={"imagePath": "P1_a.dcm"})
    return lambda: tabulate(images, cases, config, "T1"), dcm, "re-export the slice"


def corrupt_checkpoint(images, cases, config):
    path = cases.parent / "best.pt"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    return lambda: checkpoints.load_checkpoint(path), path, "Retrain to recreate it"


def truncated_checkpoint(images, cases, config):
    path = cases.parent / "best.pt"
    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "state_dict": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:1500])
    return lambda: checkpoints.load_checkpoint(path), path, "Retrain to recreate it"


class _ExecutesOnLoad:
    def __reduce__(self):
        return (print, ("code ran while loading a checkpoint",))


def checkpoint_executing_code(images, cases, config):
    path = cases.parent / "best.pt"
    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "payload": _ExecutesOnLoad()}, path)
    return lambda: checkpoints.load_checkpoint(path), path, "refused: loading it could execute code"


def image_labels_without_labelme(images, cases, config):
    """The audit of an image-labelled bundle (its card sets labels.source annotation) on a
    cohort of bare images: the labelme files are the images' labels, so it is refused."""
    for path in images.rglob("*.json"):
        path.unlink()
    config = {**config, "labels": {**config["labels"], "source": "annotation", "reference_class": "ependymoma"},
              "audit": {**config["audit"], "bundle": "released/bundle"}}
    return (lambda: tabulate(images, cases, config, "T1"), images / "P1" / T1 / "P1_a.png",
            ("labels.source annotation", "labelme JSON beside it", "no shape for an image of 'ependymoma'"))


REFUSED = [image_labels_without_labelme, malformed_json, missing_image, unreadable_image, truncated_image, image_path_escaping,
           image_path_absolute, embedded_image_data_only, decompression_bomb, no_rectangle,
           several_rectangles, box_outside_image, unknown_diagnosis, unknown_sequence_folder,
           patient_missing_from_cases, patient_in_both_cohorts, same_image_two_patients,
           fold_with_one_class, too_few_patients_for_folds, training_fold_with_one_class,
           corrupt_dicom, corrupt_checkpoint, truncated_checkpoint, checkpoint_executing_code,
           polygon_only_segmentation, two_rectangles_and_polygon, untyped_trapezoid,
           untyped_box_and_rectangle, image_path_differs_in_case, image_folder_differs_in_case]


@pytest.mark.parametrize("case", REFUSED, ids=[f.__name__ for f in REFUSED])
def test_refused_with_file_and_fix(tree, config, case, capsys):
    images, cases = tree
    action, offending, fix = case(images, cases, config)
    with pytest.raises(InputError) as error:
        action()
    message = str(error.value)
    assert str(offending) in message, message
    for part in (fix,) if isinstance(fix, str) else fix:
        assert part in message, message
    assert "code ran while loading" not in capsys.readouterr().out


def test_nan_loss_names_the_job_and_the_fix(tmp_path):
    """NaN loss: FloatingPointError (exit code 3) naming the job folder and the fix."""
    from spinedx import config as configuration
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 8)
    images = pd.DataFrame({"image_id": [f"P{i}/T1/a" for i in range(16)],
                           "patient_id": [f"P{i}" for i in range(16)], "sequence": "T1",
                           "cohort": "internal", "label": labels})
    images.to_parquet(tmp_path / "T1.parquet")
    write_cache({"images": rng.integers(0, 255, (16, 32, 32), dtype=np.uint8),
                 "image_id": images.image_id.to_numpy(str)}, tmp_path / "T1.npz")
    write_folds(images.assign(diagnosis="x", fold=np.arange(16) // 2 % 2)[["patient_id", "diagnosis", "label", "fold"]],
                tmp_path / "folds.tsv")
    config = configuration.resolve({"preprocessing": {"size": 32}, "splits": {"n_folds": 2}, "training": {
        "epochs": 3, "batch_size": 8, "device": "cpu", "lr": 1e12, "optimizer": "sgd"}})
    out_dir = tmp_path / "model"
    with pytest.raises(FloatingPointError) as error:
        training.train(tmp_path / "T1.npz", tmp_path / "T1.parquet", tmp_path / "folds.tsv",
                       "resnet10t", "T1", 0, config, out_dir)
    assert str(out_dir) in str(error.value) and "lower training.lr" in str(error.value)
    assert not (out_dir / "best.pt").exists()  # no model that looks finished


# --- tolerated cases: handled as documented in README ("Your own data") ----------------

def _box(table):
    row = table.iloc[0]
    return row.x0, row.y0, row.x1, row.y1


def test_old_labelme_without_version_and_four_point_polygon(tree, config):
    images, cases = tree
    path = labelme(images, points=[[5, 4], [20, 4], [20, 18], [5, 18]], shape_type="polygon")
    document = json.loads(path.read_text())
    del document["version"], document["flags"]
    for shape in document["shapes"]:  # labelme 3.x wrote no shape_type, group_id, ...
        for key in ("shape_type", "group_id", "description", "flags", "mask"):
            shape.pop(key)
    path.write_text(json.dumps(document))
    assert _box(tabulate(images, cases, config, "T1")) == (5, 4, 20, 18)


def test_one_rectangle_among_other_shapes_is_the_box_and_the_rest_is_logged(tree, config, caplog):
    """A segmentation-and-detection file: the rectangle is read, the others are ignored."""
    images, cases = tree
    shapes = [{"label": "cord", "points": [[1, 1], [9, 1], [9, 9], [1, 9]], "shape_type": "polygon"},
              {"label": "tumor", "points": [[20, 18], [5, 4]], "shape_type": "rectangle"},
              {"label": "conus", "points": [[30, 20]], "shape_type": "point"},
              {"label": "canal", "points": [[2, 25], [38, 25]], "shape_type": "line"},
              {"label": "cyst", "points": [[30, 5], [33, 5]], "shape_type": "circle"}]
    path = labelme(images, points=None, shapes=shapes)
    with caplog.at_level(logging.INFO, logger="spinedx.readers.labelme"):
        assert _box(tabulate(images, cases, config, "T1")) == (5, 4, 20, 18)
    assert f"{path}: other shapes ignored: 1 circle, 1 line, 1 point, 1 polygon" in caplog.text


@pytest.mark.parametrize("points, box", [
    # hand-drawn on a small box: up to 3 px off a corner, listed in any order
    ([[5, 4], [20, 6], [18, 18], [7, 17]], (5, 4, 20, 18)),
    ([[20, 18], [5, 4], [20, 4], [5, 18]], (5, 4, 20, 18)),
])
def test_old_untyped_box_a_few_pixels_off_is_a_rectangle(tree, config, points, box):
    images, cases = tree
    labelme(images, points=None, shapes=[{"label": "tumor", "points": points}])
    assert _box(tabulate(images, cases, config, "T1")) == box


def test_old_untyped_box_tolerance_scales_with_the_box(tree, config):
    """A 300 x 200 px box may be up to 20 px (10% of its shorter side) off, not 21."""
    images, cases = tree
    near = [[100, 100], [400, 100], [400, 300], [120, 300]]  # one corner 20 px off
    labelme(images, points=None, shapes=[{"label": "t", "points": near}], size=(500, 400))
    assert _box(tabulate(images, cases, config, "T1")) == (100, 100, 400, 300)
    path = labelme(images, points=None, shapes=[{"label": "t", "points": [*near[:3], [121, 300]]}],
                   size=(500, 400))
    with pytest.raises(InputError, match=r"within 20.0 px of a corner .*\(this one is 21.0 px off\)") as error:
        tabulate(images, cases, config, "T1")
    assert str(path) in str(error.value)


def test_newer_labelme_with_unknown_keys(tree, config):
    images, cases = tree
    labelme(images, extra={"version": "6.1.0", "future_key": {"a": 1}, "imageData": None})
    assert _box(tabulate(images, cases, config, "T1")) == (5, 4, 20, 18)


def test_windows_separators_and_embedded_image_data_are_handled(tree, config):
    images, cases = tree
    sub = images / "P1" / T1 / "png"
    sub.mkdir()
    (images / "P1" / T1 / "P1_a.png").rename(sub / "P1_a.png")
    # imageData (a different, embedded picture) is ignored: the file is the source.
    labelme(images, image_name=None, extra={"imagePath": "png\\P1_a.png", "imageData": "iVBORw0KGgo="})
    table = tabulate(images, cases, config, "T1")
    assert table.iloc[0]["image_path"] == "P1/T1WI/png/P1_a.png"


def test_box_partly_outside_is_clipped(tree, config):
    images, cases = tree
    labelme(images, points=[[-10, -3.5], [55, 12]])
    assert _box(tabulate(images, cases, config, "T1")) == (0, 0, 40, 12)


@pytest.mark.parametrize("mode", ["I;16", "RGB", "RGBA", "P"])
def test_png_modes_become_8bit_gray(tree, config, mode):
    images, cases = tree
    png = images / "P1" / T1 / "P1_a.png"
    ramp = np.tile(np.arange(40, dtype=np.uint16) * 1000, (30, 1))
    if mode == "I;16":
        Image.fromarray(ramp).save(png)
    else:
        Image.fromarray((ramp // 256).astype(np.uint8)).convert(mode).save(png)
    assert Image.open(png).mode in (mode, "I", "I;16")
    table = tabulate(images, cases, config, "T1")
    cache = build_cache(table, images, config)
    assert cache["images"].dtype == np.uint8 and cache["images"].shape == (2, 64, 64)
    assert cache["images"][0].max() > cache["images"][0].min()  # contrast survives


def test_patient_without_images_is_a_warning_naming_the_cases_file(tree, config, caplog):
    images, cases = tree
    cases_file(cases, [("P1", "ependymoma", "internal"), ("P2", "schwannoma", "external"),
                       ("P3", "schwannoma", "external")])
    with caplog.at_level(logging.WARNING):
        table = tabulate(images, cases, config, "T1")
    assert set(table.patient_id) == {"P1", "P2"}
    assert str(cases) in caplog.text and "['P3']" in caplog.text


def test_dicom_slice_is_read_with_its_stored_window(tree, config):
    import pydicom
    from pydicom.data import get_testdata_file
    images, cases = tree
    source = get_testdata_file("MR_small.dcm")
    dcm = images / "P1" / T1 / "P1_a.dcm"
    shutil.copy(source, dcm)
    labelme(images, image_name=None, size=(64, 64), points=[[10, 10], [40, 50]], extra={"imagePath": "P1_a.dcm"})
    table = tabulate(images, cases, config, "T1")
    assert table.iloc[0]["image_path"] == "P1/T1WI/P1_a.dcm"
    cache = build_cache(table, images, config)
    dataset = pydicom.dcmread(source)
    center, width = float(dataset.WindowCenter), float(dataset.WindowWidth)
    values = dataset.pixel_array.astype(float) * float(dataset.get("RescaleSlope", 1)) + float(dataset.get("RescaleIntercept", 0))
    expected = np.round(np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255)
    from spinedx.readers import open_image
    assert np.array_equal(np.asarray(open_image(dcm, 10**6)), expected.astype(np.uint8))
    assert cache["images"].shape == (2, 64, 64)
