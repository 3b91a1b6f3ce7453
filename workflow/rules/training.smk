rule training:
    input:
        cache=rules.preprocessing.output,
        images=rules.annotations.output,
        folds=rules.splits.output,
    output:
        checkpoint=f"{RESULTS}/models/{{backbone}}/{{sequence}}/fold{{fold}}/best.pt",
        history=f"{RESULTS}/models/{{backbone}}/{{sequence}}/fold{{fold}}/history.tsv",
        config=f"{RESULTS}/models/{{backbone}}/{{sequence}}/fold{{fold}}/config.yaml",
    params:
        settings=settings("classes", "preprocessing", "splits", "training"),
        out_dir=subpath(output.checkpoint, parent=True),
    log:
        log_path("training", "{backbone}/{sequence}/fold{fold}"),
    benchmark:
        benchmark_path("training", "{backbone}/{sequence}/fold{fold}")
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
        mem_mb=config["training"]["mem_mb"],
        runtime=config["training"]["runtime"],
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx training --settings {params.settings:q} --cache {input.cache:q}"
        " --images {input.images:q} --folds {input.folds:q} --backbone {wildcards.backbone:q}"
        " --sequence {wildcards.sequence:q} --fold {wildcards.fold} --out-dir {params.out_dir:q}"
        " 2> {log:q}"


# The fold models of one backbone x sequence as later stages read them: this study's
# trained checkpoints, or in audit mode the released bundle's (checked by audit_verify,
# which every reader waits for through MODELS_VERIFIED).
FOLD_CHECKPOINTS = expand(
    f"{AUDIT_BUNDLE}/models/{{backbone}}/{{sequence}}/fold{{fold}}.pt" if AUDIT
    else rules.training.output.checkpoint, fold=FOLDS, allow_missing=True)
MODELS_VERIFIED = AUDIT_VERIFIED if AUDIT else []
