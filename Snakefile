# spinedx: labelme-annotated spinal MR images -> CNN diagnostic-accuracy study.
# Run: snakemake --cores 2 (demo)  |  snakemake --configfile config/paper.yaml ...  |
#      snakemake --profile slurm --cores N (cluster). See README.md.

configfile: "config/config.yaml"


# `snakemake --report results/report.html`: every table and figure, with captions.
report: "workflow/report/workflow.rst"


# common.smk first: config, output paths (spinedx.paths), targets and mode switches; the
# rule files after it need nothing from each other, so their order does not matter. Rules
# of seconds of bookkeeping (small tables, copying and hashing files) carry
# `localrule: True`: on a cluster they run on the submitting node instead of waiting in
# the queue; training, inference, preprocessing, Grad-CAM and the meta-analysis are
# submitted.
include: "workflow/rules/common.smk"
include: "workflow/rules/demo_cohort.smk"
include: "workflow/rules/annotations.smk"
include: "workflow/rules/preprocessing.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/pretrained_weights.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/training_folds.smk"
include: "workflow/rules/inference.smk"
include: "workflow/rules/ensembling.smk"
include: "workflow/rules/case_level.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/meta_analysis.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/gradcam.smk"
include: "workflow/rules/bundle.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/audit.smk"
# Detection (issue 16): rules that exist only with task.type detection.
include: "workflow/rules/detection_data.smk"
include: "workflow/rules/detection_models.smk"
include: "workflow/rules/detection_evaluation.smk"
include: "workflow/rules/detection_release.smk"
include: "workflow/rules/volumes.smk"
# Issue 15: reader studies and the statistics a reviewer asks for.
include: "workflow/rules/reader_study.smk"
include: "workflow/rules/comparisons.smk"
include: "workflow/rules/calibration.smk"
include: "workflow/rules/subgroups.smk"
include: "workflow/rules/participant_flow.smk"
include: "workflow/rules/reporting_checklist.smk"
include: "workflow/rules/distribution_shift.smk"
include: "workflow/rules/multiclass.smk"


rule all:
    input:
        STUDY_OUTPUTS,
        P.provenance,
    default_target: True
    localrule: True


# Flagged meta-analysis fits (not converged, not estimable) are listed at the end of every
# run, also a failed one, so nobody misses them in a log (meta_analysis.on_nonconvergence).
onsuccess:
    report_meta_analysis_verdicts()


onerror:
    report_meta_analysis_verdicts()
