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


rule all:
    input:
        rules.merge_annotations.output,
        rules.evaluation.output,
        rules.meta_analysis.output if config["meta_analysis"]["enabled"] else [],
        rules.figures.output,
        rules.report_metadata.output,
        expand(rules.gradcam.output, backbone=BACKBONES, sequence=SEQUENCES) if config["gradcam"]["enabled"] else [],
    default_target: True
