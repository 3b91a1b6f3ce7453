rule evaluation:
    input:
        images=expand(P.ensembling("{backbone}", "{sequence}"), backbone=BACKBONES, sequence=SEQUENCES),
        cases=expand(P.case_level("{backbone}"), backbone=BACKBONES),
        # Audit mode: the distribution-shift summary comes before any AUC (issue 15).
        shift_checked=SHIFT_CHECKED,
    output:
        table2=report(EVALUATION_TABLES["table2"], caption="../report/table2.rst",
                      category="3. Backbone comparison", subcategory="Table 2"),
        table3=report(EVALUATION_TABLES["table3"], caption="../report/table3.rst",
                      category="4. Final system", subcategory="Table 3"),
        fold_2x2=report(EVALUATION_TABLES["fold_2x2"], caption="../report/fold_2x2.rst",
                        category="5. Meta-analysis", subcategory="Fold 2x2 tables"),
        internal_image=report(EVALUATION_TABLES["internal_image"], caption="../report/internal_cv.rst",
                              category="2. Model development", subcategory="Internal cross-validation"),
        internal_case=report(EVALUATION_TABLES["internal_case"], caption="../report/internal_cv.rst",
                             category="2. Model development", subcategory="Internal cross-validation"),
    params:
        settings=settings("classes", "decision", "evaluation"),
        out_dir=subpath(output.table2, parent=True),
    log:
        P.log("evaluation", "evaluation"),
    benchmark:
        P.benchmark("evaluation", "evaluation")
    localrule: True
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx evaluation --settings {params.settings:q} --image-predictions {input.images:q}"
        " --case-predictions {input.cases:q} --out-dir {params.out_dir:q} 2> {log:q}"
