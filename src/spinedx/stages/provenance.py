"""Provenance stage: one record (``provenance.json`` of the results) that ties every table
and figure to the exact inputs, configuration, code and packages that produced it.

Inputs are identified by sha256: every image and labelme JSON (from the annotations
table, which hashed them while reading them), the cases table and, in audit mode, the
bundle's SHA256SUMS. Outputs are every file under the recorded folders
(:data:`spinedx.paths.RECORDED_FOLDERS`: tables, figures) plus any file the workflow names
explicitly (so new tables and figures are
covered without changing this stage), each with its sha256. The models' initial weights
(pretrained: source and sha256 per backbone) are inputs too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd

from spinedx import paths
from spinedx.io import sha256_file, write_text
from spinedx.readers.bundle import manifest_sha256
from spinedx.records import provenance_record

log = logging.getLogger(__name__)

INPUT_COLUMNS = ["image_id", "json_path", "json_sha256", "image_path", "image_sha256"]


#: Volume studies: the lesion mask (or boxes CSV) takes the labelme JSON's place.
VOLUME_INPUT_COLUMNS = ["image_id", "annotation_path", "annotation_sha256", "image_path", "image_sha256"]


def _inputs(images_path, cases_path) -> dict:
    images = pd.read_parquet(images_path)
    columns = INPUT_COLUMNS if "json_path" in images.columns else VOLUME_INPUT_COLUMNS
    images = images[columns].sort_values("image_id")
    files = json.loads(images.to_json(orient="records"))
    cases = {"path": str(cases_path), "sha256": sha256_file(Path(cases_path))}
    # One digest for the whole input set: equal digests = byte-identical inputs.
    digest = hashlib.sha256(cases["sha256"].encode())
    for row in files:
        digest.update("\0".join(str(row[c]) for c in columns[1:]).encode() + b"\n")
    return {"sha256": digest.hexdigest(), "cases": cases, "images": files}


def build(results_dir, images_path, cases_path, config, outputs=(), workflow_dir=paths.WORKFLOW_DIR,
          pretrained_records=()) -> dict:
    results_dir = Path(results_dir)
    record = provenance_record(config, workflow_dir, _inputs(images_path, cases_path), results_dir, outputs)
    record.update({
        # Initial weights of the models (rule pretrained_weights): source and sha256 of the
        # file per backbone; backbones not listed started from random initialisation.
        "pretrained_weights": {weights["backbone"]: {k: weights.get(k) for k in ("source", "file", "sha256", "bytes")}
                               for weights in (json.loads(Path(p).read_text()) for p in pretrained_records)},
    })
    if config["audit"]["bundle"]:
        bundle_dir = config["audit"]["bundle"]
        record["bundle"] = {"path": str(bundle_dir), "manifest_sha256": manifest_sha256(bundle_dir)}
    return record


def write(record: dict, path) -> None:
    write_text(json.dumps(record, indent=1) + "\n", path)


def main_stage(config, outputs, images_path, cases_path, results_dir, out, pretrained_records=()) -> dict:
    record = build(results_dir, images_path, cases_path, config, outputs, pretrained_records=pretrained_records)
    write(record, out)
    log.info("%d outputs, %d input images -> %s", len(record["outputs"]), len(record["inputs"]["images"]), out)
    return record
