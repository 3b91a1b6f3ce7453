# results/provenance.json: inputs' and outputs' sha256, config, code and package versions.
# STUDY_OUTPUTS is what the study delivers (rule all = these + provenance); files under
# tables/ and figures/ are recorded even when not listed here.
STUDY_OUTPUTS = [
    *rules.merge_annotations.output,
    *rules.evaluation.output,
    *(rules.meta_analysis.output if config["meta_analysis"]["enabled"] else []),
    *rules.figures.output,
    *rules.report_metadata.output,
    *(expand(rules.gradcam.output, backbone=BACKBONES, sequence=SEQUENCES)
      if config["gradcam"]["enabled"] else []),
    *([AUDIT_VERIFIED] if AUDIT else rules.bundle.output),
]


rule provenance:
    input:
        outputs=STUDY_OUTPUTS,
        images=rules.merge_annotations.output,
        cases=CASES,
    output:
        f"{RESULTS}/provenance.json",
    params:
        settings=settings(*config),
        results_dir=subpath(output[0], parent=True),
    log:
        log_path("provenance", "provenance"),
    benchmark:
        benchmark_path("provenance", "provenance")
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx provenance {input.outputs:q} --settings {params.settings:q} --images {input.images:q}"
        " --cases {input.cases:q} --results-dir {params.results_dir:q} --out {output:q} 2> {log:q}"
