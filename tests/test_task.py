"""The task abstraction: probability columns, decisions, confidence; Grad-CAM's choice of
the most confident cases follows decision.threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spinedx import config as configuration
from spinedx.config import ConfigError
from spinedx.stages.gradcam import select_cases
from spinedx.task import BinaryTask, task_from_config


def test_one_probability_column_per_class_in_config_order():
    task = task_from_config(configuration.resolve({}))
    assert isinstance(task, BinaryTask)
    assert task.probability_columns == ["prob_ependymoma", "prob_schwannoma"]
    assert (task.positive_class, task.positive_label, task.positive_column) == ("schwannoma", 1, "prob_schwannoma")
    softmax = np.array([[0.75, 0.25], [0.125, 0.875]], dtype=np.float32)
    table = task.probability_table(softmax)
    assert list(table.columns) == task.probability_columns and (table.dtypes == np.float64).all()
    # Stored as the network gave them: no column is derived from another.
    assert table.to_numpy().tolist() == softmax.astype(np.float64).tolist()


def test_decisions_are_strictly_above_the_threshold_on_the_positive_class():
    task = BinaryTask(("ependymoma", "schwannoma"), threshold=0.4)
    frame = pd.DataFrame({"prob_ependymoma": [0.7, 0.6, 0.59], "prob_schwannoma": [0.3, 0.4, 0.41]})
    assert task.decide(frame).tolist() == [0, 0, 1]
    assert task.confidence(frame["prob_schwannoma"]) == pytest.approx([0.1, 0.0, 0.01])
    with pytest.raises(ConfigError, match="cannot decide"):
        BinaryTask(("a", "b")).decide(frame.rename(columns={"prob_schwannoma": "prob_b"}))


def test_task_reads_only_the_sections_it_needs():
    stage = configuration.for_stage("ensembling", settings={"classes": ["a", "b"], "splits": {}})
    assert task_from_config(stage, decisions=False).classes == ("a", "b")
    with pytest.raises(ConfigError, match="stage ensembling read config section 'decision'"):
        task_from_config(stage)


def test_gradcam_shows_the_cases_farthest_from_the_threshold():
    summary = pd.DataFrame({"patient_id": ["A", "B", "C"], "image_id": ["A/1", "B/1", "C/1"], "label": 1,
                            "correct": True, "case_prob": [0.95, 0.35, 0.5]})
    task = BinaryTask(("ependymoma", "schwannoma"), threshold=0.3)
    # From 0.3: A is 0.65 away, C 0.2, B 0.05 (from 0.5, B would beat C).
    assert select_cases(summary, 3, task)["patient_id"].tolist() == ["A", "C", "B"]
    assert select_cases(summary, 1, task)["patient_id"].tolist() == ["A"]
