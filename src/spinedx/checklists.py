"""Reporting guidelines as data: STARD 2015, TRIPOD+AI (2024) and CLAIM (2020), item by
item, with the kind of study output that answers each.

Item texts are short paraphrases written for this table, with the guidelines' item
numbers; they are not the guidelines' wording (read the checklists themselves: STARD
2015, Bossuyt et al., BMJ 2015;351:h5527; TRIPOD+AI, Collins et al., BMJ
2024;385:e078378; CLAIM, Mongan et al., Radiol Artif Intell 2020;2:e200029; the 2024
update of CLAIM renumbers some items).

Each item names the *evidence* that answers it: keys of :data:`EVIDENCE` (which the
reporting-checklist stage resolves to the study's own files), or :data:`AUTHOR` (what no
pipeline can know: the clinical question, registration, funding, ...) or
:data:`NOT_APPLICABLE` with the reason. Items answered only in part by the study's files
carry both (files, and what the author must add).
"""

from __future__ import annotations

AUTHOR = "author must state"
NOT_APPLICABLE = "not applicable"

#: Evidence keys and what each is (the stage maps them to files).
EVIDENCE = {
    "config": "resolved configuration of the run",
    "versions": "software versions",
    "provenance": "provenance record (inputs, outputs, code, packages, sha256)",
    "model_card": "model card of the released models",
    "annotations": "image table (every annotated image, its box and hashes)",
    "splits": "patient-grouped folds",
    "cohort": "table 1 (cohort characteristics)",
    "flow": "participant flow (table and diagram)",
    "training": "training curves and per-epoch histories",
    "internal_cv": "internal cross-validation tables",
    "image_level": "table 2 and figure 3 (image level, backbones)",
    "case_level": "table 3 and figure 6 (final system, 2x2, AUC, kappa)",
    "fold_2x2": "fold 2x2 tables",
    "meta_analysis": "meta-analysis of the fold models",
    "comparisons": "paired comparisons (DeLong, McNemar, adjusted p)",
    "calibration": "calibration (curves, intercept, slope, Brier)",
    "decision_curve": "decision curves (net benefit)",
    "subgroups": "subgroup table and forest plot",
    "reader_study": "reader study (per reader metrics, MRMC, figure)",
    "gradcam": "Grad-CAM maps and table",
    "shift": "distribution shift of the audited cohort",
}

#: Items answered by a reader study, and their status in a study designed without one
#: (labels of images: readers read cases, and such labels have none; the canine study had
#: no readers). A study that has readers but whose run produced no reader-study files
#: still falls back to the author.
WITHOUT_READER_STUDY = {
    ("STARD 2015", "13a"): NOT_APPLICABLE + ": no reader study; the index test is the model alone, its inputs are "
                           "in the resolved configuration",
    ("CLAIM", "18"): AUTHOR + ": annotator agreement (the study has no reader study to measure it)",
}

