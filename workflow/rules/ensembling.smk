rule ensembling:
    input:
        expand(rules.inference.output, fold=FOLDS, allow_missing=True),
    output:
        f"{RESULTS}/ensembling/{{backbone}}/{{sequence}}.parquet",
    log:
        log_path("ensembling", "{backbone}/{sequence}"),
    benchmark:
        benchmark_path("ensembling", "{backbone}/{sequence}")
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx ensembling {input:q} --backbone {wildcards.backbone:q} --out {output:q} 2> {log:q}"
