"""Every output path of a study, decided here once.

The Snakemake rules (``workflow/rules/*.smk``) and the package both ask this module, so
no file or folder name of an output is spelled twice. A stage that writes into a folder
its rule names (``--out-dir``) takes the file names inside it from here too, so the
rule's declared outputs and the files the stage writes cannot drift apart.

Strings with ``{wildcards}`` pass through unchanged, so the rules build their patterns
with the same functions: ``StudyPaths("results").checkpoint("{backbone}", "{sequence}",
"{fold}")``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The checkout holding the Snakefile, ``R/`` and ``workflow/`` (git commit of the code).
REPO_DIR = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = REPO_DIR
#: The R code of the meta-analysis (``SPINEDX_R_DIR`` overrides it for an installed package).
R_DIR = Path(os.environ.get("SPINEDX_R_DIR", REPO_DIR / "R"))

# --- names inside folders -------------------------------------------------------------

#: One fold model's folder (training): the selected weights, the per-epoch history, the
#: resolved config beside them, and the per-epoch resume state (removed when done).
CHECKPOINT_FILE = "best.pt"
HISTORY_FILE = "history.tsv"
JOB_CONFIG_FILE = "config.yaml"
RESUME_FILE = "last.pt"

#: The evaluation stage's tables (``tables/<name>.csv``), in the order it writes them.
TABLE2_IMAGE_LEVEL = "table2_image_level"
TABLE3_CASE_LEVEL = "table3_case_level"
FOLD_2X2 = "fold_2x2"
INTERNAL_CV_IMAGE_LEVEL = "internal_cv_image_level"
INTERNAL_CV_CASE_LEVEL = "internal_cv_case_level"
EVALUATION_TABLES = (TABLE2_IMAGE_LEVEL, TABLE3_CASE_LEVEL, FOLD_2X2, INTERNAL_CV_IMAGE_LEVEL,
                     INTERNAL_CV_CASE_LEVEL)
COHORT_TABLE = "table1_cohort"
META_ANALYSIS_TABLE = "meta_analysis"

#: Figures: every figure is a PDF (print) and a PNG (screens and the report) of one stem.
FIGURE_SUFFIXES = (".pdf", ".png")
ROC_BACKBONES_FIGURE = "fig3_roc_backbones"
FINAL_SYSTEM_FIGURE = "fig6_final_system"
SROC_FIGURE = "fig5_sroc"

#: N-class study shapes (issue 13): the tables of the multiclass_evaluation stage and of
#: the fusion stage, and the figures of the multiclass_figures stage.
MULTICLASS_PER_CLASS = "multiclass_per_class"
MULTICLASS_OVERALL = "multiclass_overall"
MULTICLASS_CONFUSION = "multiclass_confusion"
MULTICLASS_REFERENCE = "multiclass_reference_class"
MULTICLASS_REPEATS = "multiclass_holdout_repeats"
MULTICLASS_TABLES = (MULTICLASS_PER_CLASS, MULTICLASS_OVERALL, MULTICLASS_CONFUSION, MULTICLASS_REFERENCE,
                     MULTICLASS_REPEATS)
FUSION_COMPARISON = "fusion_comparison"
FUSION_COEFFICIENTS = "fusion_coefficients"
MULTICLASS_ROC_FIGURE = "fig_multiclass_roc"
MULTICLASS_CONFUSION_FIGURE = "fig_multiclass_confusion"
MULTICLASS_F1_FIGURE = "fig_multiclass_f1"
FUSION_FIGURE = "fig_fusion_comparison"

#: Model names of each split scheme (config splits.scheme): fold<k> or holdout<r>; the
#: model folders, the bundle's files and the prediction tables' ``model`` column use them.
MODEL_PREFIX = {"kfold": "fold", "holdout": "holdout"}
#: Volume studies (issue 14): the comparison of input modes (stage mode_comparison).
INPUT_MODES_TABLE = "table4_input_modes"
INPUT_MODES_TESTS_TABLE = "table4_input_modes_delong"
ROC_INPUT_MODES_FIGURE = "fig8_roc_input_modes"

#: Folders of the results whose every file the provenance record hashes.
RECORDED_FOLDERS = ("tables", "figures")

#: A released bundle, relative to its folder (bundle stage writes it, audit mode reads it).
BUNDLE_CARD_JSON = "model_card.json"
BUNDLE_CARD_MD = "model_card.md"
BUNDLE_MANIFEST = "SHA256SUMS"
BUNDLE_MODELS_DIR = "models"


# --- issue 15: reader studies, paired comparisons, calibration, subgroups, participant
# flow, reporting checklist, distribution shift (names of tables and figures) -----------

#: The reader study: per reader x condition metrics, the MRMC analyses, its figure.
READER_METRICS_TABLE = "reader_study_metrics"
READER_MRMC_TABLE = "reader_study_mrmc"
READER_DECISIONS_TABLE = "reader_study_decisions"
READER_ROC_FIGURE = "reader_study_roc"
#: N-class reader studies besides the tables above: per-class sensitivity, the gain of a
#: later condition (aided) over the first per experience group, the accuracy figure.
READER_PER_CLASS_TABLE = "reader_study_per_class"
READER_GAIN_TABLE = "reader_study_gain"
READER_ACCURACY_FIGURE = "reader_study_accuracy"
#: Paired comparisons of backbones, inputs and fusion (DeLong, McNemar, adjusted p).
COMPARISONS_TABLE = "paired_comparisons"
#: Calibration and clinical utility.
CALIBRATION_TABLE = "calibration"
CALIBRATION_CURVE_TABLE = "calibration_curve"
DECISION_CURVE_TABLE = "decision_curve"
CALIBRATION_FIGURE = "calibration_curve"
DECISION_CURVE_FIGURE = "decision_curve"
#: Subgroups (per-level metrics and their forest plot).
SUBGROUP_TABLE = "subgroups"
SUBGROUP_FIGURE = "subgroups_forest"
#: Participant flow (STARD 2015 item 19) and the reporting checklist.
FLOW_TABLE = "participant_flow"
FLOW_FIGURE = "participant_flow"
CHECKLIST_TABLE = "reporting_checklist"
#: Distribution shift of an audited cohort against the bundle's training cohort.
SHIFT_TABLE = "distribution_shift"
SHIFT_SUMMARY_TABLE = "distribution_shift_summary"
SHIFT_FIGURE = "distribution_shift"
#: Inside a bundle: the training cohort's shift reference of each backbone x sequence.
BUNDLE_SHIFT_DIR = "shift_reference"
#: File names of the annotations stage's exclusion records and the demo reader study.
EXCLUSIONS_DIR = "excluded"
DEMO_READERS_FILE = "readers.csv"


def table_file(name: str) -> str:
    return f"{name}.csv"


def figure_files(stem: str) -> tuple[str, str]:
    """(PDF, PNG) of a figure stem (a path without suffix)."""
    pdf, png = (f"{stem}{suffix}" for suffix in FIGURE_SUFFIXES)
    return pdf, png


def figure_stem(path: str) -> str:
    """The stem of a figure file (its path without the PDF or PNG suffix)."""
    for suffix in FIGURE_SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)]
    raise ValueError(f"{path} is not a figure file ({', '.join(FIGURE_SUFFIXES)})")


def forest_figure(input_: str) -> str:
    return f"fig4_forest_{input_}"


def training_curves_figure(backbone: str, sequence: str) -> str:
    return f"training_curves_{backbone}_{sequence}"


def gradcam_figure(backbone: str, sequence: str) -> str:
    return f"fig7_gradcam_{backbone}_{sequence}"


def volume_model_name(mode: str, network: str) -> str:
    """A volume study's model: input mode and network in one name (``2.5d_resnet10t``),
    used where a labelme study uses the backbone name (folders, tables, wildcards)."""
    return f"{mode}_{network}"


def split_volume_model_name(name: str) -> tuple[str, str]:
    """(mode, network) of a :func:`volume_model_name`."""
    mode, separator, network = name.partition("_")
    if not separator or not network:
        raise ValueError(f"{name!r} is not a volume model name (<mode>_<network>, e.g. 2.5d_resnet10t)")
    return mode, network


def shift_reference(backbone: str, sequence: str) -> str:
    """A backbone x sequence's distribution-shift reference inside a bundle (relative)."""
    return f"{BUNDLE_SHIFT_DIR}/{backbone}/{sequence}.npz"


