# spinedx: labelme-annotated spinal MR images -> CNN diagnostic-accuracy study.
# Run: snakemake --cores 2 (demo)  |  snakemake --configfile config/paper.yaml ...  |
#      snakemake --profile slurm --cores N (cluster). See README.md.

configfile: "config/config.yaml"


# `snakemake --report results/report.html`: every table and figure, with captions.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo_cohort.smk"
include: "workflow/rules/annotations.smk"
include: "workflow/rules/preprocessing.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/training.smk"
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


# Seconds of bookkeeping (small tables, copying and hashing files): on a cluster these run
# on the submitting node instead of waiting in the queue. Training, inference,
# preprocessing and the meta-analysis are submitted.
localrules:
    all,
    demo_cohort,
    annotations,
    merge_annotations,
    splits,
    ensembling,
    case_level,
    evaluation,
    figures,
    report_metadata,
    bundle,
    provenance,
    audit_verify,
    audit,


rule all:
    input:
        STUDY_OUTPUTS,
        rules.provenance.output,
    default_target: True
