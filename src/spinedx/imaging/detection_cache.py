"""The detection networks' inputs: every case resampled, normalised and cropped to the
head, in one file per cohort.

Per case (:func:`prepare_case`): each sequence resampled to ``spacing_mm`` (linear; the
lesion labels nearest neighbour; none when ``spacing_mm`` is None), normalised by the
intensity recipe (:mod:`spinedx.imaging.intensity`: percentiles of the whole resampled
volume, per sequence), stacked as channels in the study's sequence order, the head found
(:func:`spinedx.imaging.foreground.foreground_mask`) and everything cropped to it plus a
margin. The crop's affine maps its voxels to the same LPS millimetres, so a probability
map computed here goes back to the case's original grid exactly
(:func:`spinedx.imaging.regrid.to_grid`).

The cache is an uncompressed ``.npz`` (numpy loads members lazily: a job reads only the
cases it uses) with, per patient, ``<id>/image`` (float16 channels in [0, 1]),
``<id>/labels`` (uint16 instance labels on the crop), ``<id>/foreground`` (bool) and
``<id>/affine`` (float64 4x4), and ``meta`` (JSON: format, sequences, patients).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinedx.errors import InputError
from spinedx.imaging.foreground import crop_slices, cropped_affine, foreground_mask
from spinedx.imaging.intensity import apply_recipe, percentile_bounds
from spinedx.imaging.resample import resample
from spinedx.readers.volume import Volume

CACHE_FORMAT = "spinedx-detection-volumes/1"
IMAGE_DTYPE = np.float16
MAPS_FORMAT = "spinedx-detection-maps/1"
MAP_DTYPE = np.float32  # float16 would tie probabilities near 1 (resolution 2^-11)


@dataclass(frozen=True)
class PreparedCase:
    image: np.ndarray  # (channels, z, y, x) float16 in [0, 1]
    labels: np.ndarray  # (z, y, x) uint16
    foreground: np.ndarray  # (z, y, x) bool
    affine: np.ndarray  # crop index (z, y, x, 1) -> LPS mm
    record: dict  # what was done: grid, crop, percentile bounds per sequence


def prepare_case(images: list[Volume], labels: Volume, *, sequences, spacing_mm, recipe: dict,
                 foreground_threshold: float, crop_margin_mm: float, source) -> PreparedCase:
    """One case's network input from its co-registered sequence volumes and label volume."""
    if spacing_mm is not None:
        images = [resample(volume, spacing_mm, kind="image") for volume in images]
        labels = resample(labels, spacing_mm, kind="mask")
    grid = images[0]
    channels = np.concatenate([apply_recipe(volume.array, recipe, source=f"{source} {name}")
                               for name, volume in zip(sequences, images)])
    bounds = {name: percentile_bounds(volume.array, recipe, source=f"{source} {name}")
              for name, volume in zip(sequences, images)}
    foreground = foreground_mask(channels, foreground_threshold, source=source)
    crop = crop_slices(foreground, grid.spacing, crop_margin_mm)
    record = {
        "spacing_mm": [float(s) for s in grid.spacing], "grid_shape": list(grid.shape),
        "crop_start": [int(s.start) for s in crop], "crop_shape": [int(s.stop - s.start) for s in crop],
        "foreground_voxels": int(foreground.sum()),
        "percentiles": {name: [float(low), float(high)] for name, (low, high) in bounds.items()},
    }
    return PreparedCase(
        image=channels[(slice(None), *crop)].astype(IMAGE_DTYPE),
        labels=np.ascontiguousarray(labels.array[crop]),
        foreground=np.ascontiguousarray(foreground[crop]),
        affine=cropped_affine(grid.affine, crop),
        record=record,
    )


def write_cache(path, cases: dict[str, PreparedCase], sequences) -> None:
    """All prepared cases in one uncompressed npz, atomically."""
    from spinedx.io import atomic_output

    arrays = {"meta": np.array(json.dumps({"format": CACHE_FORMAT, "sequences": list(sequences),
                                           "patients": list(cases)}))}
    for patient_id, case in cases.items():
        arrays.update({f"{patient_id}/image": case.image, f"{patient_id}/labels": case.labels,
                       f"{patient_id}/foreground": case.foreground, f"{patient_id}/affine": case.affine})
    with atomic_output(path, suffix=".npz") as partial:
        np.savez(partial, **arrays)


class VolumeCache:
    """Read access to a cache written by :func:`write_cache` (members load when asked)."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self._file = np.load(self.path, allow_pickle=False)
            meta = json.loads(str(self._file["meta"]))
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"{self.path}: not a detection volume cache ({error}); rerun the "
                             "detection_preprocessing stage") from error
        if meta.get("format") != CACHE_FORMAT:
            raise InputError(f"{self.path}: cache format {meta.get('format')!r}, expected {CACHE_FORMAT}; "
                             "rerun the detection_preprocessing stage")
        self.sequences: list[str] = meta["sequences"]
        self.patients: list[str] = meta["patients"]

    def _get(self, patient_id: str, what: str) -> np.ndarray:
        if patient_id not in self.patients:
            raise InputError(f"{self.path}: no case {patient_id}; rerun the detection_preprocessing stage")
        return self._file[f"{patient_id}/{what}"]

    def image(self, patient_id: str, channels=None, dtype=np.float32) -> np.ndarray:
        """``(channels, z, y, x)`` as ``dtype`` (None: as stored, float16); ``channels``:
        indices into :attr:`sequences` (None: all)."""
        image = self._get(patient_id, "image")
        image = image if channels is None else image[list(channels)]
        return image if dtype is None else image.astype(dtype)

    def labels(self, patient_id: str) -> np.ndarray:
        return self._get(patient_id, "labels")

    def foreground(self, patient_id: str) -> np.ndarray:
        return self._get(patient_id, "foreground")

    def affine(self, patient_id: str) -> np.ndarray:
        return self._get(patient_id, "affine")

    def spacing(self, patient_id: str) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine(patient_id)[:3, :3], axis=0))


def write_maps(path, maps: dict[str, np.ndarray], meta: dict) -> None:
    """Probability maps (one per patient, float32) and their ``meta`` (JSON: model, input,
    which maps are out-of-fold or ensembles) in one compressed npz, atomically."""
    from spinedx.io import atomic_output

    if "meta" in maps:
        raise InputError("a patient named 'meta' clashes with the maps file's record; rename the patient")
    meta = {"format": MAPS_FORMAT, **meta}
    with atomic_output(path, suffix=".npz") as partial:
        np.savez_compressed(partial, meta=np.array(json.dumps(meta)),
                            **{patient_id: m.astype(MAP_DTYPE) for patient_id, m in maps.items()})


def read_maps(path):
    """``(meta, maps)``: the meta dict and the npz (maps by patient id, loaded when asked)."""
    try:
        maps = np.load(path, allow_pickle=False)
        meta = json.loads(str(maps["meta"]))
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{path}: not a detection maps file ({error}); rerun detection_inference") from error
    if meta.get("format") != MAPS_FORMAT:
        raise InputError(f"{path}: maps format {meta.get('format')!r}, expected {MAPS_FORMAT}; rerun "
                         "detection_inference")
    return meta, maps
