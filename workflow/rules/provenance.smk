# The provenance record: inputs' and outputs' sha256, config, code and package versions.
# STUDY_OUTPUTS (workflow/rules/common.smk) is what the study delivers; files under
# tables/ and figures/ are recorded even when not listed there.
rule provenance:
    input:
        outputs=STUDY_OUTPUTS,
        images=P.images_table,
        cases=CASES,
        pretrained=PRETRAINED_RECORDS,
    output:
        P.provenance,
    params:
        settings=settings(*config),
        results_dir=subpath(output[0], parent=True),
    log:
        P.log("provenance", "provenance"),
    benchmark:
        P.benchmark("provenance", "provenance")
    localrule: True
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx provenance {input.outputs:q} --settings {params.settings:q} --images {input.images:q}"
        " --cases {input.cases:q} --results-dir {params.results_dir:q} --out {output:q}"
        " --pretrained-records {input.pretrained:q} 2> {log:q}"
