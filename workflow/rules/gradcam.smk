# Grad-CAM heat maps of the external images (figure 7), one job per backbone x sequence:
# the fold models' mean CAM on the uncropped slices, with a summary table of every image.
rule gradcam:
    input:
        checkpoints=FOLD_CHECKPOINTS,
        verified=MODELS_VERIFIED,
        cache=rules.preprocessing.output,
        images=rules.annotations.output,
        # This sequence's ensemble only (not case_level, which mixes all sequences): a
        # changed T2 image reruns the T2 maps only.
        ensemble_predictions=rules.ensembling.output,
        files=sequence_inputs,
    output:
        table=report(f"{RESULTS}/gradcam/{{backbone}}/{{sequence}}.csv", caption="../report/gradcam_table.rst",
                     category="6. Interpretability", subcategory="Grad-CAM peak in box",
                     labels={"backbone": "{backbone}", "sequence": "{sequence}"}),
        pdf=f"{RESULTS}/figures/fig7_gradcam_{{backbone}}_{{sequence}}.pdf",
        png=report(f"{RESULTS}/figures/fig7_gradcam_{{backbone}}_{{sequence}}.png", caption="../report/fig7.rst",
                   category="6. Interpretability", subcategory="Figure 7",
                   labels={"backbone": "{backbone}", "sequence": "{sequence}"}),
    params:
        settings=settings("classes", "data", "preprocessing", "training", "inference", "decision", "gradcam"),
        images_dir=IMAGES_DIR,
        figure=subpath(output.pdf, strip_suffix=".pdf"),
    log:
        log_path("gradcam", "{backbone}/{sequence}"),
    benchmark:
        benchmark_path("gradcam", "{backbone}/{sequence}")
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx gradcam {input.checkpoints:q} --settings {params.settings:q}"
        " --cache {input.cache:q} --images {input.images:q} --ensemble-predictions {input.ensemble_predictions:q}"
        " --images-dir {params.images_dir:q} --backbone {wildcards.backbone:q} --out {output.table:q}"
        " --figure {params.figure:q} 2> {log:q}"
