"""Detection audit check: a released detection bundle and an auditor's cohort, verified
before any model is used (audit mode with config ``audit.bundle`` naming a detection
bundle; ``spinedx audit`` runs the workflow).

Every file of the bundle is checked against its SHA256SUMS
(:func:`spinedx.readers.bundle.verify`), and the cohort is refused when any of its
volume or label files is one the models were trained on (identical sha256), since an
external validation must not contain them.
"""

from __future__ import annotations

import json
import logging

from spinedx.detection_task import LESIONS_NAME, DetectionTask
from spinedx.errors import InputError
from spinedx.io import write_text
from spinedx.readers.bundle import manifest_sha256, verify
from spinedx.readers.detection_cases import path_column, read_cases_table, sha256_column

log = logging.getLogger(__name__)


def check_cohort(config, bundle_dir, cases_path) -> dict:
    card = verify(bundle_dir)
    if "detection" not in card:
        raise InputError(f"{bundle_dir}: a classification bundle; a detection audit needs the bundle of a "
                         "detection study")
    task = DetectionTask.from_config(config)
    cases = read_cases_table(cases_path)
    trained = set(card["training_images_sha256"])
    seen = []
    for name in [*task.sequences, LESIONS_NAME]:
        hit = cases[cases[sha256_column(name)].isin(trained)]
        seen += [(row["patient_id"], row[path_column(name)]) for row in hit.to_dict("records")]
    if seen:
        raise InputError(f"{cases_path}: {len(seen)} volume(s) of the audit cohort are training volumes of the "
                         f"bundle's models (identical sha256), e.g. {[path for _, path in seen][:3]} of patient(s) "
                         f"{sorted({p for p, _ in seen})[:5]}; an external validation must not contain them: "
                         "remove those patients")
    return {"bundle": str(bundle_dir), "manifest_sha256": manifest_sha256(bundle_dir), "models": len(card["models"]),
            "code": card["code"], "cohort": {"patients": int(len(cases)), "lesions": int(cases["n_lesions"].sum())}}


def main_stage(config, bundle_dir, cases_path, out) -> None:
    summary = check_cohort(config, bundle_dir, cases_path)
    write_text(json.dumps(summary, indent=1) + "\n", out)
    log.info("bundle %s verified; cohort of %d patients shares no volume with its training cohort", bundle_dir,
             summary["cohort"]["patients"])
