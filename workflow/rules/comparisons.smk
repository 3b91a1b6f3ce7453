# Paired comparisons (stage comparisons): backbones, inputs (and fusion vs image only) on
# the same cases; DeLong, exact McNemar, multiplicity-adjusted p. N-class studies (command
# multiclass_comparisons): accuracy and per-class sensitivity by McNemar, per-class AUC by DeLong.
# Labels of images (command image_comparisons): the same N-class rows on images, the
# difference bootstrapped over dogs (images of a dog are correlated: no McNemar, no DeLong).

if config["comparisons"]["enabled"]:

    rule comparisons:
        input:
            case_predictions=ISSUE15_CASE_PREDICTIONS,  # none where labels belong to images
            fusion=FUSION_CASE_PREDICTIONS,
            image_predictions=ISSUE15_IMAGE_PREDICTIONS,
        output:
            report(P.table(paths.COMPARISONS_TABLE), caption="../report/paired_comparisons.rst",
                   category="3. Backbone comparison", subcategory="Paired comparisons"),
        params:
            settings=settings("classes", "decision", "evaluation", "comparisons", "backbones", *VOLUME_SECTIONS,
                              *(("sequences", "planes") if IMAGE_LABEL_ANALYSES else ())),
            command=("image_comparisons" if IMAGE_LABEL_ANALYSES
                     else "multiclass_comparisons" if NCLASS_READER_ANALYSES else "comparisons"),
            predictions=lambda wildcards, input: (
                f"--image-predictions {' '.join(map(shlex.quote, input.image_predictions))}" if IMAGE_LABEL_ANALYSES
                else f"--case-predictions {' '.join(map(shlex.quote, input.case_predictions))} "
                     f"--fusion {' '.join(map(shlex.quote, input.fusion))}"),
        log:
            P.log("comparisons", "comparisons"),
        benchmark:
            P.benchmark("comparisons", "comparisons")
        localrule: True
        conda:
            "../../envs/evaluation.yaml"
        shell:
            "python -m spinedx {params.command} --settings {params.settings:q} {params.predictions}"
            " --out {output:q} 2> {log:q}"
