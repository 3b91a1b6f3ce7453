"""Pretrained-weights stage: one backbone's initial weights fetched (timm's published
weights, through timm's own hub cache) or checked (a local file) once, before any of its
training jobs starts; the record (source, file, sha256) is what every training job loads
and what the checkpoints, the model card and provenance report (:mod:`spinedx.models.pretrained`).

A local rule: on a cluster it runs on the submitting node, which can usually reach the
hub, while the compute nodes that train often cannot.
"""

from __future__ import annotations

import json
import logging

from spinedx.io import write_text
from spinedx.models import pretrained

log = logging.getLogger(__name__)


def main_stage(config, backbone: str, out) -> dict:
    settings = config["training"]
    record = pretrained.resolve(settings["pretrained"], backbone, settings["in_chans"])
    if record is None:  # the workflow asks only for backbones with pretrained weights
        record = {"format": pretrained.RECORD_FORMAT, "backbone": backbone, "source": None}
    write_text(json.dumps(record, indent=1) + "\n", out)
    log.info("%s: %s (%s, sha256 %s) -> %s", backbone, record["source"], record.get("file"),
             record.get("sha256"), out)
    return record
