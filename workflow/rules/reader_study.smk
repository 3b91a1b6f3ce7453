# The reader study (stage reader_study): per reader x condition metrics, the MRMC analysis
# of the conditions and of the model against the readers, the readers-on-ROC figure. On the
# demo cohort a simulated reader study (stage demo_reader_study) stands in for readers.csv.
# Two-class studies of every shape (N-class ones: the rules at the end of this file).
if DEMO_READERS and not NCLASS_READERS:

    rule demo_reader_study:
        input:
            case_predictions=CASE_LEVEL_FILES,
            table3=EVALUATION_TABLES["table3"],
        output:
            P.demo_readers,
        params:
            settings=settings("classes", "decision", "reader_study", "figures", "backbones", *VOLUME_SECTIONS),
        log:
            P.log("reader_study", "demo_reader_study"),
        benchmark:
            P.benchmark("reader_study", "demo_reader_study")
        localrule: True
        conda:
            "../../envs/evaluation.yaml"
        shell:
            "python -m spinedx demo_reader_study --settings {params.settings:q}"
            " --case-predictions {input.case_predictions:q} --table3 {input.table3:q} --out {output:q} 2> {log:q}"


if READERS_FILE and not NCLASS_READERS:

    rule reader_study:
        input:
            readers=READERS_FILE,
            cases=CASES,
            case_predictions=CASE_LEVEL_FILES,
            table3=EVALUATION_TABLES["table3"],
        output:
            metrics=report(P.table(paths.READER_METRICS_TABLE), caption="../report/reader_study_metrics.rst",
                           category="8. Reader study", subcategory="Readers and model"),
            mrmc=report(P.table(paths.READER_MRMC_TABLE), caption="../report/reader_study_mrmc.rst",
                        category="8. Reader study", subcategory="MRMC (Obuchowski-Rockette, Hillis)"),
            decisions=report(P.table(paths.READER_DECISIONS_TABLE), caption="../report/reader_study_decisions.rst",
                             category="8. Reader study", subcategory="Decisions"),
            figure=figure_report(P.figure(paths.READER_ROC_FIGURE), "reader_study_figure.rst", "8. Reader study",
                                 "Readers on the model's ROC"),
        params:
            settings=settings("classes", "decision", "evaluation", "reader_study", "figures", "backbones", "audit",
                              *VOLUME_SECTIONS),
            figure=lambda wildcards, output: paths.figure_stem(output.figure[0]),
        log:
            P.log("reader_study", "reader_study"),
        benchmark:
            P.benchmark("reader_study", "reader_study")
        localrule: True
        conda:
            "../../envs/figures.yaml"
        shell:
            "python -m spinedx reader_study --settings {params.settings:q} --readers {input.readers:q}"
            " --cases {input.cases:q} --case-predictions {input.case_predictions:q} --table3 {input.table3:q}"
            " --metrics {output.metrics:q} --mrmc {output.mrmc:q} --decisions {output.decisions:q}"
            " --figure {params.figure:q} 2> {log:q}"


# N-class studies (stage multiclass_reader_study): class decisions per reader, experience
# group and condition, the gain aided - unaided, OR-Hillis on accuracy, the accuracy figure.
if DEMO_READERS and NCLASS_READERS:

    rule demo_multiclass_reader_study:
        input:
            case_predictions=CASE_LEVEL_FILES,
            overall=MULTICLASS_TABLES[paths.MULTICLASS_OVERALL],
        output:
            P.demo_readers,
        params:
            settings=settings("classes", "reader_study", "figures", "backbones", "data"),
        log:
            P.log("reader_study", "demo_multiclass_reader_study"),
        benchmark:
            P.benchmark("reader_study", "demo_multiclass_reader_study")
        localrule: True
        conda:
            "../../envs/evaluation.yaml"
        shell:
            "python -m spinedx demo_multiclass_reader_study --settings {params.settings:q}"
            " --case-predictions {input.case_predictions:q} --overall {input.overall:q} --out {output:q} 2> {log:q}"


if READERS_FILE and NCLASS_READERS:

    rule multiclass_reader_study:
        input:
            readers=READERS_FILE,
            cases=CASES,
            case_predictions=CASE_LEVEL_FILES,
            overall=MULTICLASS_TABLES[paths.MULTICLASS_OVERALL],
        output:
            metrics=report(P.table(paths.READER_METRICS_TABLE), caption="../report/multiclass_reader_study.rst",
                           category="8. Reader study", subcategory="Readers, experience groups and model"),
            per_class=report(P.table(paths.READER_PER_CLASS_TABLE), caption="../report/multiclass_reader_study.rst",
                             category="8. Reader study", subcategory="Per-class sensitivity"),
            gain=report(P.table(paths.READER_GAIN_TABLE), caption="../report/multiclass_reader_study.rst",
                        category="8. Reader study", subcategory="Gain with the model"),
            mrmc=report(P.table(paths.READER_MRMC_TABLE), caption="../report/multiclass_reader_study.rst",
                        category="8. Reader study", subcategory="MRMC on accuracy (Obuchowski-Rockette, Hillis)"),
            decisions=report(P.table(paths.READER_DECISIONS_TABLE), caption="../report/reader_study_decisions.rst",
                             category="8. Reader study", subcategory="Decisions"),
            figure=figure_report(P.figure(paths.READER_ACCURACY_FIGURE), "multiclass_reader_study.rst",
                                 "8. Reader study", "Accuracy unaided and aided"),
        params:
            settings=settings("classes", "evaluation", "reader_study", "figures", "backbones", "audit", "data"),
            figure=lambda wildcards, output: paths.figure_stem(output.figure[0]),
        log:
            P.log("reader_study", "multiclass_reader_study"),
        benchmark:
            P.benchmark("reader_study", "multiclass_reader_study")
        localrule: True
        conda:
            "../../envs/figures.yaml"
        shell:
            "python -m spinedx multiclass_reader_study --settings {params.settings:q} --readers {input.readers:q}"
            " --cases {input.cases:q} --case-predictions {input.case_predictions:q} --overall {input.overall:q}"
            " --metrics {output.metrics:q} --per-class {output.per_class:q} --gain {output.gain:q}"
            " --mrmc {output.mrmc:q} --decisions {output.decisions:q} --figure {params.figure:q} 2> {log:q}"
