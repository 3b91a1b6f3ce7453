rule inference:
    input:
        # Audit mode: the released bundle's models (hash-checked by audit_verify) and no folds.
        checkpoints=FOLD_CHECKPOINTS,
        cache=P.preprocessing_cache("{sequence}"),
        images=P.annotations("{sequence}"),
        folds=[] if AUDIT else [P.splits],
        verified=MODELS_VERIFIED,
    output:
        P.inference("{backbone}", "{sequence}"),
    params:
        settings=settings("classes", "training", "inference"),
        folds=lambda wildcards, input: " ".join(f"--folds {shlex.quote(f)}" for f in input.folds),
    log:
        P.log("inference", "{backbone}/{sequence}"),
    benchmark:
        P.benchmark("inference", "{backbone}/{sequence}")
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx inference {input.checkpoints:q} --settings {params.settings:q}"
        " --cache {input.cache:q} --images {input.images:q} {params.folds}"
        " --out {output:q} 2> {log:q}"
