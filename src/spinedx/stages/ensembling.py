"""Ensembling stage: combine the fold models of one backbone x sequence.

External images: each fold model's probabilities and their plain mean (model
"ensemble"). Internal images: the probabilities from the one fold model that did not
train on the patient (model "oof", out-of-fold), or with a hold-out each repeat model's
validation and internal-test patients. The averaging is
:func:`spinedx.aggregation.ensemble`.
"""

from __future__ import annotations

import pandas as pd

from spinedx.aggregation import ensemble
from spinedx.io import write_parquet
from spinedx.splitting import model_count
from spinedx.task import task_from_config


def main_stage(config, predictions_path, backbone: str, out) -> pd.DataFrame:
    task = task_from_config(config, decisions=False)
    splits = config["splits"]
    table = ensemble(pd.read_parquet(predictions_path), backbone, model_count(splits),
                     predictions_path, task.probability_columns, splits["scheme"])
    write_parquet(table, out)
    return table
