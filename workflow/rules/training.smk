rule training:
    input:
        cache=P.preprocessing_cache("{sequence}"),
        images=P.annotations("{sequence}"),
        folds=P.folds,
        pretrained=pretrained_record,
    output:
        checkpoint=P.checkpoint("{backbone}", "{sequence}", "{fold}"),
        history=P.history("{backbone}", "{sequence}", "{fold}"),
        config=P.job_config("{backbone}", "{sequence}", "{fold}"),
    params:
        settings=settings("classes", "preprocessing", "splits", "training"),
        out_dir=subpath(output.checkpoint, parent=True),
        pretrained=pretrained_record_option,
    log:
        P.log("training", "{backbone}/{sequence}/fold{fold}"),
    benchmark:
        P.benchmark("training", "{backbone}/{sequence}/fold{fold}")
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
        " {params.pretrained} 2> {log:q}"