def model_name(index, split_scheme: str = "kfold") -> str:
    """The name of model ``index`` of a split scheme: fold<k> (k-fold) or holdout<r>."""
    return f"{MODEL_PREFIX[split_scheme]}{index}"


def bundle_model(backbone: str, sequence: str, fold, split_scheme: str = "kfold") -> str:
    """A fold (or hold-out) model inside a bundle, relative to the bundle folder (POSIX
    separators)."""
    return f"{BUNDLE_MODELS_DIR}/{backbone}/{sequence}/{model_name(fold, split_scheme)}.pt"


# --- detection (issue 16): names inside folders ------------------------------------------

#: The detection tables (``tables/<name>.csv``; stage detection_evaluation, cohort table
#: detection_figures).
DETECTION_SUMMARY = "detection_summary"
DETECTION_FROC = "detection_froc"
DETECTION_SIZE_BANDS = "detection_size_bands"
DETECTION_READERS = "detection_readers"
DETECTION_OPERATING_POINTS = "detection_operating_points"
DETECTION_COHORT = "detection_cohort"
DETECTION_TABLES = (DETECTION_SUMMARY, DETECTION_FROC, DETECTION_SIZE_BANDS, DETECTION_READERS,
                    DETECTION_OPERATING_POINTS)
DETECTION_FROC_FIGURE = "fig_detection_froc"


