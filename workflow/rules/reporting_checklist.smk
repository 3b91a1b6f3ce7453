# Reporting checklist (stage reporting_checklist): STARD 2015, TRIPOD+AI and CLAIM items
# mapped to the study's files that answer them.
rule reporting_checklist:
    input:
        CHECKLIST_EVIDENCE,
    output:
        report(P.table(paths.CHECKLIST_TABLE), caption="../report/reporting_checklist.rst",
               category="9. Reporting checklist", subcategory="STARD 2015, TRIPOD+AI, CLAIM"),
    params:
        settings=settings(),
        results_dir=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
        # labels of images: no reader study by design (common.smk, IMAGE_LABEL_ANALYSES)
        reader_study="--no-reader-study" if IMAGE_LABEL_ANALYSES else "",
    log:
        P.log("reporting_checklist", "reporting_checklist"),
    benchmark:
        P.benchmark("reporting_checklist", "reporting_checklist")
    localrule: True
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx reporting_checklist {input:q} --settings {params.settings:q}"
        " --results-dir {params.results_dir:q} {params.reader_study} --out {output:q} 2> {log:q}"
