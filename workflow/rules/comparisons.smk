# Paired comparisons (stage comparisons): backbones, inputs (and fusion vs image only) on
# the same cases; DeLong, exact McNemar, multiplicity-adjusted p. N-class studies (command
# multiclass_comparisons): accuracy and per-class sensitivity by McNemar, per-class AUC by DeLong.

if config["comparisons"]["enabled"]:

    rule comparisons:
        input:
            case_predictions=CASE_LEVEL_FILES,
            fusion=FUSION_CASE_PREDICTIONS,
        output:
            report(P.table(paths.COMPARISONS_TABLE), caption="../report/paired_comparisons.rst",
                   category="3. Backbone comparison", subcategory="Paired comparisons"),
        params:
            settings=settings("classes", "decision", "evaluation", "comparisons", "backbones", *VOLUME_SECTIONS),
            command="multiclass_comparisons" if NCLASS_READER_ANALYSES else "comparisons",
        log:
            P.log("comparisons", "comparisons"),
        benchmark:
            P.benchmark("comparisons", "comparisons")
        localrule: True
        conda:
            "../../envs/evaluation.yaml"
        shell:
            "python -m spinedx {params.command} --settings {params.settings:q}"
            " --case-predictions {input.case_predictions:q} --fusion {input.fusion:q} --out {output:q} 2> {log:q}"
