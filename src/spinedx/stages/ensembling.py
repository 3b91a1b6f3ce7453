"""Ensembling stage: combine the fold models of one backbone x sequence.

External images: each fold model's probabilities and their plain mean (model
"ensemble"). Internal images: the probabilities from the one fold model that did not
train on the patient (model "oof", out-of-fold). The averaging is
:func:`spinedx.aggregation.ensemble`.
"""

from __future__ import annotations

import pandas as pd

from spinedx.aggregation import ensemble
from spinedx.io import write_parquet
from spinedx.task import task_from_config


def main_stage(config, predictions_path, backbone: str, out) -> pd.DataFrame:
    task = task_from_config(config, decisions=False)
    table = ensemble(pd.read_parquet(predictions_path), backbone, config["splits"]["n_folds"],
                     predictions_path, task.probability_columns)
    write_parquet(table, out)
    return table
