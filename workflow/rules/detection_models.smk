# Detection (issue 16): one network per model x input x fold (submitted like the
# classification training), and the probability maps of every case (out-of-fold for the
# internal cohort, fold ensemble for the external one).
if DETECTION:

    rule detection_training:
        input:
            volumes=P.detection_volumes,
            cases=P.detection_cases,
            folds=P.folds,
        output:
            checkpoint=P.detection_checkpoint("{model}", "{detection_input}", "{fold}"),
            history=P.detection_history("{model}", "{detection_input}", "{fold}"),
            config=P.detection_job_config("{model}", "{detection_input}", "{fold}"),
        params:
            settings=settings("sequences", "detection", "detection_preprocessing", "training", "splits"),
            out_dir=subpath(output.checkpoint, parent=True),
        log:
            P.log("detection_training", "{model}/{detection_input}/fold{fold}"),
        benchmark:
            P.benchmark("detection_training", "{model}/{detection_input}/fold{fold}")
        threads: config["training"]["threads"]
        resources:
            gpu=config["training"]["gpus"],
            mem_mb=config["training"]["mem_mb"],
            runtime=config["training"]["runtime"],
        conda:
            "../../envs/torch.yaml"
        shell:
            "python -m spinedx detection_training --settings {params.settings:q} --volumes {input.volumes:q}"
            " --cases {input.cases:q} --folds {input.folds:q} --model {wildcards.model:q}"
            " --input {wildcards.detection_input:q} --fold {wildcards.fold} --out-dir {params.out_dir:q}"
            " 2> {log:q}"

    rule detection_inference:
        input:
            # Audit mode: the released bundle's models (hash-checked first) and no folds.
            checkpoints=lambda wildcards: detection_checkpoints(wildcards.model, wildcards.detection_input),
            volumes=P.detection_volumes,
            cases=P.detection_cases,
            folds=[] if AUDIT else [P.folds],
            verified=MODELS_VERIFIED,
        output:
            P.detection_maps("{model}", "{detection_input}"),
        params:
            settings=settings("sequences", "detection", "detection_preprocessing", "training"),
            folds=lambda wildcards, input: " ".join(f"--folds {shlex.quote(f)}" for f in input.folds),
        log:
            P.log("detection_inference", "{model}/{detection_input}"),
        benchmark:
            P.benchmark("detection_inference", "{model}/{detection_input}")
        threads: config["training"]["threads"]
        resources:
            gpu=config["training"]["gpus"],
            mem_mb=config["training"]["mem_mb"],
        conda:
            "../../envs/torch.yaml"
        shell:
            "python -m spinedx detection_inference {input.checkpoints:q} --settings {params.settings:q}"
            " --volumes {input.volumes:q} --cases {input.cases:q} {params.folds}"
            " --model {wildcards.model:q} --input {wildcards.detection_input:q} --out {output:q} 2> {log:q}"
