rule inference:
    input:
        # Audit mode: the released bundle's models (hash-checked by audit_verify) and no folds.
        checkpoints=FOLD_CHECKPOINTS,
        cache=model_cache,
        images=model_images,
        folds=[] if AUDIT else [P.splits],
        verified=MODELS_VERIFIED,
    output:
        P.inference("{backbone}", "{sequence}"),
    params:
        settings=settings("classes", "training", "inference", *VOLUME_SECTIONS),
        folds=lambda wildcards, input: " ".join(f"--folds {shlex.quote(f)}" for f in input.folds),
    log:
        P.log("inference", "{backbone}/{sequence}"),
    benchmark:
        P.benchmark("inference", "{backbone}/{sequence}")
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
        mem_mb=model_memory,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx inference {input.checkpoints:q} --settings {params.settings:q}"
        " --cache {input.cache:q} --images {input.images:q} {params.folds}"
        " --out {output:q} 2> {log:q}"
