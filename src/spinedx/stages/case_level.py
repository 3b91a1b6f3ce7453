"""Case-level stage: a patient's probabilities are the means over their images.

Per sequence, per plane (config ``planes``) and ALL (every sequence's images pooled, each
scored by its own sequence's model), for every model column (each fold, the ensemble, the
out-of-fold predictions): :func:`spinedx.aggregation.aggregate`.
"""

from __future__ import annotations

import pandas as pd

from spinedx.aggregation import aggregate
from spinedx.io import read_parquets, write_parquet
from spinedx.task import task_from_config


def main_stage(config, prediction_paths, out) -> pd.DataFrame:
    task = task_from_config(config, decisions=False)
    table = aggregate(read_parquets(prediction_paths), task.probability_columns, config["planes"])
    write_parquet(table, out)
    return table
