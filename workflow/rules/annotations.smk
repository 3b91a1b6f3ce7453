rule annotations:
    input:
        files=sequence_inputs,
        cases=CASES,
    output:
        f"{RESULTS}/annotations/{{sequence}}.parquet",
    params:
        settings=settings("classes", "sequences", "data", "audit"),
        images_dir=IMAGES_DIR,
    log:
        log_path("annotations", "{sequence}"),
    benchmark:
        benchmark_path("annotations", "{sequence}")
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m spinedx annotations --settings {params.settings:q} --images-dir {params.images_dir:q}"
        " --cases {input.cases:q} --sequence {wildcards.sequence:q} --out {output:q} 2> {log:q}"


rule merge_annotations:
    input:
        expand(rules.annotations.output, sequence=SEQUENCES),
    output:
        f"{RESULTS}/annotations/images.parquet",
    params:
        images_dir=IMAGES_DIR,
    log:
        log_path("annotations", "merge_annotations"),
    benchmark:
        benchmark_path("annotations", "merge_annotations")
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m spinedx merge_annotations {input:q} --images-dir {params.images_dir:q} --out {output:q} 2> {log:q}"
