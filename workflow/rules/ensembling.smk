rule ensembling:
    input:
        rules.inference.output,
    output:
        f"{RESULTS}/ensembling/{{backbone}}/{{sequence}}.parquet",
    params:
        settings=settings("splits"),
    log:
        log_path("ensembling", "{backbone}/{sequence}"),
    benchmark:
        benchmark_path("ensembling", "{backbone}/{sequence}")
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx ensembling {input:q} --settings {params.settings:q}"
        " --backbone {wildcards.backbone:q} --out {output:q} 2> {log:q}"
