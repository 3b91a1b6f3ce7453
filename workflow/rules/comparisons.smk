# Paired comparisons (stage comparisons): backbones, inputs (and fusion vs image only) on
# the same cases; DeLong, exact McNemar, multiplicity-adjusted p.


def fusion_case_predictions(wildcards):
    """The case-level fusion predictions when the study fuses clinical data (their owner,
    paths.StudyPaths.fusion_predictions, comes with the fusion stage); none otherwise."""
    owner = getattr(P, "fusion_predictions", None)
    return [owner] if isinstance(owner, str) and config.get("fusion", {}).get("enabled", False) else []


if config["comparisons"]["enabled"]:

    rule comparisons:
        input:
            case_predictions=CASE_LEVEL_FILES,
            fusion=fusion_case_predictions,
        output:
            report(P.table(paths.COMPARISONS_TABLE), caption="../report/paired_comparisons.rst",
                   category="3. Backbone comparison", subcategory="Paired comparisons"),
        params:
            settings=settings("classes", "decision", "evaluation", "comparisons", "backbones"),
        log:
            P.log("comparisons", "comparisons"),
        benchmark:
            P.benchmark("comparisons", "comparisons")
        localrule: True
        conda:
            "../../envs/evaluation.yaml"
        shell:
            "python -m spinedx comparisons --settings {params.settings:q}"
            " --case-predictions {input.case_predictions:q} --fusion {input.fusion:q} --out {output:q} 2> {log:q}"
