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
from spinedx.splitting import model_count
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
# Models per backbone x sequence: folds (k-fold) or hold-out repeats (config splits.scheme);
# the {fold} wildcard is the model's index either way, paths.py names it fold<k>/holdout<r>.
SPLIT_SCHEME = config["splits"]["scheme"]
FOLDS = list(range(model_count(config["splits"])))
IMAGES_DIR = config["data"]["images_dir"]
CASES = config["data"]["cases"]
DEMO = config["demo_cohort"]["enabled"]
DEMO_FILES = planned_files(demo_settings(config)) if DEMO else {}
# Training jobs: per backbone x sequence (local runs) or per fold (SLURM profile); see
# the schema's training_jobs and workflow/rules/training_folds.smk.
TRAINING_FOLDS_TOGETHER = config["training_jobs"] == "per_sequence"

# Every output path comes from spinedx.paths (the package writes the same names).
P = paths.StudyPaths(RESULTS, SPLIT_SCHEME)

# Study shapes (issue 13). The reference shape (two classes, labels from the cases table,
# k-fold, one external cohort named "external", no fusion, no planes) keeps exactly its
# outputs; any other shape adds the N-class tables and figures (multiclass_evaluation,
# multiclass_figures; fusion when enabled). The binary tables and figures 3/6 need two
# classes labelled per case; the meta-analysis of the fold models needs k-fold on top.
BINARY_TABLES = len(config["classes"]) == 2 and config["labels"]["source"] == "cases"
CASE_LEVEL = config["labels"]["source"] == "cases"
# Audit mode scores a released bundle's image models; the stacker is fitted on a study's
# own internal predictions, which an audit does not have: no fusion there.
FUSION = config["fusion"]["enabled"] and not AUDIT
REFERENCE_SHAPE = (BINARY_TABLES and SPLIT_SCHEME == "kfold" and config["data"]["external_cohorts"] == ["external"]
                   and not FUSION and not config["planes"])
