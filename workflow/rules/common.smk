import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# The spinedx package is imported here (config checks, file lists, output paths) and by
# every job.
SRC_DIR = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC_DIR)

from spinedx import paths
from spinedx.aggregation import ALL_INPUT
from spinedx.config import PRETRAINED_HUB, check_semantics, pretrained_request, settings_json
from spinedx.demo.plan import demo_settings, planned_files
from spinedx.input_modes import VOLUME_SECTIONS as VOLUME_CONFIG_SECTIONS, model_mode, model_names
from spinedx.readers.bundle import CARD_CONFIG_SECTIONS as BUNDLE_CONFIG_SECTIONS, apply_bundle
from spinedx.readers.tree import sequence_files
from spinedx.runtime import prepare_job_environment
from spinedx.stats.meta_analysis import verdict_summary_of_table

prepare_job_environment(SRC_DIR)


validate(config, schema="../schemas/config.schema.yaml")
check_semantics(config)

# Audit mode: the released bundle's settings replace the models' own (spinedx.readers.bundle).
AUDIT_BUNDLE = config["audit"]["bundle"]
AUDIT = bool(AUDIT_BUNDLE)
if AUDIT:
    apply_bundle(config)

RESULTS = config["results_dir"]
SEQUENCES = list(config["sequences"])
# Volume studies (data.format volume): a model is an input mode x network (2.5d_resnet10t)
# and takes a backbone's place in every path and table (spinedx.input_modes).
VOLUMES = config["data"]["format"] == "volume"
BACKBONES = model_names(config)
MODES = list(config["input_modes"]) if VOLUMES else []
# The config sections model stages of a volume study read besides their own.
VOLUME_SECTIONS = VOLUME_CONFIG_SECTIONS if VOLUMES else ()
FOLDS = list(range(config["splits"]["n_folds"]))
IMAGES_DIR = config["data"]["images_dir"]
CASES = config["data"]["cases"]
DEMO = config["demo_cohort"]["enabled"]
DEMO_FILES = planned_files(demo_settings(config)) if DEMO else {}

# Every output path comes from spinedx.paths (the package writes the same names).
P = paths.StudyPaths(RESULTS)


wildcard_constraints:
    sequence="|".join(map(re.escape, SEQUENCES)),
    backbone="|".join(map(re.escape, BACKBONES)),
    fold=r"\d+",
    mode="|".join(map(re.escape, MODES or ["2d"])),


def settings(*sections):
    """The config sections a stage uses, as one JSON param (reruns on their change only).
    The stage may read these sections only (spinedx.config.StageConfig)."""
    return settings_json(config, *sections)


def sequence_inputs(wildcards):
    """The files of one sequence, so changing a T2 image reruns the T2 branch only."""
    if DEMO:
        return [f"{IMAGES_DIR}/{path}" for path in DEMO_FILES[wildcards.sequence]]
    return [str(f) for f in sequence_files(IMAGES_DIR, config["sequences"], wildcards.sequence)]


def model_cache(wildcards):
    """The cache a model reads: its sequence's (labelme) or its sequence and input mode's."""
    if VOLUMES:
        return P.volume_cache(wildcards.sequence, model_mode(wildcards.backbone)[0])
    return P.preprocessing_cache(wildcards.sequence)


def model_images(wildcards):
    """The table of the cache's rows: annotations (labelme) or the crops table (volumes)."""
    if VOLUMES:
        return P.volume_crops(wildcards.sequence, model_mode(wildcards.backbone)[0])
    return P.annotations(wildcards.sequence)


def model_memory(wildcards):
    """Memory (MB) a model's job declares: training.mem_mb_3d for 3d models."""
    if VOLUMES and model_mode(wildcards.backbone)[0] == "3d":
        return config["training"]["mem_mb_3d"]
    return config["training"]["mem_mb"]


def model_runtime(wildcards):
    """Minutes a training job declares: training.runtime_3d for 3d models."""
    if VOLUMES and model_mode(wildcards.backbone)[0] == "3d":
        return config["training"]["runtime_3d"]
    return config["training"]["runtime"]


def figures_of(*names):
    """The PDF and PNG files of figures (their names, without folder or suffix)."""
    return [path for name in names for path in paths.figure_files(P.figure(name))]


def figure_report(stem, caption, category, subcategory, **labels):
    """``stem``'s PNG as a report item (caption file in workflow/report/) and its PDF
    beside it: the report shows the PNG, the PDF is for print."""
    pdf, png = paths.figure_files(stem)
    return [pdf, report(png, caption=f"../report/{caption}", category=category, subcategory=subcategory,
                        labels=labels or None)]


# ------------------------------------------------------------------------------------
# Targets and mode switches, decided here once (before any rule file is included, so
# include order does not matter).

