# Audit mode (config audit.bundle): verify the released bundle and the new cohort before
# any model is used; `audit` is the target (`spinedx audit` runs it).
if AUDIT:
    RELEASED = paths.BundlePaths(AUDIT_BUNDLE, SPLIT_SCHEME)  # the bundle's scheme (apply_bundle)

    rule audit_verify:
        input:
            manifest=RELEASED.manifest,
            card=RELEASED.card_json,
            models=expand(RELEASED.model("{backbone}", "{sequence}", "{fold}"),
                          backbone=BACKBONES, sequence=SEQUENCES, fold=FOLDS),
            images=P.images_table,
        output:
            P.audit_verified,
        params:
            bundle=AUDIT_BUNDLE,
        log:
            P.log("audit", "audit_verify"),
        benchmark:
            P.benchmark("audit", "audit_verify")
        localrule: True
        conda:
            "../../envs/data.yaml"
        shell:
            "python -m spinedx audit --verify-only --bundle {params.bundle:q} --images {input.images:q}"
            " --out {output:q} 2> {log:q}"

    rule audit:
        input:
            STUDY_OUTPUTS,
            P.provenance,
        localrule: True
