"""``spinedx <stage>``: every workflow stage as a command, for use outside Snakemake.

The Snakemake rules call exactly these commands; each dispatches to its stage module
(:mod:`spinedx.stages`). A stage takes its settings either from a config file
(``--config``: every section) or as JSON of the config sections its rule passes
(``--settings``: only those sections; reading another is an error naming the stage and
the section), resolved against the same schema.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import yaml

from spinedx import config as configuration
from spinedx import paths
from spinedx.errors import InputError

log = logging.getLogger("spinedx")


def cmd_config(args, config):
    sys.stdout.write(yaml.safe_dump(dict(config), sort_keys=False))


def cmd_demo_cohort(args, config):
    from spinedx.stages import demo_cohort
    demo_cohort.main_stage(config, args.images_dir, args.cases)


def cmd_annotations(args, config):
    if config["data"]["format"] == "volume":  # one row per case x sequence of a volume study
        from spinedx.stages import volume_annotations

        volume_annotations.main_stage(config, args.images_dir, args.cases, args.sequence, args.out, args.excluded)
        return
    from spinedx.stages import annotations
    annotations.main_stage(config, args.images_dir, args.cases, args.sequence, args.out, args.excluded)


def cmd_merge_annotations(args, config):
    from spinedx.stages import annotations
    annotations.merge(args.tables, args.images_dir, args.out)


def cmd_preprocessing(args, config):
    from spinedx.stages import preprocessing
    preprocessing.main_stage(config, args.images, args.images_dir, args.out)


def cmd_volume_preprocessing(args, config):
    from spinedx.stages import volume_preprocessing
    volume_preprocessing.main_stage(config, args.images, args.images_dir, args.mode, args.out, args.crops)


def cmd_mode_comparison(args, config):
    from spinedx.stages import mode_comparison
    mode_comparison.main_stage(config, args.case_predictions, args.table, args.tests, args.figure)


def cmd_splits(args, config):
    from spinedx.stages import splits
    splits.main_stage(config, args.cases, args.out)


def cmd_training(args, config):
    from spinedx.stages import training
    training.train(args.cache, args.images, args.folds, args.backbone, args.sequence, args.fold,
                   config, args.out_dir, args.pretrained_record)


def cmd_pretrained_weights(args, config):
    from spinedx.stages import pretrained_weights
    pretrained_weights.main_stage(config, args.backbone, args.out)


def cmd_training_folds(args, config):
    from spinedx.stages import training
    units = [(sequence, fold) for sequence in args.sequences for fold in args.fold_ids]
    if not (len(args.caches) == len(args.images) == len(args.sequences)
            and len(args.out_dirs) == len(args.logs) == len(units)):
        raise SystemExit("spinedx training_folds: one --caches and --images per sequence, one --out-dirs "
                         "and --logs per sequence x fold (sequence-major)")
    data = {sequence: (cache, images) for sequence, cache, images in zip(args.sequences, args.caches, args.images)}
    jobs = [{"cache": data[sequence][0], "images": data[sequence][1], "folds": args.folds,
             "backbone": args.backbone, "sequence": sequence, "fold": fold, "out_dir": out_dir, "log": log_path,
             "pretrained_record": args.pretrained_record}
            for (sequence, fold), out_dir, log_path in zip(units, args.out_dirs, args.logs)]
    training.train_folds(jobs, config, args.workers)


def cmd_inference(args, config):
    from spinedx.stages import inference
    inference.main_stage(config, args.checkpoints, args.cache, args.images, args.folds, args.out)


def cmd_ensembling(args, config):
    from spinedx.stages import ensembling
    ensembling.main_stage(config, args.predictions, args.backbone, args.out)


def cmd_case_level(args, config):
    from spinedx.stages import case_level
    case_level.main_stage(config, args.predictions, args.out)


def cmd_evaluation(args, config):
    from spinedx.stages import evaluation
    evaluation.main_stage(config, args.image_predictions, args.case_predictions, args.out_dir)


def cmd_meta_analysis(args, config):
    from spinedx.stages import meta_analysis
    meta_analysis.main_stage(args.fold_2x2, args.out, args.figures_dir, config["meta_analysis"])


def cmd_bundle(args, config):
    from spinedx.stages import bundle
    bundle.write_bundle(args.checkpoints, args.images, args.external_metrics, args.internal_metrics,
                        config, args.out_dir, multiclass_metrics=args.multiclass_metrics,
                        shift_references=args.shift_references)


def cmd_provenance(args, config):
    from spinedx.stages import provenance
    provenance.main_stage(config, args.outputs, args.images, args.cases, args.results_dir, args.out,
                          args.pretrained_records)


def cmd_audit(args, config):
    from spinedx.stages import audit
    audit.main_stage(config, args)


def cmd_figures(args, config):
    from spinedx.stages import figures
    figures.main_stage(args.image_predictions, args.case_predictions, args.table2, args.table3,
                       args.histories, args.cases, args.images, config, args.out_dir, args.table1)


def cmd_fusion(args, config):
    from spinedx.stages import fusion
    fusion.main_stage(config, args.case_predictions, args.cases, args.out, args.coefficients)


def cmd_multiclass_evaluation(args, config):
    from spinedx.stages import multiclass_evaluation
    multiclass_evaluation.main_stage(config, args.image_predictions, args.case_predictions,
                                     args.fusion_predictions, args.out_dir)


def cmd_multiclass_figures(args, config):
    from spinedx.stages import multiclass_figures
    multiclass_figures.main_stage(config, args.tables_dir, args.image_predictions, args.case_predictions,
                                  args.out_dir, fusion=args.fusion)


def cmd_report_metadata(args, config):
    from spinedx.stages import report_metadata
    report_metadata.main_stage(config, args.config_out, args.versions_out)


def cmd_gradcam(args, config):
    if config["data"]["format"] == "volume":  # maps of 2d/2.5d/3d crops, shown in the volume
        from spinedx.stages import volume_gradcam as gradcam
    else:
        from spinedx.stages import gradcam
    gradcam.main_stage(args.checkpoints, args.cache, args.images, args.ensemble_predictions, config,
                       args.images_dir, args.out, args.figure, args.backbone)


# --- detection (issue 16) -----------------------------------------------------------------


def cmd_detection_cases(args, config):
    from spinedx.stages import detection_cases
    detection_cases.main_stage(config, args.images_dir, args.cases, args.out, args.lesions_out)


def cmd_detection_preprocessing(args, config):
    from spinedx.stages import detection_preprocessing
    detection_preprocessing.main_stage(config, args.cases, args.out, args.table_out)


def cmd_detection_splits(args, config):
    from spinedx.stages import detection_splits
    detection_splits.main_stage(config, args.cases, args.out)


def cmd_detection_training(args, config):
    from spinedx.stages import detection_training
    detection_training.train(config, args.volumes, args.cases, args.folds, args.model, args.input, args.fold,
                             args.out_dir)


def cmd_detection_inference(args, config):
    from spinedx.stages import detection_inference
    detection_inference.main_stage(config, args.checkpoints, args.volumes, args.cases, args.folds, args.model,
                                   args.input, args.out)


def cmd_detection_candidates(args, config):
    from spinedx.stages import detection_candidates
    detection_candidates.main_stage(config, args.maps, args.cases, args.out, args.lesions_out)


def cmd_detection_readers(args, config):
    from spinedx.stages import detection_readers
    detection_readers.main_stage(config, args.marks, args.cases, args.out, args.lesions_out)


def cmd_detection_evaluation(args, config):
    from spinedx.stages import detection_evaluation
    detection_evaluation.main_stage(config, args.cases, args.candidates, args.lesions, args.reader_marks,
                                    args.reader_lesions, args.out_dir, args.bundle_card)


def cmd_detection_figures(args, config):
    from spinedx.stages import detection_figures
    detection_figures.main_stage(config, args.cases, args.lesions, args.tables_dir, args.candidates,
                                 args.lesion_hits, args.maps, args.histories, args.out_dir, args.cohort_out)


def cmd_detection_bundle(args, config):
    from spinedx.stages import detection_bundle
    detection_bundle.write_bundle(args.checkpoints, args.cases, args.operating_points, args.summary, config,
                                  args.out_dir)


def cmd_detection_audit_verify(args, config):
    from spinedx.stages import detection_audit
    detection_audit.main_stage(config, args.bundle, args.cases, args.out)


def cmd_detection_provenance(args, config):
    from spinedx.stages import detection_provenance
    detection_provenance.main_stage(config, args.outputs, args.detection_cases, args.cases, args.marks,
                                    args.results_dir, args.out)


def cmd_detection_demo_readers(args, config):
    from spinedx.stages import detection_demo_readers
    detection_demo_readers.main_stage(config, args.images_dir, args.cases, args.out)


def add_detection_commands(stage) -> None:
    """The detection stages' commands (``stage(name, function, help)`` adds one)."""
    sub = stage("detection_cases", cmd_detection_cases, "detection: cases table and volumes, checked")
    for option in ("--images-dir", "--cases", "--out", "--lesions-out"):
        sub.add_argument(option, required=True)
    sub = stage("detection_preprocessing", cmd_detection_preprocessing,
                "detection: resample, normalise and crop every case for the networks")
    for option in ("--cases", "--out", "--table-out"):
        sub.add_argument(option, required=True)
    sub = stage("detection_splits", cmd_detection_splits, "detection: folds stratified by lesion load")
    for option in ("--cases", "--out"):
        sub.add_argument(option, required=True)
    sub = stage("detection_training", cmd_detection_training, "detection: train one model x input x fold")
    for option in ("--volumes", "--cases", "--folds", "--model", "--input", "--out-dir"):
        sub.add_argument(option, required=True)
    sub.add_argument("--fold", type=int, required=True)
    sub = stage("detection_inference", cmd_detection_inference,
                "detection: out-of-fold and fold-ensemble probability maps on each case's grid")
    sub.add_argument("checkpoints", nargs="+", help=f"{paths.CHECKPOINT_FILE} of each fold")
    for option in ("--volumes", "--cases", "--model", "--input", "--out"):
        sub.add_argument(option, required=True)
    sub.add_argument("--folds", help="folds of the splits stage (absent in audit mode: all external)")
    sub = stage("detection_candidates", cmd_detection_candidates, "detection: candidates of the maps, matched")
    for option in ("--maps", "--cases", "--out", "--lesions-out"):
        sub.add_argument(option, required=True)
    sub = stage("detection_readers", cmd_detection_readers, "detection: readers' marks, matched")
    for option in ("--marks", "--cases", "--out", "--lesions-out"):
        sub.add_argument(option, required=True)
    sub = stage("detection_evaluation", cmd_detection_evaluation,
                "detection: FROC, CPM, operating point, size bands, case AUC, readers")
    sub.add_argument("--cases", required=True)
    sub.add_argument("--candidates", nargs="+", required=True, help="candidates of every model x input, in order")
    sub.add_argument("--lesions", nargs="+", required=True, help="lesion hits of every model x input, in order")
    sub.add_argument("--reader-marks")
    sub.add_argument("--reader-lesions")
    sub.add_argument("--bundle-card", help="audit mode: the bundle's model card (its operating thresholds)")
    sub.add_argument("--out-dir", required=True)
    sub = stage("detection_figures", cmd_detection_figures, "detection: FROC, examples, training curves, cohort")
    for option in ("--cases", "--lesions", "--tables-dir", "--out-dir", "--cohort-out"):
        sub.add_argument(option, required=True)
    for option in ("--candidates", "--lesion-hits", "--maps"):
        sub.add_argument(option, nargs="+", required=True)
    sub.add_argument("--histories", nargs="*", default=[])
    sub = stage("detection_bundle", cmd_detection_bundle, "detection: release the fold models")
    sub.add_argument("checkpoints", nargs="+")
    for option in ("--cases", "--operating-points", "--summary", "--out-dir"):
        sub.add_argument(option, required=True)
    sub = stage("detection_audit_verify", cmd_detection_audit_verify,
                "detection: check a released bundle and the audit cohort")
    for option in ("--bundle", "--cases", "--out"):
        sub.add_argument(option, required=True)
    sub = stage("detection_provenance", cmd_detection_provenance, "detection: the provenance record")
    sub.add_argument("outputs", nargs="*")
    for option in ("--detection-cases", "--cases", "--results-dir", "--out"):
        sub.add_argument(option, required=True)
    sub.add_argument("--marks")
    sub = stage("detection_demo_readers", cmd_detection_demo_readers,
                "detection demo: synthetic readers' marks on the brain-metastasis demo")
    for option in ("--images-dir", "--cases", "--out"):
        sub.add_argument(option, required=True)


