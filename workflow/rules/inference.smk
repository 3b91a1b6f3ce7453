rule inference:
    input:
        # Audit mode: the released bundle's models (hash-checked by audit_verify) and no folds.
        checkpoints=expand(
            f"{AUDIT_BUNDLE}/models/{{backbone}}/{{sequence}}/fold{{fold}}.pt" if AUDIT
            else rules.training.output.checkpoint, fold=FOLDS, allow_missing=True),
        cache=rules.preprocessing.output,
        images=rules.annotations.output,
        folds=[] if AUDIT else rules.splits.output,
        verified=AUDIT_VERIFIED if AUDIT else [],
    output:
        f"{RESULTS}/inference/{{backbone}}/{{sequence}}.parquet",
    params:
        settings=settings("classes", "training", "inference"),
        folds=lambda wildcards, input: " ".join(f"--folds {shlex.quote(f)}" for f in input.folds),
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
        " --cache {input.cache:q} --images {input.images:q} {params.folds}"
        " --out {output:q} 2> {log:q}"
