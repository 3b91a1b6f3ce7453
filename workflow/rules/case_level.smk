rule case_level:
    input:
        expand(P.ensembling("{backbone}", "{sequence}"), sequence=SEQUENCES, allow_missing=True),
    output:
        P.case_level("{backbone}"),
    params:
        settings=settings("classes", "planes"),
    log:
        P.log("case_level", "{backbone}"),
    benchmark:
        P.benchmark("case_level", "{backbone}")
    localrule: True
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx case_level {input:q} --settings {params.settings:q} --out {output:q} 2> {log:q}"
