# Calibration and clinical utility (stage calibration): calibration curves, intercept,
# slope, Brier with patient-bootstrap intervals; decision curves (dcurves).
# Two-class studies (N-class ones: rule multiclass_calibration below).
if config["calibration"]["enabled"] and not MULTICLASS_CALIBRATION:

    rule calibration:
        input:
            case_predictions=CASE_LEVEL_FILES,
            table3=EVALUATION_TABLES["table3"],
        output:
            summary=report(P.table(paths.CALIBRATION_TABLE), caption="../report/calibration.rst",
                           category="4. Final system", subcategory="Calibration"),
            curve=report(P.table(paths.CALIBRATION_CURVE_TABLE), caption="../report/calibration.rst",
                         category="4. Final system", subcategory="Calibration"),
            decision_curve=report(P.table(paths.DECISION_CURVE_TABLE), caption="../report/decision_curve.rst",
                                  category="4. Final system", subcategory="Decision curves"),
            calibration_figure=figure_report(P.figure(paths.CALIBRATION_FIGURE), "calibration.rst",
                                             "4. Final system", "Calibration"),
            decision_curve_figure=figure_report(P.figure(paths.DECISION_CURVE_FIGURE), "decision_curve.rst",
                                                "4. Final system", "Decision curves"),
        params:
            settings=settings("classes", "decision", "evaluation", "calibration", "figures", "backbones",
                              *VOLUME_SECTIONS),
            calibration_figure=lambda wildcards, output: paths.figure_stem(output.calibration_figure[0]),
            decision_curve_figure=lambda wildcards, output: paths.figure_stem(output.decision_curve_figure[0]),
        log:
            P.log("calibration", "calibration"),
        benchmark:
            P.benchmark("calibration", "calibration")
        localrule: True
        conda:
            "../../envs/figures.yaml"
        shell:
            "python -m spinedx calibration --settings {params.settings:q}"
            " --case-predictions {input.case_predictions:q} --table3 {input.table3:q}"
            " --summary {output.summary:q} --curve {output.curve:q} --decision-curve {output.decision_curve:q}"
            " --calibration-figure {params.calibration_figure:q}"
            " --decision-curve-figure {params.decision_curve_figure:q} 2> {log:q}"


# N-class studies: one-vs-rest calibration per class and the multi-class Brier score; one-vs-rest
# decision curves per class (calibration.dca_classes) on the pooled external cohorts. Labels of
# images: the same calibration on the ensembled images (the bootstrap draws patients with all
# their images) and decision curves per image (every backbone's ALL input).
if config["calibration"]["enabled"] and MULTICLASS_CALIBRATION:

    rule multiclass_calibration:
        input:
            case_predictions=ISSUE15_CASE_PREDICTIONS,
            image_predictions=ISSUE15_IMAGE_PREDICTIONS,
            overall=MULTICLASS_TABLES[paths.MULTICLASS_OVERALL],
        output:
            summary=report(P.table(paths.CALIBRATION_TABLE), caption="../report/calibration.rst",
                           category="4. Final system", subcategory="Calibration"),
            curve=report(P.table(paths.CALIBRATION_CURVE_TABLE), caption="../report/calibration.rst",
                         category="4. Final system", subcategory="Calibration"),
            calibration_figure=figure_report(P.figure(paths.CALIBRATION_FIGURE), "calibration.rst",
                                             "4. Final system", "Calibration"),
            decision_curve=report(P.table(paths.DECISION_CURVE_TABLE), caption="../report/decision_curve.rst",
                                  category="4. Final system", subcategory="Decision curves"),
            decision_curve_figure=figure_report(P.figure(paths.DECISION_CURVE_FIGURE), "decision_curve.rst",
                                                "4. Final system", "Decision curves"),
        params:
            # two classes (a study of another shape than the reference): the task reads decision
            settings=settings("classes", "evaluation", "calibration", "figures", "backbones", "data",
                              *(("decision",) if len(config["classes"]) == 2 else ()),
                              *VOLUME_SECTIONS),
            calibration_figure=lambda wildcards, output: paths.figure_stem(output.calibration_figure[0]),
            decision_curve_figure=lambda wildcards, output: paths.figure_stem(output.decision_curve_figure[0]),
        log:
            P.log("calibration", "multiclass_calibration"),
        benchmark:
            P.benchmark("calibration", "multiclass_calibration")
        localrule: True
        conda:
            "../../envs/figures.yaml"
        shell:
            "python -m spinedx multiclass_calibration --settings {params.settings:q}"
            " --case-predictions {input.case_predictions:q} --image-predictions {input.image_predictions:q}"
            " --overall {input.overall:q} --summary {output.summary:q} --curve {output.curve:q}"
            " --calibration-figure {params.calibration_figure:q} --decision-curve {output.decision_curve:q}"
            " --decision-curve-figure {params.decision_curve_figure:q} 2> {log:q}"
