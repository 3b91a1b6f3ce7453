rule preprocessing:
    input:
        images=P.annotations("{sequence}"),
    output:
        P.preprocessing_cache("{sequence}"),
    params:
        settings=settings("preprocessing", "data"),
        images_dir=IMAGES_DIR,
    log:
        P.log("preprocessing", "{sequence}"),
    benchmark:
        P.benchmark("preprocessing", "{sequence}")
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m spinedx preprocessing --settings {params.settings:q} --images {input.images:q}"
        " --images-dir {params.images_dir:q} --out {output:q} 2> {log:q}"
