rule splits:
    input:
        cases=CASES,
    output:
        P.splits,
    params:
        settings=settings("classes", "splits"),
    log:
        P.log("splits", "splits"),
    benchmark:
        P.benchmark("splits", "splits")
    localrule: True
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m spinedx splits --settings {params.settings:q} --cases {input.cases:q} --out {output:q} 2> {log:q}"