# (guideline, item, topic, paraphrase, evidence keys, what the author adds or why n/a)
ITEMS: list[tuple[str, str, str, str, tuple[str, ...], str]] = [
    # --- STARD 2015 ---------------------------------------------------------------------
    ("STARD 2015", "1", "Title or abstract", "Identify the study as a diagnostic accuracy study and name at least one accuracy measure", (), AUTHOR),
    ("STARD 2015", "2", "Abstract", "Structured summary of design, methods, results and conclusions", (), AUTHOR),
    ("STARD 2015", "3", "Introduction", "Scientific and clinical background, intended use and clinical role of the index test", ("model_card",), "clinical background"),
    ("STARD 2015", "4", "Introduction", "Objectives and hypotheses", (), AUTHOR),
    ("STARD 2015", "5", "Study design", "Prospective or retrospective data collection", (), AUTHOR),
    ("STARD 2015", "6", "Participants", "Eligibility criteria", (), AUTHOR),
    ("STARD 2015", "7", "Participants", "On what basis potentially eligible participants were identified", (), AUTHOR),
    ("STARD 2015", "8", "Participants", "Where and when eligible participants were identified (setting, places, dates)", (), AUTHOR),
    ("STARD 2015", "9", "Participants", "Consecutive, random or convenience series", (), AUTHOR),
    ("STARD 2015", "10a", "Test methods", "Index test described in enough detail to replicate it", ("config", "model_card", "versions", "provenance"), ""),
    ("STARD 2015", "10b", "Test methods", "Reference standard described in enough detail to replicate it", (), AUTHOR + " (the cases table's diagnosis, e.g. histopathology)"),
    ("STARD 2015", "11", "Test methods", "Why this reference standard was chosen", (), AUTHOR),
    ("STARD 2015", "12a", "Test methods", "Positivity cut-off of the index test, and whether pre-specified", ("config",), "whether the threshold was pre-specified"),
    ("STARD 2015", "12b", "Test methods", "Categories or cut-offs of the reference standard", (), AUTHOR),
    ("STARD 2015", "13a", "Test methods", "Information available to the index test's performers or readers", ("reader_study",), "what the readers knew (clinical data, other tests)"),
    ("STARD 2015", "13b", "Test methods", "Information available to the assessors of the reference standard", (), AUTHOR),
    ("STARD 2015", "14", "Analysis", "Methods for estimating or comparing diagnostic accuracy", ("case_level", "comparisons", "reader_study", "meta_analysis"), ""),
    ("STARD 2015", "15", "Analysis", "Handling of indeterminate index test or reference standard results", ("config",), "the model always gives a probability and a decision; indeterminate reference results"),
    ("STARD 2015", "16", "Analysis", "Handling of missing data on index test and reference standard", ("flow",), ""),
    ("STARD 2015", "17", "Analysis", "Analyses of variability in accuracy (pre-specified or exploratory)", ("subgroups", "meta_analysis"), "which were pre-specified"),
    ("STARD 2015", "18", "Analysis", "Intended sample size and how it was determined", (), AUTHOR),
    ("STARD 2015", "19", "Participants", "Flow of participants, in a diagram", ("flow",), ""),
    ("STARD 2015", "20", "Participants", "Baseline demographic and clinical characteristics", ("cohort",), ""),
    ("STARD 2015", "21a", "Participants", "Distribution of disease severity in those with the target condition", (), AUTHOR),
    ("STARD 2015", "21b", "Participants", "Distribution of alternative diagnoses in those without it", ("cohort",), "alternative diagnoses beyond the study's classes"),
    ("STARD 2015", "22", "Participants", "Time interval and interventions between index test and reference standard", (), AUTHOR),
    ("STARD 2015", "23", "Test results", "Cross tabulation of index test results by the reference standard", ("case_level", "fold_2x2"), ""),
    ("STARD 2015", "24", "Test results", "Estimates of diagnostic accuracy with their precision", ("case_level", "image_level", "internal_cv"), ""),
    ("STARD 2015", "25", "Test results", "Adverse events of the index test or reference standard", (), NOT_APPLICABLE + ": the index test is software run on existing images (the reference standard's events: author)"),
    ("STARD 2015", "26", "Discussion", "Limitations: bias, statistical uncertainty, generalisability", ("model_card",), "discussion of the study's limitations"),
    ("STARD 2015", "27", "Discussion", "Implications for practice, intended use and clinical role", ("model_card",), "implications for practice"),
    ("STARD 2015", "28", "Other", "Registration number and registry", (), AUTHOR),
    ("STARD 2015", "29", "Other", "Where the full protocol can be accessed", (), AUTHOR),
    ("STARD 2015", "30", "Other", "Funding and other support; role of funders", (), AUTHOR),
    # --- TRIPOD+AI (2024) ---------------------------------------------------------------
    ("TRIPOD+AI", "1", "Title", "Identify the study as developing or evaluating a prediction model, its population and outcome", (), AUTHOR),
    ("TRIPOD+AI", "2", "Abstract", "Abstract following TRIPOD+AI for Abstracts", (), AUTHOR),
    ("TRIPOD+AI", "3a", "Background", "Healthcare context, rationale and existing models", (), AUTHOR),
    ("TRIPOD+AI", "3b", "Background", "Target population, intended purpose in the care pathway and intended users", ("model_card",), "care pathway and users"),
    ("TRIPOD+AI", "3c", "Background", "Known health inequalities between sociodemographic groups", (), AUTHOR),
    ("TRIPOD+AI", "4", "Objectives", "Objectives, development and/or evaluation", (), AUTHOR),
    ("TRIPOD+AI", "5a", "Data", "Data sources for development and evaluation, and their representativeness", ("cohort", "flow"), "where the data come from"),
    ("TRIPOD+AI", "5b", "Data", "Dates of the participant data", (), AUTHOR),
    ("TRIPOD+AI", "6a", "Participants", "Setting, number and location of centres", ("subgroups",), "setting and centres"),
    ("TRIPOD+AI", "6b", "Participants", "Eligibility criteria", (), AUTHOR),
    ("TRIPOD+AI", "6c", "Participants", "Treatments received and how they were handled", (), AUTHOR + " (or not applicable)"),
    ("TRIPOD+AI", "7", "Data preparation", "Pre-processing and quality checks, and whether alike across groups", ("config", "annotations", "flow"), ""),
    ("TRIPOD+AI", "8a", "Outcome", "Outcome definition, how and when assessed", (), AUTHOR),
    ("TRIPOD+AI", "8b", "Outcome", "Qualifications of outcome assessors when judgement is involved", (), AUTHOR),
    ("TRIPOD+AI", "8c", "Outcome", "Blinding of outcome assessment", (), AUTHOR),
    ("TRIPOD+AI", "9a", "Predictors", "Choice of initial predictors and any pre-selection", ("config",), "why these image inputs"),
    ("TRIPOD+AI", "9b", "Predictors", "Definition of the predictors, how and when measured", ("config", "annotations"), "acquisition protocols"),
    ("TRIPOD+AI", "9c", "Predictors", "Qualifications of those measuring predictors with judgement (e.g. annotators)", (), AUTHOR + " (who drew the boxes)"),
    ("TRIPOD+AI", "10", "Sample size", "How the study size was arrived at", (), AUTHOR),
    ("TRIPOD+AI", "11", "Missing data", "Handling of missing data and reasons for omitted data", ("flow",), ""),
    ("TRIPOD+AI", "12a", "Analytical methods", "How the data were used and partitioned", ("splits", "flow", "config"), ""),
    ("TRIPOD+AI", "12b", "Analytical methods", "How predictors were handled (transformations, scaling)", ("config",), ""),
    ("TRIPOD+AI", "12c", "Analytical methods", "Model type, building steps, hyperparameter tuning, internal validation", ("config", "training", "internal_cv", "model_card"), ""),
    ("TRIPOD+AI", "12d", "Analytical methods", "Heterogeneity across clusters (e.g. centres) in parameters and performance", ("meta_analysis", "subgroups"), ""),
    ("TRIPOD+AI", "12e", "Analytical methods", "Performance measures and plots, and how models were compared", ("case_level", "calibration", "decision_curve", "comparisons"), ""),
    ("TRIPOD+AI", "12f", "Analytical methods", "Model updating arising from the evaluation", (), NOT_APPLICABLE + " unless the author updated the model"),
    ("TRIPOD+AI", "12g", "Analytical methods", "How predictions were calculated in the evaluation", ("model_card", "config", "provenance"), ""),
    ("TRIPOD+AI", "13", "Class imbalance", "Class-imbalance methods and any recalibration", ("config",), "no class-imbalance method is applied by spinedx; state it"),
    ("TRIPOD+AI", "14", "Fairness", "Approaches to model fairness", ("subgroups",), "fairness approach"),
    ("TRIPOD+AI", "15", "Model output", "Model output and how classification thresholds were set", ("config", "model_card"), ""),
    ("TRIPOD+AI", "16", "Training vs evaluation", "Differences between development and evaluation data", ("cohort", "shift"), "setting and eligibility differences"),
    ("TRIPOD+AI", "17", "Ethical approval", "Ethics committee and consent", (), AUTHOR),
    ("TRIPOD+AI", "18a", "Open science", "Funding and role of funders", (), AUTHOR),
    ("TRIPOD+AI", "18b", "Open science", "Conflicts of interest", (), AUTHOR),
    ("TRIPOD+AI", "18c", "Open science", "Where the protocol can be accessed", (), AUTHOR),
    ("TRIPOD+AI", "18d", "Open science", "Study registration", (), AUTHOR),
    ("TRIPOD+AI", "18e", "Open science", "Availability of the study data", ("provenance",), "data sharing statement"),
    ("TRIPOD+AI", "18f", "Open science", "Availability of the analytical code", ("provenance", "versions"), "where the code is published"),
    ("TRIPOD+AI", "19", "Patient and public involvement", "Patient and public involvement, or none", (), AUTHOR),
    ("TRIPOD+AI", "20a", "Participants", "Flow of participants, with and without the outcome", ("flow",), ""),
    ("TRIPOD+AI", "20b", "Participants", "Characteristics overall and per data source", ("cohort",), ""),
    ("TRIPOD+AI", "20c", "Participants", "For evaluation: predictor distributions compared with the development data", ("cohort", "shift"), ""),
    ("TRIPOD+AI", "21", "Model development", "Participants and outcome events in each analysis", ("flow", "internal_cv", "case_level"), ""),
    ("TRIPOD+AI", "22", "Model specification", "The full model, to predict for new individuals, and access restrictions", ("model_card",), "licence and access"),
    ("TRIPOD+AI", "23a", "Model performance", "Performance with confidence intervals, including key subgroups", ("case_level", "subgroups", "calibration"), ""),
    ("TRIPOD+AI", "23b", "Model performance", "Heterogeneity of performance across clusters", ("meta_analysis", "subgroups"), ""),
    ("TRIPOD+AI", "24", "Model updating", "Results of any model updating", (), NOT_APPLICABLE + " unless the author updated the model"),
    ("TRIPOD+AI", "25", "Interpretation", "Overall interpretation, including fairness", (), AUTHOR),
    ("TRIPOD+AI", "26", "Limitations", "Limitations and their effect on bias, uncertainty and generalisability", ("model_card",), "discussion of limitations"),
    ("TRIPOD+AI", "27a", "Usability", "How poor quality or missing input data should be assessed and handled", ("shift", "model_card"), "handling in practice"),
    ("TRIPOD+AI", "27b", "Usability", "Whether users interact with the inputs, and the expertise needed", ("model_card",), "e.g. that a reader draws the lesion box"),
    ("TRIPOD+AI", "27c", "Usability", "Next steps for research, applicability and generalisability", (), AUTHOR),
    # --- CLAIM (2020) -------------------------------------------------------------------
    ("CLAIM", "1", "Title/abstract", "Identify the study as using AI methods and name the technique (e.g. deep learning)", (), AUTHOR),
    ("CLAIM", "2", "Title/abstract", "Structured summary of design, methods, results and conclusions", (), AUTHOR),
    ("CLAIM", "3", "Introduction", "Scientific and clinical background, intended use and clinical role of the AI", ("model_card",), "clinical background"),
    ("CLAIM", "4", "Introduction", "Objectives and hypotheses", (), AUTHOR),
    ("CLAIM", "5", "Study design", "Prospective or retrospective", (), AUTHOR),
    ("CLAIM", "6", "Study design", "Study goal (model creation, exploratory, feasibility, non-inferiority)", (), AUTHOR),
    ("CLAIM", "7", "Data", "Data sources", ("cohort",), "institutions and archives"),
    ("CLAIM", "8", "Data", "Eligibility: how, where and when participants or studies were identified", (), AUTHOR),
    ("CLAIM", "9", "Data", "Data pre-processing steps", ("config", "annotations"), ""),
    ("CLAIM", "10", "Data", "Selection of data subsets", ("flow",), ""),
    ("CLAIM", "11", "Data", "Definitions of data elements (common data elements)", ("annotations", "config"), ""),
    ("CLAIM", "12", "Data", "De-identification methods", (), AUTHOR + " (spinedx copies no DICOM header value except the allow-listed acquisition attributes of the subgroups)"),
    ("CLAIM", "13", "Data", "Handling of missing data", ("flow",), ""),
    ("CLAIM", "14", "Ground truth", "Definition of the reference standard in detail", (), AUTHOR),
    ("CLAIM", "15", "Ground truth", "Rationale for the reference standard", (), AUTHOR),
    ("CLAIM", "16", "Ground truth", "Source of annotations; qualifications and preparation of annotators", (), AUTHOR),
    ("CLAIM", "17", "Ground truth", "Annotation tools", ("annotations",), "labelme version used"),
    ("CLAIM", "18", "Ground truth", "Inter- and intra-rater variability and how discrepancies were resolved", ("reader_study",), "annotator agreement"),
    ("CLAIM", "19", "Data partitions", "Intended sample size and how it was determined", (), AUTHOR),
    ("CLAIM", "20", "Data partitions", "How data were assigned to partitions, with proportions", ("splits", "flow", "config"), ""),
    ("CLAIM", "21", "Data partitions", "Level at which partitions are disjoint (image, patient, institution)", ("splits", "config"), ""),
    ("CLAIM", "22", "Model", "Model description: inputs, outputs, layers and connections", ("config", "model_card"), ""),
    ("CLAIM", "23", "Model", "Software libraries, frameworks and packages", ("versions",), ""),
    ("CLAIM", "24", "Model", "Initialisation of parameters (random, transfer learning)", ("config",), ""),
    ("CLAIM", "25", "Training", "Training details: augmentation, hyperparameters, number of models", ("config", "training"), ""),
    ("CLAIM", "26", "Training", "How the final model was selected", ("config", "training", "case_level"), ""),
    ("CLAIM", "27", "Training", "Ensembling techniques", ("config", "model_card"), ""),
    ("CLAIM", "28", "Evaluation", "Performance metrics", ("case_level", "image_level"), ""),
    ("CLAIM", "29", "Evaluation", "Statistical measures of significance and uncertainty", ("case_level", "comparisons", "reader_study"), ""),
    ("CLAIM", "30", "Evaluation", "Robustness or sensitivity analyses", ("subgroups", "meta_analysis", "shift"), ""),
    ("CLAIM", "31", "Evaluation", "Explainability methods and how they were validated", ("gradcam",), "validation of the maps"),
    ("CLAIM", "32", "Evaluation", "Validation on external data", ("case_level", "image_level"), ""),
    ("CLAIM", "33", "Results", "Flow of participants or cases in a diagram", ("flow",), ""),
    ("CLAIM", "34", "Results", "Demographic and clinical characteristics per partition", ("cohort",), ""),
    ("CLAIM", "35", "Results", "Performance of the final model(s) on every partition", ("internal_cv", "case_level", "image_level"), ""),
    ("CLAIM", "36", "Results", "Estimates of diagnostic accuracy with their precision", ("case_level",), ""),
    ("CLAIM", "37", "Results", "Failure analysis of misclassified cases", ("gradcam", "subgroups"), "review of the errors"),
    ("CLAIM", "38", "Discussion", "Limitations: bias, uncertainty, generalisability", ("model_card",), "discussion of limitations"),
    ("CLAIM", "39", "Discussion", "Implications for practice, intended use and clinical role", ("model_card",), "implications for practice"),
    ("CLAIM", "40", "Other", "Registration number and registry", (), AUTHOR),
    ("CLAIM", "41", "Other", "Where the full protocol can be accessed", (), AUTHOR),
    ("CLAIM", "42", "Other", "Funding and role of funders", (), AUTHOR),
]

#: Items per guideline, for the tests.
ITEM_COUNTS = {"STARD 2015": 34, "TRIPOD+AI": 52, "CLAIM": 42}
