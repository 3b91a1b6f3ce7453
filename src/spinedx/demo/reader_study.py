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
