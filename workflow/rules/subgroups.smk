# Subgroups (stage subgroups): the final system per level of each subgroup variable
# (cases-table columns, age bands, allow-listed DICOM acquisition attributes), forest plot.
if config["subgroups"]["variables"]:

    rule subgroups:
        input:
            cases=CASES,
            images=P.images_table,
            case_predictions=ISSUE15_CASE_PREDICTIONS,
            image_predictions=ISSUE15_IMAGE_PREDICTIONS,
            final_system=FINAL_SYSTEM_TABLE,
        output:
            table=report(P.table(paths.SUBGROUP_TABLE), caption="../report/subgroups.rst",
                         category="4. Final system", subcategory="Subgroups"),
            figure=figure_report(P.figure(paths.SUBGROUP_FIGURE), "subgroups.rst", "4. Final system", "Subgroups"),
        params:
            settings=settings("classes", "decision", "evaluation", "subgroups", "figures", "backbones", "audit", "data",
                              *VOLUME_SECTIONS, *(["planes"] if IMAGE_LABEL_ANALYSES else [])),
            # table 3 chooses a two-class study's final backbone, the N-class overall table an
            # N-class one's (and that of a study whose labels belong to images)
            final_system=lambda wildcards, input: ("--overall " if len(config["classes"]) > 2 or IMAGE_LABEL_ANALYSES
                                                   else "--table3 ")
            + shlex.quote(input.final_system),
            images_dir=IMAGES_DIR,
            figure=lambda wildcards, output: paths.figure_stem(output.figure[0]),
        log:
            P.log("subgroups", "subgroups"),
        benchmark:
            P.benchmark("subgroups", "subgroups")
        localrule: True
        conda:
            "../../envs/figures.yaml"
        shell:
            "python -m spinedx subgroups --settings {params.settings:q} --cases {input.cases:q}"
            " --images {input.images:q} --images-dir {params.images_dir:q}"
            " --case-predictions {input.case_predictions:q} --image-predictions {input.image_predictions:q}"
            " {params.final_system}"
            " --out {output.table:q} --figure {params.figure:q} 2> {log:q}"


# Detection studies: the detection system's lesion sensitivity and false positives per case
# per lesion-size band and per level of each variable (stage subgroups, detection_main_stage).
if DETECTION and DETECTION_ISSUE15 and config["subgroups"]["variables"]:

    rule detection_subgroups:
        input:
            cases=P.detection_cases,
            candidates=per_pair(P.detection_candidates),
            lesions=per_pair(P.detection_lesion_hits),
            summary=DETECTION_TABLE_FILES[paths.DETECTION_SUMMARY],
            operating_points=DETECTION_TABLE_FILES[paths.DETECTION_OPERATING_POINTS],
        output:
            table=report(P.table(paths.SUBGROUP_TABLE), caption="../report/subgroups.rst",
                         category="4. Final system", subcategory="Subgroups"),
            figure=figure_report(P.figure(paths.SUBGROUP_FIGURE), "subgroups.rst", "4. Final system", "Subgroups"),
        params:
            settings=settings("sequences", "detection", "detection_evaluation", "evaluation", "subgroups"),
            figure=lambda wildcards, output: paths.figure_stem(output.figure[0]),
        log:
            P.log("subgroups", "detection_subgroups"),
        benchmark:
            P.benchmark("subgroups", "detection_subgroups")
        localrule: True
        conda:
            "../../envs/figures.yaml"
        shell:
            "python -m spinedx detection_subgroups --settings {params.settings:q} --cases {input.cases:q}"
            " --candidates {input.candidates:q} --lesions {input.lesions:q} --summary {input.summary:q}"
            " --operating-points {input.operating_points:q} --out {output.table:q} --figure {params.figure:q}"
            " 2> {log:q}"

    ruleorder: detection_subgroups > subgroups
