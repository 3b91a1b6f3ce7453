"""The workflow's volume branch on small hand-made cohorts: NIfTI files (two storage orders)
and DICOM series (beside a mask, and alone with a boxes CSV) of one known phantom and
lesion give the expected table rows and exactly the expected crops in every input mode.

The expectations are computed here by hand (numpy slicing and means), independently of
spinedx: native spacing 1 mm and model spacing 2 mm, so linear resampling is the mean of
2 x 2 x 2 voxels and nearest-neighbour resampling takes every second voxel from the second
one (voxel m at native 2m + 1/2, halves round up); windows of power-of-two widths, so the
recipe is exact in float32.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import snakemake
from volume_factories import IDENTIFYING, LPS_TO_RAS, write_nifti, write_series

# Its module-scoped fixtures are built once: every test here on one xdist worker.
pytestmark = pytest.mark.xdist_group(name="volume_pipeline")

SHAPE = (12, 14, 16)  # z, y, x at 1 mm
ORIGIN = (-20.0, -30.0, 40.0)
AFFINE = np.array([[0, 0, 1, ORIGIN[0]], [0, 1, 0, ORIGIN[1]], [1, 0, 0, ORIGIN[2]], [0, 0, 0, 1]], dtype=float)
# Whole Hounsfield units from -600 to 1000: every voxel distinct.
PHANTOM = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 1601 - 600).astype(np.float32)
LESION = np.zeros(SHAPE, dtype=np.uint8)
LESION[4:8, 5:9, 9:13] = 1  # native box: start (4, 5, 9), stop (8, 9, 13)
WINDOWS = [{"name": "wide", "level": 0.0, "width": 2048.0}, {"name": "narrow", "level": 64.0, "width": 256.0}]
CROP_MM = [8, 12, 10]  # -> (4, 6, 5) voxels at 2 mm
PATIENTS = {"P1": "ras_nifti", "P2": "lps_nifti", "P3": "dicom_with_mask", "P4": "dicom_with_box"}


def phantom(patient: str) -> np.ndarray:
    """Each patient's own voxels (the same image under two patients is refused): the
    phantom shifted by 2 HU per patient number."""
    return PHANTOM + np.float32(2 * int(patient[1:]))


def resampled_image(patient: str) -> np.ndarray:
    """Linear resampling 1 -> 2 mm: the mean of each 2 x 2 x 2 block (float64, exact)."""
    z, y, x = (n // 2 for n in SHAPE)
    return phantom(patient).astype(np.float64).reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))


def expected_channels(patient: str) -> np.ndarray:
    image = resampled_image(patient)
    return np.stack([np.clip((image - (w["level"] - w["width"] / 2)) / w["width"], 0, 1) for w in WINDOWS])


def expected_box() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The lesion's box on the 2 mm grid: voxel m is native voxel 2m + 1 (nearest)."""
    where = np.nonzero(LESION[1::2, 1::2, 1::2])
    return tuple(int(w.min()) for w in where), tuple(int(w.max()) + 1 for w in where)


def window(channels: np.ndarray, start, size) -> np.ndarray:
    """channels[:, start:start+size] with zeros beyond the volume (by hand)."""
    out = np.zeros((channels.shape[0], *size))
    for index in np.ndindex(*size):
        voxel = tuple(s + i for s, i in zip(start, index))
        if all(0 <= v < n for v, n in zip(voxel, channels.shape[1:])):
            out[(slice(None), *index)] = channels[(slice(None), *voxel)]
    return out


