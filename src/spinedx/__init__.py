"""spinedx: labelme-annotated spinal MR images to a CNN diagnostic-accuracy study.

The package is split by stage, one module per stage, each mirrored by a Snakemake rule
file of the same name in ``workflow/rules`` and a ``spinedx <stage>`` command:
demo_cohort, annotations, preprocessing, splits, training, inference, ensembling,
case_level, evaluation, meta_analysis, bundle, provenance, audit.
"""

__version__ = "0.1.0"
