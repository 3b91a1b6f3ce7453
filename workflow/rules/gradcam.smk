# Grad-CAM heat maps of the external images (figure 7), one job per backbone x sequence:
# the fold models' mean CAM on the uncropped slices, with a summary table of every image.
rule gradcam:
    input:
        checkpoints=FOLD_CHECKPOINTS,
        verified=MODELS_VERIFIED,
        cache=model_cache,
        images=model_images,
        # This sequence's ensemble only (not case_level, which mixes all sequences): a
        # changed T2 image reruns the T2 maps only.
        ensemble_predictions=P.ensembling("{backbone}", "{sequence}"),
        files=sequence_inputs,
    output:
        table=report(P.gradcam_table("{backbone}", "{sequence}"), caption="../report/gradcam_table.rst",
                     category="6. Interpretability", subcategory="Grad-CAM peak in box",
                     labels={"backbone": "{backbone}", "sequence": "{sequence}"}),
        figure=figure_report(P.figure(paths.gradcam_figure("{backbone}", "{sequence}")), "fig7.rst",
                             "6. Interpretability", "Figure 7", backbone="{backbone}", sequence="{sequence}"),
    params:
        settings=settings("classes", "data", "preprocessing", "training", "inference", "decision", "gradcam",
                          "labels", *VOLUME_SECTIONS),
        images_dir=IMAGES_DIR,
        figure=lambda wildcards, output: paths.figure_stem(output.figure[0]),
    log:
        P.log("gradcam", "{backbone}/{sequence}"),
    benchmark:
        P.benchmark("gradcam", "{backbone}/{sequence}")
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
        mem_mb=model_memory,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx gradcam {input.checkpoints:q} --settings {params.settings:q}"
        " --cache {input.cache:q} --images {input.images:q} --ensemble-predictions {input.ensemble_predictions:q}"
        " --images-dir {params.images_dir:q} --backbone {wildcards.backbone:q} --out {output.table:q}"
        " --figure {params.figure:q} 2> {log:q}"