# --- issue 15: reader study, paired comparisons, calibration, subgroups, participant flow,
# reporting checklist, distribution shift --------------------------------------------------

def cmd_demo_reader_study(args, config):
    from spinedx.stages import demo_reader_study
    demo_reader_study.main_stage(config, args.case_predictions, args.table3, args.out)


def cmd_reader_study(args, config):
    from spinedx.stages import reader_study
    reader_study.main_stage(config, args.readers, args.cases, args.case_predictions, args.table3, args.metrics,
                            args.mrmc, args.decisions, args.figure)


def cmd_demo_multiclass_reader_study(args, config):
    from spinedx.stages import multiclass_reader_study
    multiclass_reader_study.demo_stage(config, args.case_predictions, args.overall, args.out)


def cmd_multiclass_reader_study(args, config):
    from spinedx.stages import multiclass_reader_study
    multiclass_reader_study.main_stage(config, args.readers, args.cases, args.case_predictions, args.overall,
                                       args.metrics, args.per_class, args.gain, args.mrmc, args.decisions, args.figure)


def cmd_comparisons(args, config):
    from spinedx.stages import comparisons
    comparisons.main_stage(config, args.case_predictions, args.out, args.fusion)


def cmd_multiclass_comparisons(args, config):
    from spinedx.stages import comparisons
    comparisons.multiclass_main_stage(config, args.case_predictions, args.out, args.fusion)


