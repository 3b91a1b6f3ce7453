rule case_level:
    input:
        expand(rules.ensembling.output, sequence=SEQUENCES, allow_missing=True),
    output:
        f"{RESULTS}/case_level/{{backbone}}.parquet",
    log:
        log_path("case_level", "{backbone}"),
    benchmark:
        benchmark_path("case_level", "{backbone}")
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx case_level {input:q} --out {output:q} 2> {log:q}"
