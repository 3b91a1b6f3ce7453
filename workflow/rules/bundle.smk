# The released models: fold checkpoints, model card and manifest (spinedx.stages.bundle).
rule bundle:
    input:
        checkpoints=expand(P.checkpoint("{backbone}", "{sequence}", "{fold}"),
                           backbone=BACKBONES, sequence=SEQUENCES, fold=FOLDS),
        images=P.images_table,
        # Two classes: the binary case-level tables; more: the N-class overall table.
        metrics=([EVALUATION_TABLES["table3"], EVALUATION_TABLES["internal_case"]] if BINARY_TABLES
                 else [MULTICLASS_TABLES[paths.MULTICLASS_OVERALL]]),
        shift_references=SHIFT_REFERENCES,
    output:
        models=BUNDLE_MODELS,
        shift_references=BUNDLE_SHIFT_REFERENCES,
        card_json=P.bundle.card_json,
        card_md=P.bundle.card_md,
        manifest=P.bundle.manifest,
    params:
        settings=settings(*BUNDLE_CONFIG_SECTIONS, *VOLUME_SECTIONS),
        out_dir=subpath(output.manifest, parent=True),
        metrics=lambda wildcards, input: (
            f"--external-metrics {shlex.quote(input.metrics[0])} --internal-metrics {shlex.quote(input.metrics[1])}"
            if BINARY_TABLES else f"--multiclass-metrics {shlex.quote(input.metrics[0])}"),
    log:
        P.log("bundle", "bundle"),
    benchmark:
        P.benchmark("bundle", "bundle")
    localrule: True
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx bundle {input.checkpoints:q} --settings {params.settings:q} --images {input.images:q}"
        " {params.metrics} --shift-references {input.shift_references:q} --out-dir {params.out_dir:q} 2> {log:q}"
