# Figures 3 and 6, training curves and table 1 (stage `figures`), and the report's
# resolved config and software versions (`report_metadata`). Only the PNGs are report
# items (the PDFs for print lie beside them).
# Figures 3 and 6: (stem, caption, report category, subcategory); binary by nature.
BINARY_FIGURES = [(paths.ROC_BACKBONES_FIGURE, "fig3.rst", "3. Backbone comparison", "Figure 3"),
                  (paths.FINAL_SYSTEM_FIGURE, "fig6.rst", "4. Final system", "Figure 6")] if BINARY_TABLES else []


rule figures:
    input:
        # Figures 3 and 6 (two classes labelled per case) read the predictions and tables 2, 3.
        image_predictions=ENSEMBLED if BINARY_TABLES else [],
        case_predictions=CASE_PREDICTIONS if BINARY_TABLES else [],
        binary_tables=[EVALUATION_TABLES["table2"], EVALUATION_TABLES["table3"]] if BINARY_TABLES else [],
        histories=[P.history(b, s, k) for b, s in CURVES for k in FOLDS],
        job_configs=[P.job_config(b, s, k) for b, s in CURVES for k in FOLDS],
        cases=CASES,
        images=P.images_table,
    output:
        binary=[path for stem, caption, category, subcategory in BINARY_FIGURES
                for path in figure_report(P.figure(stem), caption, category, subcategory)],
        curves=[figure_report(P.figure(paths.training_curves_figure(b, s)), "training_curves.rst",
                              "2. Model development", "Training curves", backbone=b, sequence=s)
                for b, s in CURVES],
        table1=report(P.table(paths.COHORT_TABLE), caption="../report/table1.rst",
                      category="1. Cohort", subcategory="Table 1"),
    params:
        settings=settings("classes", "sequences", "backbones", "splits", "decision", "figures", "audit", "data",
                          *VOLUME_SECTIONS),
        # Audit mode of more than two classes draws no figure here: any folder will do.
        out_dir=lambda wildcards, output: os.path.dirname((output.binary or output.curves or [P.figure("-")])[0]),
        binary=lambda wildcards, input: (
            "--image-predictions " + " ".join(map(shlex.quote, input.image_predictions))
            + " --case-predictions " + " ".join(map(shlex.quote, input.case_predictions))
            + f" --table2 {shlex.quote(input.binary_tables[0])} --table3 {shlex.quote(input.binary_tables[1])}"
            if BINARY_TABLES else ""),
    log:
        P.log("figures", "figures"),
    benchmark:
        P.benchmark("figures", "figures")
    localrule: True
    conda:
        "../../envs/figures.yaml"
    shell:
        "python -m spinedx figures --settings {params.settings:q} {params.binary}"
        " --histories {input.histories:q}"
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
