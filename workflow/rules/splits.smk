rule splits:
    input:
        cases=CASES,
    output:
        f"{RESULTS}/splits/folds.tsv",
    params:
        settings=settings("classes", "splits"),
    log:
        log_path("splits", "splits"),
    benchmark:
        benchmark_path("splits", "splits")
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m spinedx splits --settings {params.settings:q} --cases {input.cases:q} --out {output:q} 2> {log:q}"