def cmd_image_comparisons(args, config):
    from spinedx.stages import comparisons
    comparisons.image_main_stage(config, args.image_predictions, args.out)


def cmd_calibration(args, config):
    from spinedx.stages import calibration
    calibration.main_stage(config, args.case_predictions, args.table3, args.summary, args.curve, args.decision_curve,
                           args.calibration_figure, args.decision_curve_figure)


def cmd_multiclass_calibration(args, config):
    from spinedx.stages import calibration
    calibration.multiclass_main_stage(config, args.case_predictions, args.overall, args.summary, args.curve,
                                      args.calibration_figure, args.decision_curve, args.decision_curve_figure,
                                      args.image_predictions)


def cmd_subgroups(args, config):
    from spinedx.stages import subgroups
    subgroups.main_stage(config, args.cases, args.images, args.images_dir, args.case_predictions, args.table3,
                         args.out, args.figure, args.overall, args.image_predictions)


def cmd_participant_flow(args, config):
    from spinedx.stages import participant_flow
    participant_flow.main_stage(config, args.cases, args.images, args.excluded, args.case_predictions, args.out,
                                args.figure, args.folds, args.readers, args.image_predictions)


def cmd_detection_participant_flow(args, config):
    from spinedx.stages import participant_flow
    participant_flow.detection_main_stage(config, args.cases, args.lesion_hits, args.out, args.figure, args.folds,
                                          args.reader_lesions)


