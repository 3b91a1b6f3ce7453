"""Statistics of the study, a library that imports no stage: binary accuracy metrics and
intervals, the patient-level bootstrap, grouped metric tables, the R bridge and the
bivariate meta-analysis; N-class metrics (``multiclass``) and the stacked clinical +
image model (``fusion``); paired comparisons (``delong``, ``mcnemar``, ``comparisons``,
``multiplicity``), reader studies (``mrmc``), calibration and decision curves; lesion-level
detection metrics (``froc``).
"""
