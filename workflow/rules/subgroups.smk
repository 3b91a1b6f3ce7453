# Subgroups (stage subgroups): the final system per level of each subgroup variable
# (cases-table columns, age bands, allow-listed DICOM acquisition attributes), forest plot.
if config["subgroups"]["variables"]:

    rule subgroups:
        input:
            cases=CASES,
            images=P.images_table,
            case_predictions=CASE_LEVEL_FILES,
            table3=EVALUATION_TABLES["table3"],
        output:
            table=report(P.table(paths.SUBGROUP_TABLE), caption="../report/subgroups.rst",
                         category="4. Final system", subcategory="Subgroups"),
            figure=figure_report(P.figure(paths.SUBGROUP_FIGURE), "subgroups.rst", "4. Final system", "Subgroups"),
        params:
            settings=settings("classes", "decision", "evaluation", "subgroups", "figures", "backbones", "audit",
                              *VOLUME_SECTIONS),
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
            " --case-predictions {input.case_predictions:q} --table3 {input.table3:q}"
            " --out {output.table:q} --figure {params.figure:q} 2> {log:q}"
