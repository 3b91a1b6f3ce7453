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
        from spinedx.stages import volume_annotations as annotations
    else:
        from spinedx.stages import annotations
    annotations.main_stage(config, args.images_dir, args.cases, args.sequence, args.out)


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
                   config, args.out_dir)


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
                        config, args.out_dir)


def cmd_provenance(args, config):
    from spinedx.stages import provenance
    provenance.main_stage(config, args.outputs, args.images, args.cases, args.results_dir, args.out)


def cmd_audit(args, config):
    from spinedx.stages import audit
    audit.main_stage(config, args)


def cmd_figures(args, config):
    from spinedx.stages import figures
    figures.main_stage(args.image_predictions, args.case_predictions, args.table2, args.table3,
                       args.histories, args.cases, args.images, config, args.out_dir, args.table1)


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
    for option in ("--images", "--external-metrics", "--internal-metrics", "--out-dir"):
        sub.add_argument(option, required=True)
    sub = stage("provenance", cmd_provenance, "the provenance record: inputs, config, code, packages, outputs")
    sub.add_argument("outputs", nargs="*", help="output files to record besides tables/ and figures/")
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
    sub.add_argument("--image-predictions", nargs="+", required=True, help="ensembling outputs (parquet)")
    sub.add_argument("--case-predictions", nargs="+", required=True, help="case_level outputs (parquet)")
    sub.add_argument("--table2", required=True, help=paths.table_file(paths.TABLE2_IMAGE_LEVEL))
    sub.add_argument("--table3", required=True, help=paths.table_file(paths.TABLE3_CASE_LEVEL))
    sub.add_argument("--histories", nargs="*", default=[],
                     help=f"{paths.HISTORY_FILE} of every fold model (none in audit mode: no curves)")
    sub.add_argument("--cases", required=True, help="cases table (csv)")
    sub.add_argument("--images", required=True, help="image table (parquet) of the annotations stage")
    sub.add_argument("--out-dir", required=True, help="figures folder")
    sub.add_argument("--table1", required=True, help=f"{paths.table_file(paths.COHORT_TABLE)} to write")
    sub = stage("report_metadata", cmd_report_metadata, "resolved config and software versions for the report")
    sub.add_argument("--config-out", required=True)
    sub.add_argument("--versions-out", required=True)
    sub = stage("gradcam", cmd_gradcam, "Grad-CAM of the external images, mean of the fold models (figure 7)")
    sub.add_argument("checkpoints", nargs="+", help=f"{paths.CHECKPOINT_FILE} of each fold")
    for option in ("--cache", "--images", "--ensemble-predictions", "--images-dir", "--backbone", "--out", "--figure"):
        sub.add_argument(option, required=True)
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
