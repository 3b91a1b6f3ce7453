# Volume studies (data.format volume, issue 14): the model inputs of each sequence x input
# mode, and the input modes compared on the same cases. The annotations, training,
# inference and Grad-CAM rules serve volumes too (their stages read data.format).
if VOLUMES:

    rule volume_preprocessing:
        input:
            images=P.annotations("{sequence}"),
        output:
            cache=P.volume_cache("{sequence}", "{mode}"),
            crops=P.volume_crops("{sequence}", "{mode}"),
        params:
            settings=settings("preprocessing", "data"),
            images_dir=IMAGES_DIR,
        log:
            P.log("preprocessing", "{sequence}/{mode}"),
        benchmark:
            P.benchmark("preprocessing", "{sequence}/{mode}")
        resources:
            mem_mb=config["training"]["mem_mb"],
        conda:
            "../../envs/data.yaml"
        shell:
            "python -m spinedx volume_preprocessing --settings {params.settings:q} --images {input.images:q}"
            " --images-dir {params.images_dir:q} --mode {wildcards.mode:q} --out {output.cache:q}"
            " --crops {output.crops:q} 2> {log:q}"

    rule mode_comparison:
        input:
            cases=expand(P.case_level("{backbone}"), backbone=BACKBONES),
            # Audit mode: the distribution-shift summary comes before any AUC (as for table 3).
            shift_checked=SHIFT_CHECKED,
        output:
            table=report(P.table(paths.INPUT_MODES_TABLE), caption="../report/input_modes.rst",
                         category="4. Final system", subcategory="Input modes"),
            tests=report(P.table(paths.INPUT_MODES_TESTS_TABLE), caption="../report/input_modes.rst",
                         category="4. Final system", subcategory="Input modes"),
            figure=figure_report(P.figure(paths.ROC_INPUT_MODES_FIGURE), "input_modes_roc.rst",
                                 "4. Final system", "Input modes"),
        params:
            settings=settings("classes", "decision", "evaluation", "backbones", *VOLUME_SECTIONS),
            figure=lambda wildcards, output: paths.figure_stem(output.figure[0]),
        log:
            P.log("mode_comparison", "mode_comparison"),
        benchmark:
            P.benchmark("mode_comparison", "mode_comparison")
        localrule: True
        conda:
            "../../envs/evaluation.yaml"
        shell:
            "python -m spinedx mode_comparison --settings {params.settings:q} --case-predictions {input.cases:q}"
            " --table {output.table:q} --tests {output.tests:q} --figure {params.figure:q} 2> {log:q}"
