# Distribution shift (stage distribution_shift). A study: the training cohort's reference
# (features of every fold model, image statistics), which the bundle carries; per model x
# sequence, from the cache and image table the model reads (a volume study: its input
# mode's cache and crops table). Audit mode:
# the new cohort against the bundle's reference, before the evaluation tables.
if SHIFT_REFERENCES:

    rule shift_reference:
        input:
            checkpoints=expand(P.checkpoint("{backbone}", "{sequence}", "{fold}"),
                               backbone=BACKBONES, sequence=SEQUENCES, fold=FOLDS),
            caches=SHIFT_CACHES,
            images=SHIFT_IMAGES,
            folds=P.splits,  # k-fold folds or hold-out partitions (N-class studies)
        output:
            SHIFT_REFERENCES,
        params:
            settings=settings("classes", "sequences", "backbones", "training", "inference", "distribution_shift",
                              *VOLUME_SECTIONS),
        log:
            P.log("distribution_shift", "shift_reference"),
        benchmark:
            P.benchmark("distribution_shift", "shift_reference")
        threads: config["training"]["threads"]
        resources:
            gpu=config["training"]["gpus"],
        conda:
            "../../envs/torch.yaml"
        shell:
            "python -m spinedx shift_reference {input.checkpoints:q} --settings {params.settings:q}"
            " --caches {input.caches:q} --images {input.images:q} --folds {input.folds:q} --out {output:q} 2> {log:q}"


if SHIFT_OUTPUTS:

    rule distribution_shift:
        input:
            checkpoints=expand(FOLD_CHECKPOINTS, backbone=BACKBONES, sequence=SEQUENCES),
            verified=MODELS_VERIFIED,
            references=AUDIT_SHIFT_REFERENCES,
            caches=SHIFT_CACHES,
            images=SHIFT_IMAGES,
        output:
            table=report(SHIFT_OUTPUTS[0], caption="../report/distribution_shift.rst",
                         category="0. Distribution shift (audit)", subcategory="Per image"),
            summary=report(SHIFT_OUTPUTS[1], caption="../report/distribution_shift.rst",
                           category="0. Distribution shift (audit)", subcategory="Summary"),
            figure=figure_report(P.figure(paths.SHIFT_FIGURE), "distribution_shift.rst",
                                 "0. Distribution shift (audit)", "Summary"),
        params:
            settings=settings("classes", "sequences", "backbones", "training", "inference", "distribution_shift",
                              *VOLUME_SECTIONS),
            figure=lambda wildcards, output: paths.figure_stem(output.figure[0]),
        log:
            P.log("distribution_shift", "distribution_shift"),
        benchmark:
            P.benchmark("distribution_shift", "distribution_shift")
        threads: config["training"]["threads"]
        resources:
            gpu=config["training"]["gpus"],
        conda:
            "../../envs/torch.yaml"
        shell:
            "python -m spinedx distribution_shift {input.checkpoints:q} --settings {params.settings:q}"
            " --references {input.references:q} --caches {input.caches:q} --images {input.images:q}"
            " --table {output.table:q} --summary {output.summary:q} --figure {params.figure:q} 2> {log:q}"
