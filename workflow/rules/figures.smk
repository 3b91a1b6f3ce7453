# Figures 3 and 6, training curves and table 1 (stage `figures`), and the report's
# resolved config and software versions (`report_metadata`). Only the PNGs are report
# items (the PDFs for print lie beside them).
rule figures:
    input:
        image_predictions=expand(P.ensembling("{backbone}", "{sequence}"), backbone=BACKBONES, sequence=SEQUENCES),
        case_predictions=expand(P.case_level("{backbone}"), backbone=BACKBONES),
        table2=EVALUATION_TABLES["table2"],
        table3=EVALUATION_TABLES["table3"],
        histories=[P.history(b, s, k) for b, s in CURVES for k in FOLDS],
        job_configs=[P.job_config(b, s, k) for b, s in CURVES for k in FOLDS],
        cases=CASES,
        images=P.images_table,
    output:
        fig3=figure_report(P.figure(paths.ROC_BACKBONES_FIGURE), "fig3.rst", "3. Backbone comparison", "Figure 3"),
        fig6=figure_report(P.figure(paths.FINAL_SYSTEM_FIGURE), "fig6.rst", "4. Final system", "Figure 6"),
        curves=[figure_report(P.figure(paths.training_curves_figure(b, s)), "training_curves.rst",
                              "2. Model development", "Training curves", backbone=b, sequence=s)
                for b, s in CURVES],
        table1=report(P.table(paths.COHORT_TABLE), caption="../report/table1.rst",
                      category="1. Cohort", subcategory="Table 1"),
    params:
        settings=settings("classes", "sequences", "backbones", "splits", "decision", "figures", "audit",
                          *VOLUME_SECTIONS),
        out_dir=lambda wildcards, output: os.path.dirname(output.fig3[0]),
    log:
        P.log("figures", "figures"),
    benchmark:
        P.benchmark("figures", "figures")
    localrule: True
    conda:
        "../../envs/figures.yaml"
    shell:
        "python -m spinedx figures --settings {params.settings:q}"
        " --image-predictions {input.image_predictions:q} --case-predictions {input.case_predictions:q}"
        " --table2 {input.table2:q} --table3 {input.table3:q} --histories {input.histories:q}"
        " --cases {input.cases:q} --images {input.images:q} --out-dir {params.out_dir:q}"
        " --table1 {output.table1:q} 2> {log:q}"


rule report_metadata:
    output:
        config=report(P.report_config, caption="../report/config.rst",
                      category="7. Reproducibility", subcategory="Resolved configuration"),
        versions=report(P.software_versions, caption="../report/versions.rst",
                        category="7. Reproducibility", subcategory="Software versions"),
    params:
        # The whole resolved config: the report shows exactly what ran.
        settings=settings(*config),
    log:
        P.log("figures", "report_metadata"),
    benchmark:
        P.benchmark("figures", "report_metadata")
    localrule: True
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx report_metadata --settings {params.settings:q}"
        " --config-out {output.config:q} --versions-out {output.versions:q} 2> {log:q}"