# The fold models of one backbone x sequence as later stages read them: this study's
# trained checkpoints, or in audit mode the released bundle's (checked by audit_verify,
# which every reader waits for through MODELS_VERIFIED).
if AUDIT:
    FOLD_CHECKPOINTS = expand(paths.BundlePaths(AUDIT_BUNDLE).model("{backbone}", "{sequence}", "{fold}"),
                              fold=FOLDS, allow_missing=True)
    MODELS_VERIFIED = P.audit_verified
else:
    FOLD_CHECKPOINTS = expand(P.checkpoint("{backbone}", "{sequence}", "{fold}"), fold=FOLDS, allow_missing=True)
    MODELS_VERIFIED = []

EVALUATION_TABLES = {
    "table2": P.table(paths.TABLE2_IMAGE_LEVEL),
    "table3": P.table(paths.TABLE3_CASE_LEVEL),
    "fold_2x2": P.table(paths.FOLD_2X2),
    "internal_image": P.table(paths.INTERNAL_CV_IMAGE_LEVEL),
    "internal_case": P.table(paths.INTERNAL_CV_CASE_LEVEL),
}
META_ANALYSIS_INPUTS = [*SEQUENCES, ALL_INPUT]
# Audit mode trains nothing: no training curves.
CURVES = [] if AUDIT else [(backbone, sequence) for backbone in BACKBONES for sequence in SEQUENCES]
BUNDLE_MODELS = expand(P.bundle.model("{backbone}", "{sequence}", "{fold}"),
                       backbone=BACKBONES, sequence=SEQUENCES, fold=FOLDS)
BUNDLE_FILES = [*BUNDLE_MODELS, P.bundle.card_json, P.bundle.card_md, P.bundle.manifest]

# What the study delivers (rule all = these + provenance; provenance records them and
# every file under tables/ and figures/). A new rule whose outputs the study delivers
# adds them here.
STUDY_OUTPUTS = [
    P.images_table,
    *EVALUATION_TABLES.values(),
    *([P.table(paths.META_ANALYSIS_TABLE),
       *figures_of(paths.SROC_FIGURE, *map(paths.forest_figure, META_ANALYSIS_INPUTS))]
      if config["meta_analysis"]["enabled"] else []),
    *figures_of(paths.ROC_BACKBONES_FIGURE, paths.FINAL_SYSTEM_FIGURE,
                *(paths.training_curves_figure(backbone, sequence) for backbone, sequence in CURVES)),
    P.table(paths.COHORT_TABLE),
    P.report_config,
    P.software_versions,
    *([path for backbone in BACKBONES for sequence in SEQUENCES
       for path in [P.gradcam_table(backbone, sequence), *figures_of(paths.gradcam_figure(backbone, sequence))]]
      if config["gradcam"]["enabled"] else []),
    *([P.audit_verified] if AUDIT else BUNDLE_FILES),
    # Volume studies: the input modes compared on the same cases (workflow/rules/volumes.smk).
    *([P.table(paths.INPUT_MODES_TABLE), P.table(paths.INPUT_MODES_TESTS_TABLE),
       *figures_of(paths.ROC_INPUT_MODES_FIGURE)] if VOLUMES else []),
]
# Volume studies: a boxes CSV (data.boxes) is an input of the annotations.
BOXES = [config["data"]["boxes"]] if VOLUMES and config["data"]["boxes"] else []

# ------------------------------------------------------------------------------------
# Issue 15: reader study, paired comparisons, calibration and clinical utility, subgroups,
# participant flow, reporting checklist, distribution shift (rule files reader_study,
# comparisons, calibration, subgroups, participant_flow, reporting_checklist,
# distribution_shift).
CASE_LEVEL_FILES = expand(P.case_level("{backbone}"), backbone=BACKBONES)
# Case-level fusion predictions when the study fuses clinical data (their owner,
# paths.StudyPaths.fusion_predictions, comes with the fusion stage): compared with image only.
_FUSION_OWNER = getattr(P, "fusion_predictions", None)
FUSION_CASE_PREDICTIONS = ([_FUSION_OWNER] if isinstance(_FUSION_OWNER, str)
                           and config.get("fusion", {}).get("enabled", False) else [])
# The reader study: the user's readers.csv, or the demo's simulated one.
# (the simulated readers are the spine demo's: none for a volume demo yet)
DEMO_READERS = DEMO and not VOLUMES and not config["reader_study"]["readers"] and config["reader_study"]["demo"]["enabled"]
READERS_FILE = P.demo_readers if DEMO_READERS else config["reader_study"]["readers"]
READER_STUDY_OUTPUTS = ([P.table(paths.READER_METRICS_TABLE), P.table(paths.READER_MRMC_TABLE),
                         P.table(paths.READER_DECISIONS_TABLE), *figures_of(paths.READER_ROC_FIGURE)]
                        if READERS_FILE else [])
