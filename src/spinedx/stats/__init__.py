"""Statistics of the study, a library that imports no stage: binary accuracy metrics and
intervals, the patient-level bootstrap, grouped metric tables, the R bridge and the
bivariate meta-analysis.
"""
