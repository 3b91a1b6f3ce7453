# Detection (issue 16): candidates of the maps and the readers' marks, matched to the
# lesions; the lesion-level tables (FROC, CPM, operating point, size bands, case AUC,
# readers) and the figures.
if DETECTION:

    rule detection_candidates:
        input:
            maps=P.detection_maps("{model}", "{detection_input}"),
            cases=P.detection_cases,
        output:
            candidates=P.detection_candidates("{model}", "{detection_input}"),
            lesions=P.detection_lesion_hits("{model}", "{detection_input}"),
        params:
            settings=settings("detection", "data"),
        log:
            P.log("detection_candidates", "{model}/{detection_input}"),
        benchmark:
            P.benchmark("detection_candidates", "{model}/{detection_input}")
        localrule: True
        conda:
            "../../envs/evaluation.yaml"
        shell:
            "python -m spinedx detection_candidates --settings {params.settings:q} --maps {input.maps:q}"
            " --cases {input.cases:q} --out {output.candidates:q} --lesions-out {output.lesions:q} 2> {log:q}"

    if READER_MARKS:

        rule detection_readers:
            input:
                marks=READER_MARKS,
                cases=P.detection_cases,
            output:
                marks=P.detection_reader_marks,
                lesions=P.detection_reader_lesions,
            params:
                settings=settings("detection_evaluation", "data"),
            log:
                P.log("detection_readers", "detection_readers"),
            benchmark:
                P.benchmark("detection_readers", "detection_readers")
            localrule: True
            conda:
                "../../envs/evaluation.yaml"
            shell:
                "python -m spinedx detection_readers --settings {params.settings:q} --marks {input.marks:q}"
                " --cases {input.cases:q} --out {output.marks:q} --lesions-out {output.lesions:q} 2> {log:q}"

    rule detection_evaluation:
        input:
            cases=P.detection_cases,
            candidates=per_pair(P.detection_candidates),
            lesions=per_pair(P.detection_lesion_hits),
            reader_marks=[P.detection_reader_marks] if READER_MARKS else [],
            reader_lesions=[P.detection_reader_lesions] if READER_MARKS else [],
            card=[paths.BundlePaths(AUDIT_BUNDLE).card_json] if AUDIT else [],
            verified=MODELS_VERIFIED,
        output:
            summary=report(DETECTION_TABLE_FILES[paths.DETECTION_SUMMARY], caption="../report/detection_summary.rst",
                           category="3. Lesion detection", subcategory="Summary"),
            froc=DETECTION_TABLE_FILES[paths.DETECTION_FROC],
            size_bands=report(DETECTION_TABLE_FILES[paths.DETECTION_SIZE_BANDS],
                              caption="../report/detection_size_bands.rst", category="3. Lesion detection",
                              subcategory="Lesion size"),
            readers=report(DETECTION_TABLE_FILES[paths.DETECTION_READERS], caption="../report/detection_readers.rst",
                           category="4. Readers", subcategory="Model vs readers"),
            operating_points=report(DETECTION_TABLE_FILES[paths.DETECTION_OPERATING_POINTS],
                                    caption="../report/detection_operating_points.rst",
                                    category="3. Lesion detection", subcategory="Operating points"),
        params:
            settings=settings("sequences", "detection", "detection_evaluation", "evaluation"),
            out_dir=subpath(output.summary, parent=True),
            readers=lambda wildcards, input: (f"--reader-marks {shlex.quote(input.reader_marks[0])}"
                                              f" --reader-lesions {shlex.quote(input.reader_lesions[0])}"
                                              if input.reader_marks else ""),
            card=lambda wildcards, input: f"--bundle-card {shlex.quote(input.card[0])}" if input.card else "",
        log:
            P.log("detection_evaluation", "detection_evaluation"),
        benchmark:
            P.benchmark("detection_evaluation", "detection_evaluation")
        localrule: True
        conda:
            "../../envs/evaluation.yaml"
        shell:
            "python -m spinedx detection_evaluation --settings {params.settings:q} --cases {input.cases:q}"
            " --candidates {input.candidates:q} --lesions {input.lesions:q} {params.readers} {params.card}"
            " --out-dir {params.out_dir:q} 2> {log:q}"

    rule detection_figures:
        input:
            cases=P.detection_cases,
            lesions=P.detection_lesions,
            tables=list(DETECTION_TABLE_FILES.values()),
            candidates=per_pair(P.detection_candidates),
            lesion_hits=per_pair(P.detection_lesion_hits),
            maps=per_pair(P.detection_maps),
            histories=[P.detection_history(m, i, k) for m, i in DETECTION_CURVES for k in FOLDS],
        output:
            froc=figure_report(P.figure(paths.DETECTION_FROC_FIGURE), "detection_froc.rst", "3. Lesion detection",
                               "FROC"),
            examples=[figure_report(P.figure(paths.detection_examples_figure(m, i)), "detection_examples.rst",
                                    "3. Lesion detection", "Examples", model=m, input=i) for m, i in DETECTION_PAIRS],
            curves=[figure_report(P.figure(paths.detection_curves_figure(m, i)), "detection_training_curves.rst",
                                  "2. Model development", "Training curves", model=m, input=i)
                    for m, i in DETECTION_CURVES],
            cohort=report(P.table(paths.DETECTION_COHORT), caption="../report/detection_cohort.rst",
                          category="1. Cohort", subcategory="Cohort"),
        params:
            settings=settings("sequences", "detection", "detection_evaluation", "data", "splits"),
            tables_dir=lambda wildcards, input: os.path.dirname(input.tables[0]),
            figures_dir=lambda wildcards, output: os.path.dirname(output.froc[0]),
        log:
            P.log("detection_figures", "detection_figures"),
        benchmark:
            P.benchmark("detection_figures", "detection_figures")
        localrule: True
        conda:
            "../../envs/figures.yaml"
        shell:
            "python -m spinedx detection_figures --settings {params.settings:q} --cases {input.cases:q}"
            " --lesions {input.lesions:q} --tables-dir {params.tables_dir:q} --candidates {input.candidates:q}"
            " --lesion-hits {input.lesion_hits:q} --maps {input.maps:q} --histories {input.histories:q}"
            " --out-dir {params.figures_dir:q} --cohort-out {output.cohort:q} 2> {log:q}"
