# Figures 3 and 6, training curves and table 1 (stage `figures`), and the report's
# resolved config and software versions (`report_metadata`). Only the PNGs are report
# items (the PDFs for print lie beside them).
rule figures:
    input:
        image_predictions=expand(rules.ensembling.output, backbone=BACKBONES, sequence=SEQUENCES),
        case_predictions=expand(rules.case_level.output, backbone=BACKBONES),
        table2=rules.evaluation.output.table2,
        table3=rules.evaluation.output.table3,
        # Audit mode trains nothing: no training curves.
        histories=[] if AUDIT else expand(rules.training.output.history, backbone=BACKBONES,
                                          sequence=SEQUENCES, fold=FOLDS),
        job_configs=[] if AUDIT else expand(rules.training.output.config, backbone=BACKBONES,
                                            sequence=SEQUENCES, fold=FOLDS),
        cases=CASES,
        images=rules.merge_annotations.output,
    output:
        fig3=figure_report(f"{RESULTS}/figures/fig3_roc_backbones", "fig3.rst",
                           "3. Backbone comparison", "Figure 3"),
        fig6=figure_report(f"{RESULTS}/figures/fig6_final_system", "fig6.rst", "4. Final system", "Figure 6"),
        curves=[figure_report(f"{RESULTS}/figures/training_curves_{b}_{s}", "training_curves.rst",
                              "2. Model development", "Training curves", backbone=b, sequence=s)
                for b in BACKBONES for s in SEQUENCES if not AUDIT],
        table1=report(f"{RESULTS}/tables/table1_cohort.csv", caption=f"../report/table1.rst",
                      category="1. Cohort", subcategory="Table 1"),
    params:
        settings=settings("classes", "sequences", "backbones", "splits", "decision", "figures", "audit"),
        out_dir=lambda wildcards, output: os.path.dirname(output.fig3[0]),
    log:
        log_path("figures", "figures"),
    benchmark:
        benchmark_path("figures", "figures")
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
        config=report(f"{RESULTS}/report/config.yaml", caption=f"../report/config.rst",
                      category="7. Reproducibility", subcategory="Resolved configuration"),
        versions=report(f"{RESULTS}/report/software_versions.csv", caption=f"../report/versions.rst",
                        category="7. Reproducibility", subcategory="Software versions"),
    params:
        # The whole resolved config: the report shows exactly what ran.
        settings=settings(*config),
    log:
        log_path("figures", "report_metadata"),
    benchmark:
        benchmark_path("figures", "report_metadata")
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx report_metadata --settings {params.settings:q}"
        " --config-out {output.config:q} --versions-out {output.versions:q} 2> {log:q}"
