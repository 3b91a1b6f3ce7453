"""Detection provenance stage: the provenance record of a detection study (same format as
:mod:`spinedx.stages.provenance`), its inputs being every case's volume and label files
(sha256 from the detection cases table, which hashed them while reading them), the
cases table and the readers' marks."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from spinedx import paths
from spinedx.detection_task import LESIONS_NAME, DetectionTask
from spinedx.io import sha256_file, write_text
from spinedx.readers.bundle import manifest_sha256
from spinedx.readers.detection_cases import path_column, read_cases_table, sha256_column
from spinedx.records import provenance_record

log = logging.getLogger(__name__)



def _inputs(config, detection_cases, cases_path, marks_path) -> dict:
    task = DetectionTask.from_config(config)
    cases = read_cases_table(detection_cases)
    files = [{"patient_id": row["patient_id"], "volume": name, "path": row[path_column(name)],
              "sha256": row[sha256_column(name)]}
             for row in cases.to_dict("records") for name in [*task.sequences, LESIONS_NAME]]
    record = {"cases": {"path": str(cases_path), "sha256": sha256_file(cases_path)}, "volumes": files}
    if marks_path:
        record["reader_marks"] = {"path": str(marks_path), "sha256": sha256_file(marks_path)}
    # One digest for the whole input set: equal digests = byte-identical inputs.
    digest = hashlib.sha256(record["cases"]["sha256"].encode())
    for row in files:
        digest.update(f"{row['path']}\0{row['sha256']}\n".encode())
    if marks_path:
        digest.update(record["reader_marks"]["sha256"].encode())
    return {"sha256": digest.hexdigest(), **record}


def main_stage(config, outputs, detection_cases, cases_path, marks_path, results_dir, out,
               workflow_dir=paths.WORKFLOW_DIR) -> dict:
    record = provenance_record(config, workflow_dir, _inputs(config, detection_cases, cases_path, marks_path),
                               results_dir, outputs)
    if config["audit"]["bundle"]:
        bundle_dir = config["audit"]["bundle"]
        record["bundle"] = {"path": str(bundle_dir), "manifest_sha256": manifest_sha256(bundle_dir)}
    write_text(json.dumps(record, indent=1) + "\n", out)
    log.info("%d outputs, %d input volumes -> %s", len(record["outputs"]), len(record["inputs"]["volumes"]), out)
    return record