MULTICLASS = not REFERENCE_SHAPE
META_ANALYSIS = config["meta_analysis"]["enabled"] and BINARY_TABLES and SPLIT_SCHEME == "kfold"
if config["meta_analysis"]["enabled"] and not META_ANALYSIS:
    print("spinedx: meta-analysis skipped: it pools the fold models' binary 2x2 tables, and this study has "
          f"{len(config['classes'])} classes / {config['labels']['source']} labels / a {SPLIT_SCHEME} split "
          "(set meta_analysis.enabled: false to silence this note)", file=sys.stderr)


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
    FOLD_CHECKPOINTS = expand(paths.BundlePaths(AUDIT_BUNDLE, SPLIT_SCHEME).model("{backbone}", "{sequence}", "{fold}"),
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
    *(EVALUATION_TABLES.values() if BINARY_TABLES else []),
    *([P.table(paths.META_ANALYSIS_TABLE),
       *figures_of(paths.SROC_FIGURE, *map(paths.forest_figure, META_ANALYSIS_INPUTS))]
      if META_ANALYSIS else []),
    *figures_of(*([paths.ROC_BACKBONES_FIGURE, paths.FINAL_SYSTEM_FIGURE] if BINARY_TABLES else []),
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
FUSION_CASE_PREDICTIONS = [_FUSION_OWNER] if isinstance(_FUSION_OWNER, str) and FUSION else []  # none in audit mode
# The reader study: the user's readers.csv, or the demo's simulated one (labelme and volume
# demos alike: the simulated readers read the demo's external cases, aided by its final model).
DEMO_READERS = DEMO and not config["reader_study"]["readers"] and config["reader_study"]["demo"]["enabled"]
READERS_FILE = P.demo_readers if DEMO_READERS else config["reader_study"]["readers"]
READER_STUDY_OUTPUTS = ([P.table(paths.READER_METRICS_TABLE), P.table(paths.READER_MRMC_TABLE),
                         P.table(paths.READER_DECISIONS_TABLE), *figures_of(paths.READER_ROC_FIGURE)]
                        if READERS_FILE else [])
# Distribution shift: the study writes its training cohort's reference into the bundle;
# audit mode scores the new cohort against the bundle's reference (when the bundle has one)
# and the evaluation tables wait for it (SHIFT_CHECKED), so no AUC is read before it.
# These analyses are built for the reference shape (two classes per case, k-fold, one external
# cohort); other study shapes do not get them yet (README "Study shapes").
# Two-class volume studies of that shape get them too (r15ct): their stages resolve the
# models (`2.5d_resnet10t`) from the VOLUME_SECTIONS their rules pass.
READER_ANALYSES = REFERENCE_SHAPE
# --- r15bin: two-class studies labelled per case of any other shape (hold-out, several
# external cohorts, clinical fusion, planes) take the N-class path below
# (NCLASS_READER_ANALYSES: every test set, fusion by fusion_input) with two classes; its
# stages give the two-class statistics there: the reader study by AUC of the ratings
# (rules demo_reader_study / reader_study), comparisons by DeLong AUC and McNemar
# sensitivity / specificity, calibration and decision curves of the positive class.
# Volume studies too (r15volshape: e.g. vertebral CT with a hold-out split): their models
# (`2.5d_resnet10t`) resolve from the VOLUME_SECTIONS the rules pass, and the shift
# reference reads each model's input-mode cache and crops table, as for the reference shape.
BINARY_OTHER_SHAPE = BINARY_TABLES and not REFERENCE_SHAPE
# ---
# The issue-15 analyses of each study shape (their blocks below say what each gets):
# N-class 2-D studies labelled per case (ISMF; r15nclass) and two-class ones of another shape,
# volumes included (the N-class path with two-class statistics); N-class volume studies: not
# yet (README "Study shapes").
NCLASS_READER_ANALYSES = ((len(config["classes"]) > 2 and not VOLUMES) or BINARY_OTHER_SHAPE) and CASE_LEVEL
# Labels of images (canine; r15img, r15canaudit): 2-D only.
IMAGE_LABEL_ANALYSES = config["labels"]["source"] == "annotation" and not VOLUMES
# Every study shape with these analyses writes the training cohort's shift reference into its
# bundle: from 2-D caches and penultimate features (a volume model: its input mode's cache and
# crops table; a hold-out repeat: its validation and internal-test images held out).
SHIFT_ENABLED = config["distribution_shift"]["enabled"] and (READER_ANALYSES or NCLASS_READER_ANALYSES
                                                             or IMAGE_LABEL_ANALYSES)
SHIFT_JOBS = [(backbone, sequence) for backbone in BACKBONES for sequence in SEQUENCES]
# What each model x sequence reads: its cache and image table (labelme: the merged images table).
from types import SimpleNamespace as _Job

SHIFT_CACHES = [model_cache(_Job(backbone=b, sequence=s)) for b, s in SHIFT_JOBS]
SHIFT_IMAGES = [model_images(_Job(backbone=b, sequence=s)) if VOLUMES else P.images_table for b, s in SHIFT_JOBS]
SHIFT_REFERENCES = [P.shift_reference(b, s) for b, s in SHIFT_JOBS] if SHIFT_ENABLED and not AUDIT else []
# The bundle's copies are study outputs too: Snakemake reruns a job for missing outputs
# only when they are requested, so a results folder from before the references existed would
# otherwise keep its old bundle without them.
BUNDLE_SHIFT_REFERENCES = [P.bundle.shift_reference(b, s) for b, s in SHIFT_JOBS] if SHIFT_REFERENCES else []
STUDY_OUTPUTS += BUNDLE_SHIFT_REFERENCES
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
STUDY_OUTPUTS += [*ISSUE15_OUTPUTS, P.table(paths.CHECKLIST_TABLE)] if READER_ANALYSES else []

# --- N-class study shapes (issue 13): their tables and figures --------------------------
MULTICLASS_TABLES = {
    name: P.table(name)
    for name in [paths.MULTICLASS_PER_CLASS, paths.MULTICLASS_OVERALL, paths.MULTICLASS_CONFUSION,
                 *([paths.MULTICLASS_REFERENCE] if config["labels"]["reference_class"] else []),
                 *([paths.MULTICLASS_REPEATS] if SPLIT_SCHEME == "holdout" else []),
                 *([paths.FUSION_COMPARISON] if FUSION else [])]
}
MULTICLASS_FIGURES = [paths.MULTICLASS_ROC_FIGURE, paths.MULTICLASS_CONFUSION_FIGURE, paths.MULTICLASS_F1_FIGURE,
                      *([paths.FUSION_FIGURE] if FUSION else [])]
# The predictions the N-class stages read: every image, and per case where labels belong
# to cases (labels from the annotation have no case level).
ENSEMBLED = expand(P.ensembling("{backbone}", "{sequence}"), backbone=BACKBONES, sequence=SEQUENCES)
CASE_PREDICTIONS = expand(P.case_level("{backbone}"), backbone=BACKBONES) if CASE_LEVEL else []
if MULTICLASS:
    STUDY_OUTPUTS += [*MULTICLASS_TABLES.values(), *figures_of(*MULTICLASS_FIGURES),
                      *([P.table(paths.FUSION_COEFFICIENTS)] if FUSION else [])]

# --- Issue 15 for N-class studies labelled per case (ISMF-Net shape; any split scheme and
# external cohorts): their own reader study (stage multiclass_reader_study: class
# decisions, accuracy compared by OR-Hillis), participant flow (hold-out partitions, every
# cohort), subgroups (N-class metrics), calibration (one-vs-rest per class, multi-class
# Brier), paired comparisons (command multiclass_comparisons: accuracy and per-class
# sensitivity by McNemar, per-class AUC by DeLong, every test set), one-vs-rest decision
# curves per class and the checklist. Not for N-class volume studies (two-class volume
# studies: READER_ANALYSES above, or this path for another shape) nor image labels. The
# distribution-shift reference goes into the bundle (SHIFT_ENABLED above) and an audit
# scores the new cohort against it (SHIFT_OUTPUTS).
# Audit mode of an N-class bundle (r15nclass): the same analyses on the auditor's cohort
# (one cohort, "external", scored by the bundle's ensemble); no fusion (FUSION is off),
# the reader study only with the auditor's readers.csv (no demo), no splits as evidence.
# (NCLASS_READER_ANALYSES: decided above, with SHIFT_ENABLED.)
# The N-class reader study (class decisions, accuracy); two classes keep the two-class one (AUC).
NCLASS_READERS = NCLASS_READER_ANALYSES and len(config["classes"]) > 2
if NCLASS_READERS:
    READER_STUDY_OUTPUTS = ([P.table(name) for name in (paths.READER_METRICS_TABLE, paths.READER_PER_CLASS_TABLE,
                                                         paths.READER_GAIN_TABLE, paths.READER_MRMC_TABLE,
                                                         paths.READER_DECISIONS_TABLE)]
                            + figures_of(paths.READER_ACCURACY_FIGURE) if READERS_FILE else [])
if NCLASS_READER_ANALYSES:
    ISSUE15_OUTPUTS = [
        P.table(paths.FLOW_TABLE), *figures_of(paths.FLOW_FIGURE),
        *([P.table(paths.SUBGROUP_TABLE), *figures_of(paths.SUBGROUP_FIGURE)] if config["subgroups"]["variables"] else []),
        *([P.table(paths.COMPARISONS_TABLE)] if config["comparisons"]["enabled"] else []),
        # audit mode, a bundle with a shift reference: the new cohort against the training cohort
        *SHIFT_OUTPUTS,
        # one-vs-rest per class: calibration, the multi-class Brier score and decision curves
        # (rule multiclass_calibration)
        *([P.table(paths.CALIBRATION_TABLE), P.table(paths.CALIBRATION_CURVE_TABLE),
           P.table(paths.DECISION_CURVE_TABLE), *figures_of(paths.CALIBRATION_FIGURE, paths.DECISION_CURVE_FIGURE)]
          if config["calibration"]["enabled"] else []),
        *READER_STUDY_OUTPUTS,
    ]
    CHECKLIST_EVIDENCE = [*STUDY_OUTPUTS, *ISSUE15_OUTPUTS, *([] if AUDIT else [P.splits])]
    STUDY_OUTPUTS += [*ISSUE15_OUTPUTS, P.table(paths.CHECKLIST_TABLE)]

# --- Issue 15 for studies whose labels belong to images (canine shape: labels.source
# annotation, any number of classes, no case level): participant flow (images per class,
# input, cohort and hold-out partition), one-vs-rest calibration with the multi-class
# Brier score, one-vs-rest decision curves (every backbone's ALL input), paired
# comparisons (command image_comparisons: backbones per input, inputs per backbone, the
# difference bootstrapped over dogs) and N-class subgroups (plane, sequence, cases- and
# image-table columns), all on images with intervals from a bootstrap that resamples
# patients (dogs) with all their images, and the checklist. No reader study: readers read
# cases, and these labels have no case (the canine paper had none). Not for volume studies.
# The distribution-shift reference goes into the bundle (SHIFT_ENABLED above). Audit mode of
# such a bundle (r15canaudit): the same analyses on the auditor's images (one cohort,
# "external", labels from the auditor's labelme files, scored by the bundle's ensemble),
# the new cohort's shift first (SHIFT_OUTPUTS; the N-class tables wait for it), no splits.
# (IMAGE_LABEL_ANALYSES: decided above, with SHIFT_ENABLED.)
if IMAGE_LABEL_ANALYSES:
    if config["reader_study"]["readers"]:
        print(f"spinedx: reader study skipped: labels of images (labels.source annotation) have no case to read "
              f"(remove reader_study.readers to silence this note)", file=sys.stderr)
    DEMO_READERS, READERS_FILE = False, None
    ISSUE15_OUTPUTS = [
        P.table(paths.FLOW_TABLE), *figures_of(paths.FLOW_FIGURE),
        *([P.table(paths.SUBGROUP_TABLE), *figures_of(paths.SUBGROUP_FIGURE)] if config["subgroups"]["variables"] else []),
        *([P.table(paths.COMPARISONS_TABLE)] if config["comparisons"]["enabled"] else []),
        *([P.table(paths.CALIBRATION_TABLE), P.table(paths.CALIBRATION_CURVE_TABLE),
           P.table(paths.DECISION_CURVE_TABLE), *figures_of(paths.CALIBRATION_FIGURE, paths.DECISION_CURVE_FIGURE)]
          if config["calibration"]["enabled"] else []),
        *SHIFT_OUTPUTS,  # audit mode, a bundle with a shift reference
    ]
    CHECKLIST_EVIDENCE = [*STUDY_OUTPUTS, *ISSUE15_OUTPUTS, *([] if AUDIT else [P.splits])]
    STUDY_OUTPUTS += [*ISSUE15_OUTPUTS, P.table(paths.CHECKLIST_TABLE)]
# The N-class calibration (one-vs-rest, multi-class Brier) serves N-class case labels and image labels.
MULTICLASS_CALIBRATION = NCLASS_READER_ANALYSES or IMAGE_LABEL_ANALYSES
# The predictions issue-15 stages read: case level, or the ensembled images where labels belong to images.
ISSUE15_CASE_PREDICTIONS = [] if IMAGE_LABEL_ANALYSES else CASE_LEVEL_FILES
ISSUE15_IMAGE_PREDICTIONS = ENSEMBLED if IMAGE_LABEL_ANALYSES else []
# The table that chooses the final system (subgroups): table 3 (two classes) or the N-class overall table.
FINAL_SYSTEM_TABLE = (MULTICLASS_TABLES[paths.MULTICLASS_OVERALL] if len(config["classes"]) > 2 or IMAGE_LABEL_ANALYSES
                      else EVALUATION_TABLES["table3"])


def report_meta_analysis_verdicts():
    """End of a run (Snakefile onsuccess/onerror): say which meta-analysis fits are flagged
    (not converged, not estimable), read from the table, so that a flag is not only in a log."""
    if not META_ANALYSIS:  # disabled, or skipped for this study shape (note above)
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


# ------------------------------------------------------------------------------------
# Detection (issue 16): with task.type detection the study is the detection one
# (workflow/rules/detection_*.smk); its targets replace the classification targets.
from spinedx.detection_task import DetectionTask, is_detection
from spinedx.readers.bundle import DETECTION_CARD_SECTIONS as DETECTION_BUNDLE_SECTIONS
from spinedx.readers.detection_cases import input_files as detection_input_files

DETECTION = is_detection(config)
if DETECTION:
    DETECTION_TASK = DetectionTask.from_config(config)
    DETECTION_PAIRS = DETECTION_TASK.pairs
    READER_MARKS = config["detection_evaluation"]["readers"]["marks"]
    # Synthetic readers only for the demo; a real study's marks are an input file.
    DETECTION_DEMO_READERS = bool(DEMO and READER_MARKS and config["demo_cohort"]["study"] == "brain_mets")
    DETECTION_INPUT_FILES = ([f"{IMAGES_DIR}/{path}" for files in DEMO_FILES.values() for path in files] if DEMO
                             else detection_input_files(IMAGES_DIR, config["sequences"], CASES, all_external=AUDIT))

    def detection_checkpoints(model, detection_input):
        """The fold models of one model x input as later stages read them (audit: the bundle's)."""
        if AUDIT:
            return [paths.BundlePaths(AUDIT_BUNDLE).model(model, detection_input, k) for k in FOLDS]
        return [P.detection_checkpoint(model, detection_input, k) for k in FOLDS]

    def per_pair(pattern):
        """``pattern(model, input)`` for every model x input, in the study's order."""
        return [pattern(model, detection_input) for model, detection_input in DETECTION_PAIRS]

    DETECTION_TABLE_FILES = {name: P.table(name) for name in paths.DETECTION_TABLES}
    DETECTION_CURVES = [] if AUDIT else DETECTION_PAIRS
    DETECTION_BUNDLE_MODELS = [P.bundle.model(m, i, k) for m, i in DETECTION_PAIRS for k in FOLDS]
    DETECTION_BUNDLE_FILES = [*DETECTION_BUNDLE_MODELS, P.bundle.card_json, P.bundle.card_md, P.bundle.manifest]
    STUDY_OUTPUTS = [
        *DETECTION_TABLE_FILES.values(),
        P.table(paths.DETECTION_COHORT),
        *figures_of(paths.DETECTION_FROC_FIGURE,
                    *(paths.detection_examples_figure(m, i) for m, i in DETECTION_PAIRS),
                    *(paths.detection_curves_figure(m, i) for m, i in DETECTION_CURVES)),
        P.report_config,
        P.software_versions,
        *([P.audit_verified] if AUDIT else DETECTION_BUNDLE_FILES),
    ]
    # --- Issue 15 for detection studies: participant flow (patients, volumes and lesions
    # per cohort and fold; rule detection_participant_flow), subgroups of the detection
    # system (lesion sensitivity and false positives per case per lesion-size band and per
    # cases-table column, patient-bootstrap intervals; rule detection_subgroups) and the
    # checklist, whose items the FROC, operating-point, size-band and reader tables answer.
    # Not in audit mode (an audit has no folds and keeps the released thresholds only).
    DETECTION_ISSUE15 = not AUDIT
    if DETECTION_ISSUE15:
        DETECTION_ISSUE15_OUTPUTS = [
            P.table(paths.FLOW_TABLE), *figures_of(paths.FLOW_FIGURE),
            *([P.table(paths.SUBGROUP_TABLE), *figures_of(paths.SUBGROUP_FIGURE)] if config["subgroups"]["variables"]
              else []),
        ]
        CHECKLIST_EVIDENCE = [*STUDY_OUTPUTS, *DETECTION_ISSUE15_OUTPUTS, P.folds]
        STUDY_OUTPUTS += [*DETECTION_ISSUE15_OUTPUTS, P.table(paths.CHECKLIST_TABLE)]
