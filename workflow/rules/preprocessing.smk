rule preprocessing:
    input:
        images=rules.annotations.output,
    output:
        f"{RESULTS}/preprocessing/{{sequence}}.npz",
    params:
        settings=settings("preprocessing", "data"),
        images_dir=IMAGES_DIR,
    log:
        log_path("preprocessing", "{sequence}"),
    benchmark:
        benchmark_path("preprocessing", "{sequence}")
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m spinedx preprocessing --settings {params.settings:q} --images {input.images:q}"
        " --images-dir {params.images_dir:q} --out {output:q} 2> {log:q}"
