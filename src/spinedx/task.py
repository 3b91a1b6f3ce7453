"""The diagnostic task: its classes, how their probabilities are stored, how they become
decisions.

Probability tables (inference, ensembling, case level) hold **one column per class**,
``prob_<class>`` in the order of config ``classes``: exactly what the model's softmax
gives for that class (no column is derived from another, so every number is the one
the network produced). A class's label is its position in ``classes``.

:class:`Task` is what every task shares (classes, columns, the table layout).
:class:`BinaryTask` is the reference study's task: the last class is the positive one, and
a case or image is positive when the positive class's probability is strictly above
``decision.threshold``. :class:`MulticlassTask` (more than two classes) decides the class
of highest probability, ties to the earlier class in ``classes``
(:func:`spinedx.stats.multiclass.argmax_decisions`). :func:`task_from_config` chooses
by the number of classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spinedx.config import ConfigError, section
from spinedx.stats.binary import positive_calls
from spinedx.stats.multiclass import argmax_decisions

PROBABILITY_PREFIX = "prob_"


@dataclass(frozen=True)
class Task:
    """Classes (config ``classes``) and the probability columns of the prediction tables."""

    classes: tuple[str, ...]

    def column(self, class_name: str) -> str:
        """The probability column of one class."""
        return f"{PROBABILITY_PREFIX}{class_name}"

    @property
    def probability_columns(self) -> list[str]:
        return [self.column(name) for name in self.classes]

    def probability_table(self, probabilities: np.ndarray) -> pd.DataFrame:
        """One column per class from an N x classes array (float64, as stored)."""
        probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(self.classes))
        return pd.DataFrame(probabilities, columns=self.probability_columns)

    def decide(self, predictions: pd.DataFrame) -> np.ndarray:
        """The predicted label (index into ``classes``) of every row."""
        raise NotImplementedError

    def probabilities(self, predictions: pd.DataFrame) -> np.ndarray:
        """The rows' probability vectors (n x classes, float64), in class order."""
        return predictions[self.probability_columns].to_numpy(dtype=np.float64)

    def decision_probability(self, predictions: pd.DataFrame) -> np.ndarray:
        """The probability of each row's decided class (how sure the decision is)."""
        decided = self.decide(predictions)
        return self.probabilities(predictions)[np.arange(len(decided)), decided]


@dataclass(frozen=True)
class BinaryTask(Task):
    """Two classes, the last one positive; positive when its probability > ``threshold``.

    ``threshold`` is config ``decision.threshold`` (None for stages that only store or
    average probabilities).
    """

    threshold: float | None = None

    @classmethod
    def from_config(cls, config: Mapping, decisions: bool = True) -> BinaryTask:
        """From config ``classes`` (and ``decision`` unless ``decisions`` is False)."""
        classes = tuple(section(config, "classes"))
        if len(classes) != 2:
            raise ConfigError(f"a binary task needs two classes, config `classes` has {list(classes)}")
        threshold = section(config, "decision")["threshold"] if decisions else None
        return cls(classes, threshold)

    @property
    def positive_class(self) -> str:
        return self.classes[-1]

    @property
    def positive_label(self) -> int:
        return len(self.classes) - 1

    @property
    def positive_column(self) -> str:
        """The column the decisions, ROC curves and AUCs read."""
        return self.column(self.positive_class)

    def _threshold(self) -> float:
        if self.threshold is None:
            raise ConfigError("this task was built without config `decision`: it cannot decide")
        return self.threshold

    def decide(self, predictions: pd.DataFrame) -> np.ndarray:
        calls = positive_calls(predictions[self.positive_column].to_numpy(), self._threshold())
        return np.where(calls, self.positive_label, 1 - self.positive_label)

    def confidence(self, positive_probability) -> np.ndarray:
        """How sure a decision is: the distance of the positive class's probability from
        the threshold (either side)."""
        return np.abs(np.asarray(positive_probability, dtype=float) - self._threshold())


@dataclass(frozen=True)
class MulticlassTask(Task):
    """More than two classes; the decision is the class of highest probability (ties:
    the earlier class in ``classes``). ``decision.threshold`` does not apply."""

    @classmethod
    def from_config(cls, config: Mapping) -> MulticlassTask:
        classes = tuple(section(config, "classes"))
        if len(classes) < 3:
            raise ConfigError(f"a multi-class task needs three or more classes, config `classes` has {list(classes)}")
        return cls(classes)

    def decide(self, predictions: pd.DataFrame) -> np.ndarray:
        return argmax_decisions(self.probabilities(predictions))


def task_from_config(config: Mapping, decisions: bool = True) -> Task:
    """The task a study's config describes: binary (two classes, threshold on the last)
    or multi-class (argmax)."""
    classes: Sequence[str] = section(config, "classes")
    if len(classes) == 2:
        return BinaryTask.from_config(config, decisions)
    return MulticlassTask.from_config(config)
