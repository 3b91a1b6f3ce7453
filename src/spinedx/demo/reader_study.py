"""The built-in demo reader study: synthetic readers of plausible skill rate the demo's
cases without and with the model's help.

A binormal model with a shared case effect (the Roe & Metz 1997 structure, reduced to
what a demo needs). Reader ``j`` has a separation ``d_j`` (their skill: the distance of
the class means in units of the latent noise), a bias ``b_j`` and a reliance on the AI
``w_j``; case ``k`` has a truth ``s_k`` (0/1) and a difficulty ``C_k`` every reader
shares::

    unaided latent  U_jk = s_k d_j + C_k + E_jk                  Var(C) + Var(E) = 1
    aided latent    A_jk = (1 - w_j) (s_k d_j + C_k + E'_jk) + w_j M_k
    rating          Phi(latent - (1 - w) d_j / 2 - b_j), to two decimals (w = 0 unaided)
    decision        positive class when the rating is above 0.5

On an ordinal scale (``rating_scale="ordinal"``, the 5-point confidence scale of many
reader studies: 1 = definitely negative ... 5 = definitely positive) the rating is that
probability cut at 0.2, 0.4, 0.6 and 0.8; the decision stays the probability's.

``E'`` is the second reading's noise (correlated 0.7 with the first: the reader still
sees the same image the same way); ``M_k`` is the model's case-level probability on the
logit scale, standardised over the read cases. Without case effects the unaided AUC of a
reader is ``Phi(d_j / sqrt(2))``: separations 0.8-1.8 give about 0.71-0.90, the range of
radiologists on hard differential diagnoses. Half the readers are "senior" (the upper
half of the separation range, the lower half of the reliance range), half "junior".
Everything derives from ``seed``: the same settings and model probabilities give the
same file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special

_CASE_VARIANCE = 0.3  # shared difficulty; the rest of the unit latent variance is reader noise
_REREAD_CORRELATION = 0.7
_BIAS_SD = 0.25
_STREAM = 15  # keeps this generator's random stream apart from the image renderers'
#: Cut points of the ordinal (5-point) scale on the rating probability.
ORDINAL_CUTS = (0.2, 0.4, 0.6, 0.8)


def simulate_readers(cases: pd.DataFrame, settings: dict, classes: Sequence[str],
                     conditions: Sequence[str], rating_scale: str = "probability") -> pd.DataFrame:
    """readers.csv rows (:mod:`spinedx.readers.reader_study`) for ``cases`` (columns
    patient_id, label 0/1, model_probability). ``settings``: config
    ``reader_study.demo`` (n_readers, seed, separation, aid_weight); ``conditions``: the
    unaided and the aided condition's names; ``rating_scale``: config
    ``reader_study.rating_scale`` (probability, or ordinal 1-5)."""
    if rating_scale not in ("probability", "ordinal"):
        raise ValueError(f"unknown rating scale {rating_scale!r}; use probability or ordinal")
    if len(conditions) != 2:
        raise ValueError(f"the demo reader study simulates two conditions (unaided, aided); "
                         f"reader_study.conditions is {list(conditions)}")
    n_readers = int(settings["n_readers"])
    rng = np.random.default_rng([int(settings["seed"]), _STREAM])
    truth = cases["label"].to_numpy(dtype=int)
    probability = np.clip(cases["model_probability"].to_numpy(dtype=float), 1e-6, 1 - 1e-6)
    model_logit = special.logit(probability)
    spread = model_logit.std()
    model_score = (model_logit - model_logit.mean()) / (spread if spread > 0 else 1.0)

    separation_low, separation_high = sorted(settings["separation"])
    weight_low, weight_high = sorted(settings["aid_weight"])
    separation_mid = (separation_low + separation_high) / 2
    weight_mid = (weight_low + weight_high) / 2
    n_cases = truth.size
    case_effect = rng.normal(0.0, np.sqrt(_CASE_VARIANCE), n_cases)
    noise_sd = np.sqrt(1 - _CASE_VARIANCE)
    rows = []
    for j in range(n_readers):
        senior = j % 2 == 0
        separation = rng.uniform(*((separation_mid, separation_high) if senior else (separation_low, separation_mid)))
        weight = rng.uniform(*((weight_low, weight_mid) if senior else (weight_mid, weight_high)))
        bias = rng.normal(0.0, _BIAS_SD)
        first = rng.normal(0.0, noise_sd, n_cases)
        second = (_REREAD_CORRELATION * first
                  + np.sqrt(1 - _REREAD_CORRELATION**2) * rng.normal(0.0, noise_sd, n_cases))
        unaided = truth * separation + case_effect + first
        aided = (1 - weight) * (truth * separation + case_effect + second) + weight * model_score
        reader = f"R{j + 1}"
        for condition, latent, centre in ((conditions[0], unaided, separation / 2),
                                          (conditions[1], aided, (1 - weight) * separation / 2)):
            probability = np.round(special.ndtr(latent - centre - bias), 2)
            rating = (1 + np.searchsorted(ORDINAL_CUTS, probability, side="left") if rating_scale == "ordinal"
                      else probability)
            for k in range(n_cases):
                rows.append({"reader": reader, "patient_id": cases["patient_id"].iloc[k],
                             "condition": condition, "rating": rating[k].item(),
                             "decision": classes[-1] if probability[k] > 0.5 else classes[0],
                             "experience": "senior" if senior else "junior"})
    return pd.DataFrame(rows, columns=["reader", "patient_id", "condition", "rating", "decision", "experience"])


#: Experience levels of the N-class demo readers, most experienced first (reader j gets
#: level j mod 3: R1 senior, R2 intermediate, R3 junior, R4 senior, ...).
EXPERIENCE_LEVELS = ("senior", "intermediate", "junior")


def simulate_multiclass_readers(cases: pd.DataFrame, settings: dict, classes: Sequence[str],
                                conditions: Sequence[str]) -> pd.DataFrame:
    """N-class readers.csv rows (:func:`spinedx.readers.reader_study.read_multiclass_reader_study`)
    for ``cases`` (columns patient_id, label = true class index, and ``prob_<class>`` = the
    model's case-level probabilities).

    A Thurstonian model, the N-class form of the binormal one above: reader ``j`` sees for
    case ``k`` a latent score per class, ``d_j`` for the true class and 0 for the others,
    plus a case effect ``C_k`` (one value per class, shared by all readers: the case looks
    like some classes more than others) and the reader's noise ``E_jk`` (Var(C) + Var(E) =
    1 per class). The decision is the class of highest score; the reader's probabilities
    are the softmax of the scores (3 decimals) and ``rating`` the probability of the
    decided class (the reader's confidence, 2 decimals)::

        unaided  U_jk = d_j e(y_k) + C_k + E_jk
        aided    A_jk = (1 - w_j) (d_j e(y_k) + C_k + E'_jk) + w_j M_k

    ``M_k``: the model's log-probabilities of case k, centred per case and scaled to unit
    SD over the read cases, so ``w_j = 1`` copies the model's decision; ``E'`` is the second
    reading's noise (correlated 0.7 with the first). Readers cycle through
    :data:`EXPERIENCE_LEVELS`: seniors draw ``d`` from the upper third of
    ``settings["separation"]`` and ``w`` from the lower third of ``settings["aid_weight"]``,
    juniors the reverse. For five classes ``d`` 0.8-1.8 gives unaided accuracies of about
    0.45-0.75 (ties of the scores have probability 0). Everything derives from ``seed``.
    """
    if len(conditions) != 2:
        raise ValueError(f"the demo reader study simulates two conditions (unaided, aided); "
                         f"reader_study.conditions is {list(conditions)}")
    classes = list(classes)
    n_classes = len(classes)
    n_readers = int(settings["n_readers"])
    rng = np.random.default_rng([int(settings["seed"]), _STREAM, n_classes])
    truth = cases["label"].to_numpy(dtype=int)
    n_cases = truth.size
    probabilities = np.clip(cases[[f"prob_{name}" for name in classes]].to_numpy(dtype=float), 1e-6, 1.0)
    model_log = np.log(probabilities)
    model_log -= model_log.mean(axis=1, keepdims=True)
    spread = model_log.std()
    model_score = model_log / (spread if spread > 0 else 1.0)
    true_class = np.eye(n_classes)[truth]  # (cases, classes)

    separation_low, separation_high = sorted(settings["separation"])
    weight_low, weight_high = sorted(settings["aid_weight"])
    thirds = len(EXPERIENCE_LEVELS)
    case_effect = rng.normal(0.0, np.sqrt(_CASE_VARIANCE), (n_cases, n_classes))
    noise_sd = np.sqrt(1 - _CASE_VARIANCE)
    rows = []
    for j in range(n_readers):
        level = j % thirds  # 0 = most experienced
        rank = thirds - 1 - level  # 2 = most experienced
        step_d = (separation_high - separation_low) / thirds
        step_w = (weight_high - weight_low) / thirds
        separation = rng.uniform(separation_low + rank * step_d, separation_low + (rank + 1) * step_d)
        weight = rng.uniform(weight_low + level * step_w, weight_low + (level + 1) * step_w)
        first = rng.normal(0.0, noise_sd, (n_cases, n_classes))
        second = (_REREAD_CORRELATION * first
                  + np.sqrt(1 - _REREAD_CORRELATION**2) * rng.normal(0.0, noise_sd, (n_cases, n_classes)))
        unaided = separation * true_class + case_effect + first
        aided = (1 - weight) * (separation * true_class + case_effect + second) + weight * model_score
        reader = f"R{j + 1}"
        for condition, latent in ((conditions[0], unaided), (conditions[1], aided)):
            decided = latent.argmax(axis=1)
            shifted = np.exp(latent - latent.max(axis=1, keepdims=True))
            reader_probabilities = np.round(shifted / shifted.sum(axis=1, keepdims=True), 3)
            for k in range(n_cases):
                rows.append({"reader": reader, "patient_id": cases["patient_id"].iloc[k], "condition": condition,
                             "decision": classes[decided[k]], "experience": EXPERIENCE_LEVELS[level],
                             "rating": float(np.round(reader_probabilities[k, decided[k]], 2)),
                             **{f"prob_{name}": float(reader_probabilities[k, i]) for i, name in enumerate(classes)}})
    return pd.DataFrame(rows, columns=["reader", "patient_id", "condition", "decision", "experience", "rating",
                                       *(f"prob_{name}" for name in classes)])
