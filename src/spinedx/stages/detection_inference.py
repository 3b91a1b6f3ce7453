"""Detection inference stage: probability maps of every case from the fold models of one
model x input, on each case's original grid.

Each fold model maps a preprocessed volume whole (sliding windows of its trained
``window``). An internal case gets the map of the one fold model that did not train on
it (out-of-fold); an external case (every case in audit mode) the plain mean of all
fold models' maps (the fold ensemble). The map is then brought from the network's grid
(resampled, cropped) onto the case's original grid (:func:`spinedx.imaging.regrid.to_grid`,
linear, 0 outside the crop), where the lesion labels were drawn. Averaging before or
after that step is the same (both are linear). Maps are stored as float32 in a
compressed npz, one member per patient, with a JSON ``meta`` member saying which maps
are out-of-fold and which are ensembles
(:func:`spinedx.imaging.detection_cache.write_maps`).
"""

from __future__ import annotations

import logging

import numpy as np

from spinedx.errors import InputError
from spinedx.imaging.detection_cache import MAP_DTYPE, VolumeCache, write_maps
from spinedx.imaging.regrid import to_grid
from spinedx.models.checkpoints import load_checkpoint
from spinedx.models.detection import detector_from_checkpoint, probability_map
from spinedx.models.device import set_up
from spinedx.readers.detection_cases import case_grid, read_cases_table
from spinedx.splitting import read_folds

log = logging.getLogger(__name__)


def _checked_checkpoints(checkpoint_paths, model_name: str, input_: str, config, cache: VolumeCache) -> list[dict]:
    payloads = [load_checkpoint(path) for path in checkpoint_paths]
    folds = sorted(int(p["fold"]) for p in payloads)
    if folds != list(range(len(payloads))):
        raise InputError(f"checkpoints of folds {folds} given; expected folds 0..{len(payloads) - 1}")
    spacing = config["detection_preprocessing"]["spacing_mm"]
    wanted_spacing = None if spacing is None else [float(s) for s in spacing]
    for path, payload in zip(checkpoint_paths, payloads):
        if payload.get("task") != "detection" or payload["model"] != model_name or payload["input"] != input_:
            raise InputError(f"{path}: a checkpoint of {payload.get('model')} x {payload.get('input')}, not of "
                             f"{model_name} x {input_}; retrain or pass the right files")
        missing = [s for s in payload["sequences"] if s not in cache.sequences]
        if missing:
            raise InputError(f"{path}: the model reads sequences {missing}, which the preprocessed volumes "
                             f"{cache.path} lack")
        if payload["spacing_mm"] != wanted_spacing:
            raise InputError(f"{path}: trained at spacing {payload['spacing_mm']} mm, the volumes were "
                             f"preprocessed at {wanted_spacing}; rerun with the model's settings")
    return sorted(payloads, key=lambda p: int(p["fold"]))


def main_stage(config, checkpoint_paths, cache_path, cases_path, folds_path, model_name: str, input_: str,
               out) -> None:
    cache = VolumeCache(cache_path)
    cases = read_cases_table(cases_path)
    payloads = _checked_checkpoints(checkpoint_paths, model_name, input_, config, cache)
    # No training here: no compilation; channels_last is 2D only.
    device, acceleration = set_up(config["training"], channels_last=False, compile=False)
    models = [detector_from_checkpoint(p, device) for p in payloads]
    channels = [cache.sequences.index(s) for s in payloads[0]["sequences"]]
    window = payloads[0]["window"]
    fold_of = {} if folds_path is None else read_folds(folds_path).set_index("patient_id")["fold"].to_dict()
    maps, kinds = {}, {}
    for case in cases.to_dict("records"):
        patient_id = case["patient_id"]
        image = cache.image(patient_id, channels)
        if case["cohort"] == "internal" and folds_path is not None:
            if patient_id not in fold_of:
                raise InputError(f"{folds_path}: internal patient {patient_id} has no fold; rerun the splits stage")
            chosen, kinds[patient_id] = [models[int(fold_of[patient_id])]], "oof"
        else:
            chosen, kinds[patient_id] = models, "ensemble"
        mean = np.zeros(image.shape[1:], dtype=np.float64)
        for model in chosen:
            mean += probability_map(model, image, window=window, settings=config["detection"]["inference"],
                                    device=device, autocast=acceleration.autocast)
        mean /= len(chosen)
        shape, affine = case_grid(case)
        maps[patient_id] = to_grid(mean, cache.affine(patient_id), shape, affine).astype(MAP_DTYPE)
    write_maps(out, maps, {"model": model_name, "input": input_, "n_folds": len(models), "maps": kinds})
    log.info("%s %s: %d out-of-fold and %d ensemble maps (%d fold models) -> %s", model_name, input_,
             sum(k == "oof" for k in kinds.values()), sum(k == "ensemble" for k in kinds.values()), len(models), out)

