rule evaluation:
    input:
        images=expand(rules.ensembling.output, backbone=BACKBONES, sequence=SEQUENCES),
        cases=expand(rules.case_level.output, backbone=BACKBONES),
    output:
        table2=f"{RESULTS}/tables/table2_image_level.csv",
        table3=f"{RESULTS}/tables/table3_case_level.csv",
        fold_2x2=f"{RESULTS}/tables/fold_2x2.csv",
        internal_image=f"{RESULTS}/tables/internal_cv_image_level.csv",
        internal_case=f"{RESULTS}/tables/internal_cv_case_level.csv",
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