def expected_crops(mode: str, patient: str) -> np.ndarray:
    channels = expected_channels(patient)
    start, stop = expected_box()
    size = tuple(int(np.floor(mm / 2 + 0.5)) for mm in CROP_MM)  # (4, 6, 5)
    first = tuple(a + ((b - a) - n) // 2 for a, b, n in zip(start, stop, size))
    if mode == "3d":
        return window(channels, first, size)[np.newaxis]
    images = []
    for z in range(start[0], stop[0]):  # axial slices through the lesion
        if mode == "2d":
            images.append(window(channels, (z, first[1], first[2]), (1, size[1], size[2]))[:, 0])
        else:  # channel c * 3 + j: channel c at slice z + j - 1
            stack = window(channels, (z - 1, first[1], first[2]), (3, size[1], size[2]))
            images.append(stack.reshape(-1, size[1], size[2]))
    return np.stack(images)


def write_cohort(images_dir, tmp_path):
    nz, ny, nx = SHAPE
    # RAS storage (x, y, z) with x toward the right, y toward anterior: NIfTI's usual order.
    index_map = np.array([[0, 0, 1, 0], [0, -1, 0, ny - 1], [-1, 0, 0, nx - 1], [0, 0, 0, 1]], dtype=float)
    ras = lambda a: a[:, ::-1, ::-1].transpose(2, 1, 0)  # noqa: E731
    lps = lambda a: a.transpose(2, 1, 0)  # noqa: E731
    lps_map = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    for patient, layout in PATIENTS.items():
        folder = images_dir / patient / "CT"
        folder.mkdir(parents=True)
        voxels = phantom(patient)
        if layout == "ras_nifti":
            write_nifti(folder / "image.nii.gz", ras(voxels).astype(np.int16), AFFINE @ index_map)
            write_nifti(folder / "mask.nii.gz", ras(LESION), AFFINE @ index_map)
        elif layout == "lps_nifti":
            write_nifti(folder / "image.nii", lps(voxels), AFFINE @ lps_map, dtype=np.float32)
            write_nifti(folder / "mask.nii", lps(LESION), AFFINE @ lps_map)
        elif layout == "dicom_with_mask":
            write_series(folder / "image", voxels, AFFINE, extra=IDENTIFYING)
            write_nifti(folder / "mask.nii.gz", ras(LESION), AFFINE @ index_map)
        else:  # the slices directly in the sequence folder, the lesion in the boxes CSV
            write_series(folder, voxels, AFFINE, extra=IDENTIFYING, intercept=-1000.0)
    # Voxel box (canonical indices, inclusive) of the same lesion.
    boxes = tmp_path / "boxes.csv"
    pd.DataFrame([{"patient_id": "P4", "sequence": "CT", "z_first": 4, "z_last": 7, "y_first": 5, "y_last": 8,
                   "x_first": 9, "x_last": 12}]).to_csv(boxes, index=False)
    cases = tmp_path / "cases.csv"
    pd.DataFrame({"patient_id": list(PATIENTS), "diagnosis": ["malignant", "osteoporotic"] * 2,
                  "cohort": ["internal"] * 4}).to_csv(cases, index=False)
    return cases, boxes


@pytest.fixture(scope="module")
def volume_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("volumes")
    images_dir = workdir / "images"
    cases, boxes = write_cohort(images_dir, workdir)
    config = {
        "results_dir": "results", "demo_cohort": {"enabled": False},
        "data": {"format": "volume", "images_dir": "images", "cases": str(cases), "boxes": str(boxes)},
        "classes": ["osteoporotic", "malignant"], "sequences": {"CT": ["CT"]},
        "input_modes": ["2d", "2.5d", "3d"],
        "preprocessing": {"spacing": [2.0, 2.0, 2.0], "intensity": {"kind": "ct_window", "windows": WINDOWS},
                          "plane": "axial", "neighbours": 1, "crop_mm": CROP_MM},
    }
    config_file = workdir / "volumes.yaml"
    config_file.write_text(yaml.safe_dump(config))
    targets = [f"results/preprocessing/CT/{mode}.npz" for mode in ("2d", "2.5d", "3d")]
    snakemake(workdir, "--cores", "2", *targets, extra_configs=[config_file])
    return workdir, workdir / "results"


def test_annotations_give_geometry_hashes_and_the_lesion(volume_run):
    _, results = volume_run
    table = pd.read_parquet(results / "annotations/CT.parquet").set_index("patient_id")
    assert list(table.index) == list(PATIENTS)
    assert list(table.image_format) == ["nifti", "nifti", "dicom_series", "dicom_series"]
    assert list(table.annotation_kind) == ["mask", "mask", "mask", "box"]
    assert list(table.image_path) == ["P1/CT/image.nii.gz", "P2/CT/image.nii", "P3/CT/image", "P4/CT"]
    from spinedx.readers.volume import Volume
    from spinedx.readers.volume_tree import voxels_sha256

    for patient, row in table.iterrows():
        # Exactly the phantom's voxels, whatever the storage order or format.
        assert row.voxels_sha256 == voxels_sha256(Volume(phantom(patient), AFFINE))
        assert (row.shape_z, row.shape_y, row.shape_x) == SHAPE
        assert (row.spacing_z, row.spacing_y, row.spacing_x) == pytest.approx((1.0, 1.0, 1.0), abs=1e-6)
        assert [row[f"box_{a}{e}"] for e in "01" for a in "zyx"] == [4, 5, 9, 8, 9, 13]
        assert (row.centroid_z, row.centroid_y, row.centroid_x) == pytest.approx((5.5, 6.5, 10.5))
        # LPS mm of the centroid: origin + index (the affine's columns are x <- index 2 etc.)
        assert (row.centroid_lps_x, row.centroid_lps_y, row.centroid_lps_z) == pytest.approx(
            (ORIGIN[0] + 10.5, ORIGIN[1] + 6.5, ORIGIN[2] + 5.5), abs=1e-4)
        assert row.lesion_voxels == 64 and row.lesion_ml == pytest.approx(0.064, abs=1e-6)


@pytest.mark.parametrize("mode", ["2d", "2.5d", "3d"])
def test_every_case_gives_exactly_the_expected_crops(volume_run, mode):
    _, results = volume_run
    with np.load(results / f"preprocessing/CT/{mode}.npz") as cache:
        images, ids = cache["images"], list(cache["image_id"])
    crops = pd.read_parquet(results / f"preprocessing/CT/{mode}.parquet")
    assert list(crops.image_id) == ids and images.dtype == np.float32
    start, stop = expected_box()
    for patient in PATIENTS:
        rows = np.flatnonzero(crops.patient_id == patient)
        assert np.array_equal(images[rows], expected_crops(mode, patient).astype(np.float32)), (patient, mode)
        case = crops.iloc[rows]
        assert [case[f"grid_box_{a}0"].iloc[0] for a in "zyx"] == list(start)
        assert [case[f"grid_box_{a}1"].iloc[0] for a in "zyx"] == list(stop)
        if mode != "3d":
            assert list(case.slice) == list(range(start[0], stop[0]))
            assert list(case.image_id) == [f"{patient}/CT/axial{z:04d}" for z in range(start[0], stop[0])]
    channels = len(WINDOWS) * (3 if mode == "2.5d" else 1)
    assert images.shape[1] == channels


def test_no_identifying_dicom_value_in_any_output_or_log(volume_run):
    workdir, results = volume_run
    files = [p for p in [*results.rglob("*"), *(workdir / ".snakemake").rglob("*")] if p.is_file()]
    assert len(files) > 10
    for path in files:
        content = path.read_bytes()
        for key, value in IDENTIFYING.items():
            for form in {value, value.replace("^", " ")}:
                assert form.encode() not in content, f"{key} found in {path}"


def test_a_case_with_both_a_mask_and_a_box_is_refused(tmp_path):
    from spinedx import config as configuration
    from spinedx.errors import InputError
    from spinedx.stages import volume_annotations

    cases, boxes = write_cohort(tmp_path / "images", tmp_path)
    pd.DataFrame([{"patient_id": "P1", "sequence": "CT", "z_first": 4, "z_last": 7, "y_first": 5, "y_last": 8,
                   "x_first": 9, "x_last": 12}]).to_csv(boxes, index=False)
    config = configuration.resolve({"data": {"format": "volume", "boxes": str(boxes)},
                                    "classes": ["osteoporotic", "malignant"], "sequences": {"CT": ["CT"]}})
    with pytest.raises(InputError, match="give its lesion once"):
        volume_annotations.tabulate(tmp_path / "images", cases, config, "CT")
    # A DICOM folder holding the mask beside its slices: told to use image/.
    pd.DataFrame([{"patient_id": "P4", "sequence": "CT", "z_first": 4, "z_last": 7, "y_first": 5, "y_last": 8,
                   "x_first": 9, "x_last": 12}]).to_csv(boxes, index=False)
    (tmp_path / "images/P4/CT/mask.nii.gz").write_bytes((tmp_path / "images/P1/CT/mask.nii.gz").read_bytes())
    with pytest.raises(InputError, match="sub-folder image/"):
        volume_annotations.tabulate(tmp_path / "images", cases, config, "CT")


def test_the_crops_table_reads_the_case_again(volume_run):
    """Grad-CAM reads a case from its crops row: the same voxels and lesion."""
    from spinedx.readers.volume_tree import read_case

    workdir, results = volume_run
    crops = pd.read_parquet(results / "preprocessing/CT/3d.parquet")
    for row in crops.itertuples(index=False):
        image, lesion = read_case(row, workdir / "images", 10**8)
        assert np.array_equal(image.array, phantom(row.patient_id)) and np.array_equal(lesion.array, LESION)
    assert json.dumps(list(crops.columns))  # plain column names


def test_annotations_record_what_the_volume_table_leaves_out(tmp_path):
    """The exclusion record of a volume study (read by the participant flow): a listed
    patient without a volume, and files beside a volume and its mask that nothing reads;
    a series in the sequence folder itself has no such files (every file is a slice)."""
    from spinedx import config as configuration
    from spinedx.stages import volume_annotations

    images = tmp_path / "images"
    cases, boxes = write_cohort(images, tmp_path)
    listed = pd.read_csv(cases)
    pd.concat([listed, pd.DataFrame([{"patient_id": "P5", "diagnosis": "malignant", "cohort": "internal"}])]
              ).to_csv(cases, index=False)
    (images / "P1/CT/report.txt").write_text("an old report")
    (images / "P3/CT/old_mask.nii.gz").write_bytes((images / "P3/CT/mask.nii.gz").read_bytes())
    config = configuration.resolve({"data": {"format": "volume", "boxes": str(boxes)},
                                    "classes": ["osteoporotic", "malignant"], "sequences": {"CT": ["CT"]}})
    excluded = tmp_path / "excluded.csv"
    table = volume_annotations.main_stage(config, images, cases, "CT", tmp_path / "CT.parquet", excluded)
    assert sorted(table["patient_id"]) == ["P1", "P2", "P3", "P4"]
    record = pd.read_csv(excluded, keep_default_na=False)
    assert record.to_dict("records") == [
        {"patient_id": "P5", "sequence": "CT", "level": "patient", "item": "", "reason": volume_annotations.NO_VOLUME},
        {"patient_id": "P1", "sequence": "CT", "level": "image", "item": "P1/CT/report.txt",
         "reason": volume_annotations.NOT_READ},
        {"patient_id": "P3", "sequence": "CT", "level": "image", "item": "P3/CT/old_mask.nii.gz",
         "reason": volume_annotations.NOT_READ}]
