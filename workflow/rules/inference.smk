rule inference:
    input:
        checkpoints=expand(rules.training.output.checkpoint, fold=FOLDS, allow_missing=True),
        cache=rules.preprocessing.output,
        images=rules.annotations.output,
        folds=rules.splits.output,
    output:
        f"{RESULTS}/inference/{{backbone}}/{{sequence}}.parquet",
    params:
        settings=settings("classes", "training", "inference"),
    log:
        log_path("inference", "{backbone}/{sequence}"),
    benchmark:
        benchmark_path("inference", "{backbone}/{sequence}")
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx inference {input.checkpoints:q} --settings {params.settings:q}"
        " --cache {input.cache:q} --images {input.images:q} --folds {input.folds:q}"
        " --out {output:q} 2> {log:q}"
