"""Statistics library: metrics, intervals and models of the study's numbers.

Modules here import no stage; stages call them. ``multiclass`` holds the N-class
diagnostic-accuracy metrics and their patient-level bootstrap, ``fusion`` the stacked
clinical + image model.
"""
