rule training:
    input:
        # Volume studies: the cache and crops table of the model's input mode.
        cache=model_cache,
        images=model_images,
        folds=P.splits,
        pretrained=pretrained_record,
    output:
        checkpoint=P.checkpoint("{backbone}", "{sequence}", "{fold}"),
        history=P.history("{backbone}", "{sequence}", "{fold}"),
        config=P.job_config("{backbone}", "{sequence}", "{fold}"),
    params:
        settings=settings("classes", "preprocessing", "splits", "training", *VOLUME_SECTIONS),
        out_dir=subpath(output.checkpoint, parent=True),
        pretrained=pretrained_record_option,
    log:
        P.log("training", "{backbone}/{sequence}/fold{fold}"),
    benchmark:
        P.benchmark("training", "{backbone}/{sequence}/fold{fold}")
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
        mem_mb=model_memory,
        runtime=model_runtime,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx training --settings {params.settings:q} --cache {input.cache:q}"
        " --images {input.images:q} --folds {input.folds:q} --backbone {wildcards.backbone:q}"
        " --sequence {wildcards.sequence:q} --fold {wildcards.fold} --out-dir {params.out_dir:q}"
        " {params.pretrained} 2> {log:q}"
