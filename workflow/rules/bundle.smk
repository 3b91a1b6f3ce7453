# The released models: fold checkpoints, model card and SHA256SUMS (spinedx.bundle).
rule bundle:
    input:
        checkpoints=expand(rules.training.output.checkpoint, backbone=BACKBONES, sequence=SEQUENCES, fold=FOLDS),
        images=rules.merge_annotations.output,
        table3=rules.evaluation.output.table3,
        internal_case=rules.evaluation.output.internal_case,
    output:
        models=expand(f"{RESULTS}/bundle/models/{{backbone}}/{{sequence}}/fold{{fold}}.pt",
                      backbone=BACKBONES, sequence=SEQUENCES, fold=FOLDS),
        card_json=f"{RESULTS}/bundle/model_card.json",
        card_md=f"{RESULTS}/bundle/model_card.md",
        manifest=f"{RESULTS}/bundle/SHA256SUMS",
    params:
        settings=settings(*BUNDLE_CONFIG_SECTIONS),
        out_dir=subpath(output.manifest, parent=True),
    log:
        log_path("bundle", "bundle"),
    benchmark:
        benchmark_path("bundle", "bundle")
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx bundle {input.checkpoints:q} --settings {params.settings:q} --images {input.images:q}"
        " --external-metrics {input.table3:q} --internal-metrics {input.internal_case:q}"
        " --out-dir {params.out_dir:q} 2> {log:q}"
