rule evaluation:
    input:
        images=expand(rules.ensembling.output, backbone=BACKBONES, sequence=SEQUENCES),
        cases=expand(rules.case_level.output, backbone=BACKBONES),
    output:
        table2=report(f"{RESULTS}/tables/table2_image_level.csv", caption="../report/table2.rst",
                      category="3. Backbone comparison", subcategory="Table 2"),
        table3=report(f"{RESULTS}/tables/table3_case_level.csv", caption="../report/table3.rst",
                      category="4. Final system", subcategory="Table 3"),
        fold_2x2=report(f"{RESULTS}/tables/fold_2x2.csv", caption="../report/fold_2x2.rst",
                        category="5. Meta-analysis", subcategory="Fold 2x2 tables"),
        internal_image=report(f"{RESULTS}/tables/internal_cv_image_level.csv", caption="../report/internal_cv.rst",
                              category="2. Model development", subcategory="Internal cross-validation"),
        internal_case=report(f"{RESULTS}/tables/internal_cv_case_level.csv", caption="../report/internal_cv.rst",
                             category="2. Model development", subcategory="Internal cross-validation"),
    params:
        settings=settings("decision", "evaluation"),
        out_dir=subpath(output.table2, parent=True),
    log:
        log_path("evaluation", "evaluation"),
    benchmark:
        benchmark_path("evaluation", "evaluation")
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx evaluation --settings {params.settings:q} --image-predictions {input.images:q}"
        " --case-predictions {input.cases:q} --out-dir {params.out_dir:q} 2> {log:q}"