def detection_examples_figure(model: str, input_: str) -> str:
    return f"fig_detection_examples_{model}_{input_}"


def detection_curves_figure(model: str, input_: str) -> str:
    return f"detection_training_curves_{model}_{input_}"


# --- a study's results folder -----------------------------------------------------------


class StudyPaths:
    """The files of one study under its results folder (config ``results_dir``);
    ``split_scheme`` (config ``splits.scheme``) names the models and the splits file."""

    def __init__(self, results_dir, split_scheme: str = "kfold") -> None:
        self.root = str(results_dir)
        self.split_scheme = split_scheme

    def _join(self, *parts) -> str:
        return "/".join([self.root, *map(str, parts)])

    # annotations, preprocessing, splits
    def annotations(self, sequence: str) -> str:
        return self._join("annotations", f"{sequence}.parquet")

    @property
    def images_table(self) -> str:
        return self._join("annotations", "images.parquet")

    def preprocessing_cache(self, sequence: str) -> str:
        return self._join("preprocessing", f"{sequence}.npz")

    def volume_cache(self, sequence: str, mode: str) -> str:
        """Volume studies: the model inputs of one sequence in one input mode (float32)."""
        return self._join("preprocessing", sequence, f"{mode}.npz")

    def volume_crops(self, sequence: str, mode: str) -> str:
        """Volume studies: one row per cached crop (case, slice, window in the volume)."""
        return self._join("preprocessing", sequence, f"{mode}.parquet")

    @property
    def folds(self) -> str:
        return self._join("splits", "folds.tsv")

    @property
    def holdout(self) -> str:
        return self._join("splits", "holdout.tsv")

    @property
    def splits(self) -> str:
        """The split file of this study's scheme (folds or hold-out partitions)."""
        return self.holdout if self.split_scheme == "holdout" else self.folds

    # models
    def model_dir(self, backbone: str, sequence: str, fold) -> str:
        return self._join("models", backbone, sequence, model_name(fold, self.split_scheme))

    def checkpoint(self, backbone: str, sequence: str, fold) -> str:
        return f"{self.model_dir(backbone, sequence, fold)}/{CHECKPOINT_FILE}"

    def history(self, backbone: str, sequence: str, fold) -> str:
        return f"{self.model_dir(backbone, sequence, fold)}/{HISTORY_FILE}"

    def job_config(self, backbone: str, sequence: str, fold) -> str:
        return f"{self.model_dir(backbone, sequence, fold)}/{JOB_CONFIG_FILE}"

    def pretrained_record(self, backbone: str) -> str:
        """The resolved initial weights of a backbone (source, file, sha256), written once
        before its training jobs (rule pretrained_weights)."""
        return self._join("pretrained", f"{backbone}.json")

    # predictions
    def inference(self, backbone: str, sequence: str) -> str:
        return self._join("inference", backbone, f"{sequence}.parquet")

    def ensembling(self, backbone: str, sequence: str) -> str:
        return self._join("ensembling", backbone, f"{sequence}.parquet")

    def case_level(self, backbone: str) -> str:
        return self._join("case_level", f"{backbone}.parquet")

    @property
    def fusion_predictions(self) -> str:
        """The clinical-fusion stage's test predictions (every backbone)."""
        return self._join("fusion", "predictions.parquet")

    # tables and figures
    @property
    def tables_dir(self) -> str:
        return self._join("tables")

    def table(self, name: str) -> str:
        return f"{self.tables_dir}/{table_file(name)}"

    @property
    def figures_dir(self) -> str:
        return self._join("figures")

    def figure(self, stem: str) -> str:
        """A figure's stem under figures/ (see :func:`figure_files` for its two files)."""
        return f"{self.figures_dir}/{stem}"

    def gradcam_table(self, backbone: str, sequence: str) -> str:
        return self._join("gradcam", backbone, f"{sequence}.csv")

    @property
    def report_config(self) -> str:
        return self._join("report", "config.yaml")

    @property
    def software_versions(self) -> str:
        return self._join("report", "software_versions.csv")

    # release, provenance, audit
    @property
    def bundle(self) -> "BundlePaths":
        return BundlePaths(self._join("bundle"), self.split_scheme)

    @property
    def provenance(self) -> str:
        return self._join("provenance.json")

    @property
    def audit_verified(self) -> str:
        return self._join("audit", "verified.json")

    @property
    def audit_config(self) -> str:
        """The config ``spinedx audit`` hands to the workflow, beside the audit's results."""
        return self._join("audit_config.yaml")

    # detection (issue 16): volumes, models and candidates of a detection study
    @property
    def detection_cases(self) -> str:
        """One row per case: cohort, lesion count, the volume files and their sha256."""
        return self._join("detection", "cases.parquet")

    @property
    def detection_lesions(self) -> str:
        """One row per ground-truth lesion: size, equivalent diameter, centroid."""
        return self._join("detection", "lesions.parquet")

    @property
    def detection_volumes(self) -> str:
        """The network's inputs: every case resampled, normalised, cropped (npz)."""
        return self._join("detection", "preprocessing", "volumes.npz")

    @property
    def detection_preprocessing(self) -> str:
        """What preprocessing did per case and sequence (percentile bounds, crop, grid)."""
        return self._join("detection", "preprocessing", "volumes.parquet")

    def detection_model_dir(self, model: str, input_: str, fold) -> str:
        return self._join("detection", "models", model, input_, f"fold{fold}")

    def detection_checkpoint(self, model: str, input_: str, fold) -> str:
        return f"{self.detection_model_dir(model, input_, fold)}/{CHECKPOINT_FILE}"

    def detection_history(self, model: str, input_: str, fold) -> str:
        return f"{self.detection_model_dir(model, input_, fold)}/{HISTORY_FILE}"

    def detection_job_config(self, model: str, input_: str, fold) -> str:
        return f"{self.detection_model_dir(model, input_, fold)}/{JOB_CONFIG_FILE}"

    def detection_maps(self, model: str, input_: str) -> str:
        """Probability maps on each case's own grid: out-of-fold (internal), fold mean (external)."""
        return self._join("detection", "maps", model, f"{input_}.npz")

    def detection_candidates(self, model: str, input_: str) -> str:
        """Candidates of the maps with their matching outcome."""
        return self._join("detection", "candidates", model, f"{input_}.parquet")

    def detection_lesion_hits(self, model: str, input_: str) -> str:
        """Every ground-truth lesion with the score of the candidate that found it."""
        return self._join("detection", "candidates", model, f"{input_}_lesions.parquet")

    @property
    def detection_reader_marks(self) -> str:
        """The readers' marks with their matching outcome."""
        return self._join("detection", "readers", "marks.parquet")

    @property
    def detection_reader_lesions(self) -> str:
        return self._join("detection", "readers", "lesions.parquet")

    # issue 15: exclusion records, the demo reader study, distribution shift
    def annotation_exclusions(self, sequence: str) -> str:
        """What the annotations stage left out of one sequence, with the reason."""
        return self._join("annotations", EXCLUSIONS_DIR, f"{sequence}.csv")

    @property
    def demo_readers(self) -> str:
        """The built-in demo reader study (readers.csv of the demo cohort)."""
        return self._join("demo_reader_study", DEMO_READERS_FILE)

    def shift_reference(self, backbone: str, sequence: str) -> str:
        """The training cohort's shift reference of one backbone x sequence (copied into
        the bundle)."""
        return self._join(BUNDLE_SHIFT_DIR, backbone, f"{sequence}.npz")

    # one log and one Snakemake benchmark per job
    def log(self, stage: str, name: str) -> str:
        return self._join("logs", stage, f"{name}.log")

    def benchmark(self, stage: str, name: str) -> str:
        return self._join("benchmarks", stage, f"{name}.tsv")


class BundlePaths:
    """The files of a released bundle (written by the bundle stage, read by audit mode)."""

    def __init__(self, bundle_dir, split_scheme: str = "kfold") -> None:
        self.root = str(bundle_dir)
        self.split_scheme = split_scheme

    @property
    def card_json(self) -> str:
        return f"{self.root}/{BUNDLE_CARD_JSON}"

    @property
    def card_md(self) -> str:
        return f"{self.root}/{BUNDLE_CARD_MD}"

    @property
    def manifest(self) -> str:
        return f"{self.root}/{BUNDLE_MANIFEST}"

    def model(self, backbone: str, sequence: str, fold) -> str:
        return f"{self.root}/{bundle_model(backbone, sequence, fold, self.split_scheme)}"

    def shift_reference(self, backbone: str, sequence: str) -> str:
        return f"{self.root}/{shift_reference(backbone, sequence)}"
