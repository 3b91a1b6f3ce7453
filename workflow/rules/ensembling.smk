rule ensembling:
    input:
        P.inference("{backbone}", "{sequence}"),
    output:
        P.ensembling("{backbone}", "{sequence}"),
    params:
        settings=settings("classes", "splits"),
    log:
        P.log("ensembling", "{backbone}/{sequence}"),
    benchmark:
        P.benchmark("ensembling", "{backbone}/{sequence}")
    localrule: True
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx ensembling {input:q} --settings {params.settings:q}"
        " --backbone {wildcards.backbone:q} --out {output:q} 2> {log:q}"
