# training_jobs: per_sequence (local runs): the fold models of one backbone x sequence in
# one job, each fold in a worker forked after the imports (spinedx.stages.training.
# train_folds), so a job pays torch's import once, not once per fold. Same files as rule
# training (which the ruleorder sets aside), same weights on the same machine. Under
# SLURM (profile slurm: training_jobs=per_fold) rule training keeps one job per fold.
if TRAINING_FOLDS_TOGETHER:

    ruleorder: training_folds > training

    rule training_folds:
        input:
            # Volume studies: the cache and crops table of the model's input mode.
            cache=model_cache,
            images=model_images,
            folds=P.splits,
            pretrained=pretrained_record,
        output:
            checkpoints=expand(P.checkpoint("{backbone}", "{sequence}", "{fold}"), fold=FOLDS, allow_missing=True),
            histories=expand(P.history("{backbone}", "{sequence}", "{fold}"), fold=FOLDS, allow_missing=True),
            configs=expand(P.job_config("{backbone}", "{sequence}", "{fold}"), fold=FOLDS, allow_missing=True),
        params:
            settings=settings("classes", "preprocessing", "splits", "training", *VOLUME_SECTIONS),
            fold_ids=" ".join(map(str, FOLDS)),
            out_dirs=lambda wildcards, output: [os.path.dirname(path) for path in output.checkpoints],
            training_threads=config["training"]["threads"],
            pretrained=pretrained_record_option,
        log:
            job=P.log("training_folds", "{backbone}/{sequence}"),
            folds=expand(P.log("training", "{backbone}/{sequence}/fold{fold}"), fold=FOLDS, allow_missing=True),
        benchmark:
            P.benchmark("training_folds", "{backbone}/{sequence}")
        # One worker per fold as far as the cores allow (Snakemake caps threads at --cores).
        threads: len(FOLDS) * config["training"]["threads"]
        resources:
            gpu=config["training"]["gpus"],
            mem_mb=lambda wildcards, threads: config["training"]["mem_mb"]
            * max(1, threads // config["training"]["threads"]),
            runtime=config["training"]["runtime"] * len(FOLDS),
        conda:
            "../../envs/torch.yaml"
        shell:
            "python -m spinedx training_folds --settings {params.settings:q} --folds {input.folds:q}"
            " --backbone {wildcards.backbone:q} --sequences {wildcards.sequence:q} --caches {input.cache:q}"
            " --images {input.images:q} --fold-ids {params.fold_ids} --out-dirs {params.out_dirs:q}"
            " --logs {log.folds:q} --workers $(( {threads} / {params.training_threads} )) {params.pretrained}"
            " 2> {log.job:q}"
