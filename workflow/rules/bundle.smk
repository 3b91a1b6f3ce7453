# The released models: fold checkpoints, model card and manifest (spinedx.stages.bundle).
rule bundle:
    input:
        checkpoints=expand(P.checkpoint("{backbone}", "{sequence}", "{fold}"),
                           backbone=BACKBONES, sequence=SEQUENCES, fold=FOLDS),
        images=P.images_table,
        table3=EVALUATION_TABLES["table3"],
        internal_case=EVALUATION_TABLES["internal_case"],
        shift_references=SHIFT_REFERENCES,
    output:
        models=BUNDLE_MODELS,
        shift_references=[P.bundle.shift_reference(b, s) for b, s in SHIFT_JOBS] if SHIFT_REFERENCES else [],
        card_json=P.bundle.card_json,
        card_md=P.bundle.card_md,
        manifest=P.bundle.manifest,
    params:
        settings=settings(*BUNDLE_CONFIG_SECTIONS, *VOLUME_SECTIONS),
        out_dir=subpath(output.manifest, parent=True),
    log:
        P.log("bundle", "bundle"),
    benchmark:
        P.benchmark("bundle", "bundle")
    localrule: True
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx bundle {input.checkpoints:q} --settings {params.settings:q} --images {input.images:q}"
        " --external-metrics {input.table3:q} --internal-metrics {input.internal_case:q}"
        " --shift-references {input.shift_references:q} --out-dir {params.out_dir:q} 2> {log:q}"
