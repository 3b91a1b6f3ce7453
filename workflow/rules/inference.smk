rule inference:
    input:
        checkpoint=rules.training.output.checkpoint,
        cache=rules.preprocessing.output,
        images=rules.annotations.output,
        folds=rules.splits.output,
    output:
        f"{RESULTS}/inference/{{backbone}}/{{sequence}}/fold{{fold}}.parquet",
    params:
        settings=settings("classes", "training", "inference"),
    log:
        log_path("inference", "{backbone}/{sequence}/fold{fold}"),
    benchmark:
        benchmark_path("inference", "{backbone}/{sequence}/fold{fold}")
    threads: config["training"]["threads"]
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx inference --settings {params.settings:q} --checkpoint {input.checkpoint:q}"
        " --cache {input.cache:q} --images {input.images:q} --folds {input.folds:q}"
        " --fold {wildcards.fold} --out {output:q} 2> {log:q}"