def cmd_detection_subgroups(args, config):
    from spinedx.stages import subgroups
    subgroups.detection_main_stage(config, args.cases, args.candidates, args.lesions, args.summary,
                                   args.operating_points, args.out, args.figure)


def cmd_reporting_checklist(args, config):
    from spinedx.stages import reporting_checklist
    reporting_checklist.main_stage(args.results_dir, args.outputs, args.out, not args.no_reader_study)


def cmd_shift_reference(args, config):
    from spinedx.stages import distribution_shift
    distribution_shift.reference_stage(config, args.checkpoints, args.caches, args.images, args.folds, args.out)


def cmd_distribution_shift(args, config):
    from spinedx.stages import distribution_shift
    distribution_shift.audit_stage(config, args.checkpoints, args.references, args.caches, args.images, args.table,
                                   args.summary, args.figure)


def add_issue15_stages(stage) -> None:
    """The parsers of the issue-15 stages (``stage(name, function, help)`` adds one)."""
    predictions = dict(nargs="+", required=True, help="case_level outputs (parquet)")
    # Labels of images (no case level): the ensembled image predictions instead.
    case_or_image = dict(nargs="*", default=[], help="case_level outputs (parquet; or --image-predictions)")
    image_predictions = dict(nargs="*", default=[], help="ensembling outputs (parquet), where labels belong to images")
    table3 = dict(required=True, help=f"{paths.table_file(paths.TABLE3_CASE_LEVEL)} (chooses the final backbone)")
    sub = stage("demo_reader_study", cmd_demo_reader_study, "simulate the built-in demo reader study (readers.csv)")
    sub.add_argument("--case-predictions", **predictions)
    sub.add_argument("--table3", **table3)
    sub.add_argument("--out", required=True)
    sub = stage("reader_study", cmd_reader_study, "reader study: per reader metrics, MRMC (OR-Hillis), figure")
    for option in ("--readers", "--cases", "--metrics", "--mrmc", "--decisions"):
        sub.add_argument(option, required=True)
    sub.add_argument("--case-predictions", **predictions)
    sub.add_argument("--table3", **table3)
    sub.add_argument("--figure", required=True, help="figure stem (PDF and PNG)")
    overall = dict(required=True, help=f"{paths.table_file(paths.MULTICLASS_OVERALL)} (chooses the final backbone)")
    sub = stage("demo_multiclass_reader_study", cmd_demo_multiclass_reader_study,
                "simulate the built-in N-class demo reader study (readers.csv)")
    sub.add_argument("--case-predictions", **predictions)
    sub.add_argument("--overall", **overall)
    sub.add_argument("--out", required=True)
    sub = stage("multiclass_reader_study", cmd_multiclass_reader_study,
                "N-class reader study: per reader and experience group, gain, MRMC on accuracy, figure")
    for option in ("--readers", "--cases", "--metrics", "--per-class", "--gain", "--mrmc", "--decisions"):
        sub.add_argument(option, required=True)
    sub.add_argument("--case-predictions", **predictions)
    sub.add_argument("--overall", **overall)
    sub.add_argument("--figure", required=True, help="figure stem (PDF and PNG)")
    for name, function, help_text in (
            ("comparisons", cmd_comparisons, "paired comparisons: DeLong, McNemar, adjusted p"),
            ("multiclass_comparisons", cmd_multiclass_comparisons,
             "N classes: paired accuracy (McNemar), per-class AUC (DeLong) and sensitivity (McNemar)")):
        sub = stage(name, function, help_text)
        sub.add_argument("--case-predictions", **predictions)
        sub.add_argument("--fusion", nargs="*", default=[], help="case-level fusion predictions (parquet), if any")
        sub.add_argument("--out", required=True)
    sub = stage("image_comparisons", cmd_image_comparisons,
                "labels of images: paired accuracy, per-class AUC and sensitivity, difference bootstrapped over dogs")
    sub.add_argument("--image-predictions", nargs="+", required=True, help="ensembling outputs (parquet)")
    sub.add_argument("--out", required=True)
    sub = stage("calibration", cmd_calibration, "calibration curves, intercept, slope, Brier; decision curves")
    sub.add_argument("--case-predictions", **predictions)
    sub.add_argument("--table3", **table3)
    for option in ("--summary", "--curve", "--decision-curve", "--calibration-figure", "--decision-curve-figure"):
        sub.add_argument(option, required=True)
    sub = stage("multiclass_calibration", cmd_multiclass_calibration,
                "N classes: one-vs-rest calibration per class, multi-class Brier score, decision curves")
    sub.add_argument("--case-predictions", **case_or_image)
    sub.add_argument("--image-predictions", **image_predictions)
    sub.add_argument("--overall", **overall)
    for option in ("--summary", "--curve", "--calibration-figure"):
        sub.add_argument(option, required=True)
    sub.add_argument("--decision-curve",
                     help="decision-curve table (one-vs-rest per class; cases, or images with --image-predictions)")
    sub.add_argument("--decision-curve-figure", help="decision-curve figure stem (PDF and PNG)")
    sub = stage("subgroups", cmd_subgroups, "per-subgroup metrics of the final system and a forest plot")
    for option in ("--cases", "--images", "--images-dir", "--out", "--figure"):
        sub.add_argument(option, required=True)
    sub.add_argument("--table3", help=f"{paths.table_file(paths.TABLE3_CASE_LEVEL)} (two classes: chooses the final "
                     "backbone)")
    sub.add_argument("--overall", help=f"{paths.table_file(paths.MULTICLASS_OVERALL)} (N classes: chooses the final "
                     "backbone)")
    sub.add_argument("--case-predictions", **case_or_image)
    sub.add_argument("--image-predictions", **image_predictions)
    sub = stage("participant_flow", cmd_participant_flow, "STARD participant flow: table and diagram")
    for option in ("--cases", "--images", "--out", "--figure"):
        sub.add_argument(option, required=True)
    sub.add_argument("--excluded", nargs="+", required=True, help="exclusion records of the annotations stage")
    sub.add_argument("--case-predictions", **case_or_image)
    sub.add_argument("--image-predictions", **image_predictions)
    sub.add_argument("--folds", help="folds of the splits stage (absent in audit mode)")
    sub.add_argument("--readers", help="readers.csv of the reader study, if any")
    sub = stage("detection_participant_flow", cmd_detection_participant_flow,
                "detection studies: STARD participant flow (patients, volumes, lesions)")
    for option in ("--cases", "--out", "--figure"):
        sub.add_argument(option, required=True)
    sub.add_argument("--lesion-hits", nargs="+", required=True, help="lesion tables of the candidates stage")
    sub.add_argument("--folds", help="folds of the detection_splits stage")
    sub.add_argument("--reader-lesions", help="the readers' lesion table, if any")
    sub = stage("detection_subgroups", cmd_detection_subgroups,
                "detection studies: lesion sensitivity and FPs per case per subgroup, forest plot")
    for option in ("--cases", "--summary", "--operating-points", "--out", "--figure"):
        sub.add_argument(option, required=True)
    sub.add_argument("--candidates", nargs="+", required=True, help="candidate tables (every model x input)")
    sub.add_argument("--lesions", nargs="+", required=True, help="lesion tables (every model x input)")
    sub = stage("reporting_checklist", cmd_reporting_checklist, "STARD, TRIPOD+AI, CLAIM items -> the study's files")
    sub.add_argument("outputs", nargs="*", help="the study's output files")
    sub.add_argument("--results-dir", required=True)
    sub.add_argument("--no-reader-study", action="store_true",
                     help="the study is designed without a reader study (labels of images)")
    sub.add_argument("--out", required=True)
    job_inputs = {"--caches": "the cache each model x sequence reads (labelme: the sequence's preprocessing cache; "
                               "volumes: the input mode's), config order",
                  "--images": "the image table of each model x sequence (labelme: the images table; volumes: the "
                              "input mode's crops table), config order"}
    sub = stage("shift_reference", cmd_shift_reference, "the training cohort's distribution-shift reference")
    sub.add_argument("checkpoints", nargs="+", help=f"{paths.CHECKPOINT_FILE} of every model x sequence x fold")
    for option, text in job_inputs.items():
        sub.add_argument(option, nargs="+", required=True, help=text)
    sub.add_argument("--folds", required=True)
    sub.add_argument("--out", nargs="+", required=True, help="one reference per model x sequence (config order)")
    sub = stage("distribution_shift", cmd_distribution_shift, "audit mode: the new cohort against the training cohort")
    sub.add_argument("checkpoints", nargs="+", help="the bundle's fold models")
    sub.add_argument("--references", nargs="+", required=True,
                     help="the bundle's shift references, one per model x sequence (config order)")
    for option, text in job_inputs.items():
        sub.add_argument(option, nargs="+", required=True, help=text)
    for option in ("--table", "--summary", "--figure"):
        sub.add_argument(option, required=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spinedx", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config file (defaults from the schema)")
    common.add_argument("--settings", help="JSON of config sections, merged over --config; without --config "
                        "the stage may read only these sections")
    common.add_argument("--log-level", default="INFO")
    stages = parser.add_subparsers(dest="stage", required=True, metavar="stage")

    def stage(name, function, help_text):
        sub = stages.add_parser(name, parents=[common], help=help_text)
        sub.set_defaults(function=function)
        return sub

    stage("config", cmd_config, "print the resolved configuration")
    sub = stage("demo_cohort", cmd_demo_cohort, "generate the built-in synthetic cohort")
    sub.add_argument("--images-dir", required=True)
    sub.add_argument("--cases", required=True)
    sub = stage("annotations", cmd_annotations, "tabulate labelme annotations (one sequence or all)")
    sub.add_argument("--images-dir", required=True)
    sub.add_argument("--cases", required=True)
    sub.add_argument("--sequence")
    sub.add_argument("--out", required=True)
    sub.add_argument("--excluded", help="write the record of what the table leaves out (csv), for the participant flow")
    sub = stage("merge_annotations", cmd_merge_annotations, "concatenate per-sequence image tables")
    sub.add_argument("tables", nargs="+")
    sub.add_argument("--images-dir")
    sub.add_argument("--out", required=True)
    sub = stage("preprocessing", cmd_preprocessing, "crop/resize images into a uint8 cache")
    sub.add_argument("--images", required=True, help="image table (parquet) of the annotations stage")
    sub.add_argument("--images-dir", required=True)
    sub.add_argument("--out", required=True)
    sub = stage("volume_preprocessing", cmd_volume_preprocessing,
                "volume studies: resample, intensity recipe, crops of one input mode into a float32 cache")
    sub.add_argument("--images", required=True, help="annotations table (parquet) of one sequence")
    sub.add_argument("--images-dir", required=True)
    sub.add_argument("--mode", required=True, choices=["2d", "2.5d", "3d"])
    sub.add_argument("--out", required=True, help="cache (.npz) to write")
    sub.add_argument("--crops", required=True, help="crops table (parquet) to write")
    sub = stage("mode_comparison", cmd_mode_comparison,
                "volume studies: input modes compared on the same cases (table 4, DeLong, ROC figure)")
    sub.add_argument("--case-predictions", nargs="+", required=True, help="case_level outputs (parquet)")
    sub.add_argument("--table", required=True, help=f"{paths.table_file(paths.INPUT_MODES_TABLE)} to write")
    sub.add_argument("--tests", required=True, help=f"{paths.table_file(paths.INPUT_MODES_TESTS_TABLE)} to write")
    sub.add_argument("--figure", required=True, help="figure stem (PDF and PNG)")
    sub = stage("splits", cmd_splits, "patient-grouped stratified folds of the internal cohort")
    sub.add_argument("--cases", required=True)
    sub.add_argument("--out", required=True)
    sub = stage("training", cmd_training, "train one backbone x sequence x fold model")
    for option in ("--cache", "--images", "--folds", "--backbone", "--sequence", "--out-dir"):
        sub.add_argument(option, required=True)
    sub.add_argument("--fold", type=int, required=True)
    sub.add_argument("--pretrained-record", help="resolved initial weights (stage pretrained_weights)")
    sub = stage("pretrained_weights", cmd_pretrained_weights,
                "fetch/check one backbone's pretrained weights once; record source and sha256")
    sub.add_argument("--backbone", required=True)
    sub.add_argument("--out", required=True)
    sub = stage("training_folds", cmd_training_folds,
                "train the fold models of one backbone (x sequences) in one job, one forked worker per fold")
    for option in ("--folds", "--backbone"):
        sub.add_argument(option, required=True)
    for option in ("--sequences", "--caches", "--images", "--out-dirs", "--logs"):
        sub.add_argument(option, nargs="+", required=True)
    sub.add_argument("--fold-ids", type=int, nargs="+", required=True)
    sub.add_argument("--workers", type=int, default=1, help="folds trained at the same time")
    sub.add_argument("--pretrained-record", help="resolved initial weights (stage pretrained_weights)")
    sub = stage("inference", cmd_inference, "score external and validation images with each fold model")
    sub.add_argument("checkpoints", nargs="+", help=f"{paths.CHECKPOINT_FILE} of each fold")
    for option in ("--cache", "--images", "--out"):
        sub.add_argument(option, required=True)
    sub.add_argument("--folds", help="folds of the splits stage (absent in audit mode: all external)")
    sub = stage("ensembling", cmd_ensembling, "fold models -> ensemble and out-of-fold predictions")
    sub.add_argument("predictions", help="fold predictions (parquet) of the inference stage")
    sub.add_argument("--backbone", required=True)
    sub.add_argument("--out", required=True)
    sub = stage("case_level", cmd_case_level, "image -> case probabilities per sequence and ALL")
    sub.add_argument("predictions", nargs="+")
    sub.add_argument("--out", required=True)
    sub = stage("evaluation", cmd_evaluation, "metrics tables (table 2, table 3, fold 2x2)")
    sub.add_argument("--image-predictions", nargs="+", required=True)
    sub.add_argument("--case-predictions", nargs="+", required=True)
    sub.add_argument("--out-dir", required=True)
    sub = stage("meta_analysis", cmd_meta_analysis, "bivariate Bayesian meta-analysis of fold Se/Sp (figures 4, 5)")
    sub.add_argument("--fold-2x2", required=True, help=f"{paths.table_file(paths.FOLD_2X2)} of the evaluation stage")
    sub.add_argument("--out", required=True, help=f"{paths.table_file(paths.META_ANALYSIS_TABLE)} to write")
    sub.add_argument("--figures-dir", required=True,
                     help=f"folder for {paths.forest_figure('<input>')} and {paths.SROC_FIGURE}")
    sub = stage("bundle", cmd_bundle, f"release the fold models: checkpoints, model card, {paths.BUNDLE_MANIFEST}")
    sub.add_argument("checkpoints", nargs="+", help=f"{paths.CHECKPOINT_FILE} of every backbone x sequence x fold")
    for option in ("--images", "--out-dir"):
        sub.add_argument(option, required=True)
    sub.add_argument("--shift-references", nargs="*", default=[],
                     help="distribution-shift references, one per backbone x sequence (config order)")
    sub.add_argument("--external-metrics", help=f"two classes: {paths.table_file(paths.TABLE3_CASE_LEVEL)}")
    sub.add_argument("--internal-metrics", help=f"two classes: {paths.table_file(paths.INTERNAL_CV_CASE_LEVEL)}")
    sub.add_argument("--multiclass-metrics", help=f"more classes: {paths.table_file(paths.MULTICLASS_OVERALL)}")
    sub = stage("provenance", cmd_provenance, "the provenance record: inputs, config, code, packages, outputs")
    sub.add_argument("outputs", nargs="*", help="output files to record besides tables/ and figures/")
    sub.add_argument("--pretrained-records", nargs="*", default=[],
                     help="records of the pretrained weights (stage pretrained_weights)")
    for option in ("--images", "--cases", "--results-dir", "--out"):
        sub.add_argument(option, required=True)
    sub = stage("audit", cmd_audit, "score a new cohort with a released bundle (no training)")
    sub.add_argument("--bundle", required=True, help="bundle folder (results/bundle of the study)")
    sub.add_argument("--verify-only", action="store_true",
                     help="only check the bundle's hashes (and, with --images, the new cohort)")
    sub.add_argument("--images", help="with --verify-only: annotations table of the new cohort")
    sub.add_argument("--out", help="with --verify-only: write the summary here")
    sub.add_argument("--images-dir", help="the new cohort's annotation tree")
    sub.add_argument("--cases", help="the new cohort's cases.csv (cohort column optional)")
    sub.add_argument("--results-dir", help="folder for the audit's results")
    sub.add_argument("--cores", type=int, default=1)
    sub.add_argument("snakemake_args", nargs="*", help="extra Snakemake options, after --")
    sub = stage("figures", cmd_figures, "figures 3 and 6, training curves, table 1 (cohort)")
    sub.add_argument("--image-predictions", nargs="*", default=[], help="ensembling outputs (parquet; two classes)")
    sub.add_argument("--case-predictions", nargs="*", default=[], help="case_level outputs (parquet; two classes)")
    sub.add_argument("--table2", help=paths.table_file(paths.TABLE2_IMAGE_LEVEL) + " (two classes)")
    sub.add_argument("--table3", help=paths.table_file(paths.TABLE3_CASE_LEVEL) + " (two classes)")
    sub.add_argument("--histories", nargs="*", default=[],
                     help=f"{paths.HISTORY_FILE} of every fold model (none in audit mode: no curves)")
    sub.add_argument("--cases", required=True, help="cases table (csv)")
    sub.add_argument("--images", required=True, help="image table (parquet) of the annotations stage")
    sub.add_argument("--out-dir", required=True, help="figures folder")
    sub.add_argument("--table1", required=True, help=f"{paths.table_file(paths.COHORT_TABLE)} to write")
    sub = stage("fusion", cmd_fusion, "clinical fusion: stacked image + covariate models (internal OOF/validation fit)")
    sub.add_argument("case_predictions", nargs="+", help="case_level outputs (parquet) of every backbone")
    sub.add_argument("--cases", required=True, help="cases table (csv) with the declared covariates")
    sub.add_argument("--out", required=True, help="fused test predictions (parquet)")
    sub.add_argument("--coefficients", required=True, help=paths.table_file(paths.FUSION_COEFFICIENTS))
    sub = stage("multiclass_evaluation", cmd_multiclass_evaluation,
                "N-class tables: per class, overall, confusion, reference class, repeats, fusion")
    sub.add_argument("--image-predictions", nargs="+", required=True, help="ensembling outputs (parquet)")
    sub.add_argument("--case-predictions", nargs="*", default=[], help="case_level outputs (labels from cases)")
    sub.add_argument("--fusion-predictions", help="fusion stage output (parquet), with clinical fusion")
    sub.add_argument("--out-dir", required=True, help="tables folder")
    sub = stage("multiclass_figures", cmd_multiclass_figures, "N-class figures: ROC per class, confusion, F1, fusion")
    sub.add_argument("--tables-dir", required=True, help="tables folder of the multiclass_evaluation stage")
    sub.add_argument("--image-predictions", nargs="+", required=True, help="ensembling outputs (parquet)")
    sub.add_argument("--case-predictions", nargs="*", default=[], help="case_level outputs (labels from cases)")
    sub.add_argument("--fusion", action="store_true", help="draw the fusion comparison (clinical fusion ran)")
    sub.add_argument("--out-dir", required=True, help="figures folder")
    sub = stage("report_metadata", cmd_report_metadata, "resolved config and software versions for the report")
    sub.add_argument("--config-out", required=True)
    sub.add_argument("--versions-out", required=True)
    sub = stage("gradcam", cmd_gradcam, "Grad-CAM of the external images, mean of the fold models (figure 7)")
    sub.add_argument("checkpoints", nargs="+", help=f"{paths.CHECKPOINT_FILE} of each fold")
    for option in ("--cache", "--images", "--ensemble-predictions", "--images-dir", "--backbone", "--out", "--figure"):
        sub.add_argument(option, required=True)
    add_detection_commands(stage)
    add_issue15_stages(stage)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from spinedx.runtime import scheduler_note
    note = scheduler_note()
    if note:
        log.info("%s", note)
    try:
        settings = json.loads(args.settings) if args.settings is not None else None
        config = configuration.for_stage(args.stage, args.config, settings)
        args.function(args, config)
    except (InputError, configuration.ConfigError) as error:
        print(f"spinedx {args.stage}: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:
        print(f"spinedx {args.stage}: error: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
