# Audit mode (config audit.bundle): verify the released bundle and the new cohort before
# any model is used; `audit` is the target (`spinedx audit` runs it).
if AUDIT:

    rule audit_verify:
        input:
            manifest=f"{AUDIT_BUNDLE}/SHA256SUMS",
            card=f"{AUDIT_BUNDLE}/model_card.json",
            models=expand(f"{AUDIT_BUNDLE}/models/{{backbone}}/{{sequence}}/fold{{fold}}.pt",
                          backbone=BACKBONES, sequence=SEQUENCES, fold=FOLDS),
            images=rules.merge_annotations.output,
        output:
            AUDIT_VERIFIED,
        params:
            bundle=AUDIT_BUNDLE,
        log:
            log_path("audit", "audit_verify"),
        benchmark:
            benchmark_path("audit", "audit_verify")
        conda:
            "../../envs/data.yaml"
        shell:
            "python -m spinedx audit --verify-only --bundle {params.bundle:q} --images {input.images:q}"
            " --out {output:q} 2> {log:q}"

    rule audit:
        input:
            STUDY_OUTPUTS,
            rules.provenance.output,