# Distribution shift: the study writes its training cohort's reference into the bundle;
# audit mode scores the new cohort against the bundle's reference (when the bundle has one)
# and the evaluation tables wait for it (SHIFT_CHECKED), so no AUC is read before it.
# Volume studies: no shift reference yet (it reads 2-D caches); their models start from random weights.
SHIFT_ENABLED = config["distribution_shift"]["enabled"] and not VOLUMES
SHIFT_JOBS = [(backbone, sequence) for backbone in BACKBONES for sequence in SEQUENCES]
SHIFT_REFERENCES = [P.shift_reference(b, s) for b, s in SHIFT_JOBS] if SHIFT_ENABLED and not AUDIT else []
AUDIT_SHIFT_REFERENCES = ([paths.BundlePaths(AUDIT_BUNDLE).shift_reference(b, s) for b, s in SHIFT_JOBS]
                          if AUDIT and SHIFT_ENABLED else [])
if AUDIT_SHIFT_REFERENCES and not all(os.path.isfile(p) for p in AUDIT_SHIFT_REFERENCES):
    sys.stderr.write("audit: the bundle has no distribution-shift reference (written by spinedx >= issue 15); "
                     "the new cohort's shift against the training cohort is not assessed\n")
    AUDIT_SHIFT_REFERENCES = []
SHIFT_OUTPUTS = ([P.table(paths.SHIFT_TABLE), P.table(paths.SHIFT_SUMMARY_TABLE), *figures_of(paths.SHIFT_FIGURE)]
                 if AUDIT_SHIFT_REFERENCES else [])
SHIFT_CHECKED = SHIFT_OUTPUTS[1:2]
ISSUE15_OUTPUTS = [
    P.table(paths.FLOW_TABLE), *figures_of(paths.FLOW_FIGURE),
    *([P.table(paths.COMPARISONS_TABLE)] if config["comparisons"]["enabled"] else []),
    *([P.table(paths.CALIBRATION_TABLE), P.table(paths.CALIBRATION_CURVE_TABLE), P.table(paths.DECISION_CURVE_TABLE),
       *figures_of(paths.CALIBRATION_FIGURE, paths.DECISION_CURVE_FIGURE)] if config["calibration"]["enabled"] else []),
    *([P.table(paths.SUBGROUP_TABLE), *figures_of(paths.SUBGROUP_FIGURE)] if config["subgroups"]["variables"] else []),
    *READER_STUDY_OUTPUTS,
    *SHIFT_OUTPUTS,
]
# The reporting checklist maps guideline items to these files (the study's outputs so far).
CHECKLIST_EVIDENCE = [*STUDY_OUTPUTS, *ISSUE15_OUTPUTS, *([] if AUDIT else [P.folds])]
STUDY_OUTPUTS += [*ISSUE15_OUTPUTS, P.table(paths.CHECKLIST_TABLE)]


def report_meta_analysis_verdicts():
    """End of a run (Snakefile onsuccess/onerror): say which meta-analysis fits are flagged
    (not converged, not estimable), read from the table, so that a flag is not only in a log."""
    if not config["meta_analysis"]["enabled"]:
        return
    lines = verdict_summary_of_table(P.table(paths.META_ANALYSIS_TABLE))
    if lines:
        (logger.warning if len(lines) > 1 else logger.info)("\n".join(lines))


# Pretrained weights (training.pretrained; spinedx.models.pretrained): each backbone that
# starts from them has its weights fetched or checked once by rule pretrained_weights
# (a local rule: the submitting node) before any of its training jobs starts; the jobs
# load the recorded, hash-checked file. Audit mode trains nothing.
PRETRAINED_BACKBONES = [] if AUDIT or VOLUMES else [
    backbone for backbone in BACKBONES if pretrained_request(config["training"]["pretrained"], backbone)]
PRETRAINED_RECORDS = [P.pretrained_record(backbone) for backbone in PRETRAINED_BACKBONES]


def pretrained_record(wildcards):
    """The resolved weights a training job waits for (none: random initialisation)."""
    return [P.pretrained_record(wildcards.backbone)] if wildcards.backbone in PRETRAINED_BACKBONES else []


def pretrained_record_option(wildcards, input):
    return f"--pretrained-record {shlex.quote(input.pretrained[0])}" if input.pretrained else ""


def pretrained_weight_files(wildcards):
    """A local weight file named for the backbone: its change resolves it again."""
    wanted = pretrained_request(config["training"]["pretrained"], wildcards.backbone)
    return [] if wanted in (None, PRETRAINED_HUB) else [wanted]
