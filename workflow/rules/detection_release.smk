# Detection (issue 16): the released models (bundle), the provenance record, and in audit
# mode the check of a released detection bundle and the auditor's cohort. They write the
# same files as the classification rules of the same purpose, so they take precedence.
if DETECTION:

    rule detection_bundle:
        input:
            checkpoints=[P.detection_checkpoint(m, i, k) for m, i in DETECTION_PAIRS for k in FOLDS],
            cases=P.detection_cases,
            operating_points=DETECTION_TABLE_FILES[paths.DETECTION_OPERATING_POINTS],
            summary=DETECTION_TABLE_FILES[paths.DETECTION_SUMMARY],
        output:
            models=DETECTION_BUNDLE_MODELS,
            card_json=P.bundle.card_json,
            card_md=P.bundle.card_md,
            manifest=P.bundle.manifest,
        params:
            settings=settings(*DETECTION_BUNDLE_SECTIONS),
            out_dir=subpath(output.manifest, parent=True),
        log:
            P.log("bundle", "detection_bundle"),
        benchmark:
            P.benchmark("bundle", "detection_bundle")
        localrule: True
        conda:
            "../../envs/torch.yaml"
        shell:
            "python -m spinedx detection_bundle {input.checkpoints:q} --settings {params.settings:q}"
            " --cases {input.cases:q} --operating-points {input.operating_points:q}"
            " --summary {input.summary:q} --out-dir {params.out_dir:q} 2> {log:q}"

    rule detection_provenance:
        input:
            outputs=STUDY_OUTPUTS,
            detection_cases=P.detection_cases,
            cases=CASES,
            marks=[READER_MARKS] if READER_MARKS else [],
        output:
            P.provenance,
        params:
            settings=settings(*config),
            results_dir=subpath(output[0], parent=True),
            marks=lambda wildcards, input: f"--marks {shlex.quote(input.marks[0])}" if input.marks else "",
        log:
            P.log("provenance", "detection_provenance"),
        benchmark:
            P.benchmark("provenance", "detection_provenance")
        localrule: True
        conda:
            "../../envs/evaluation.yaml"
        shell:
            "python -m spinedx detection_provenance {input.outputs:q} --settings {params.settings:q}"
            " --detection-cases {input.detection_cases:q} --cases {input.cases:q} {params.marks}"
            " --results-dir {params.results_dir:q} --out {output:q} 2> {log:q}"

    ruleorder: detection_bundle > bundle
    ruleorder: detection_provenance > provenance

    if AUDIT:

        rule detection_audit_verify:
            input:
                manifest=paths.BundlePaths(AUDIT_BUNDLE).manifest,
                card=paths.BundlePaths(AUDIT_BUNDLE).card_json,
                models=[paths.BundlePaths(AUDIT_BUNDLE).model(m, i, k) for m, i in DETECTION_PAIRS for k in FOLDS],
                cases=P.detection_cases,
            output:
                P.audit_verified,
            params:
                settings=settings("sequences", "detection"),
                bundle=AUDIT_BUNDLE,
            log:
                P.log("audit", "detection_audit_verify"),
            benchmark:
                P.benchmark("audit", "detection_audit_verify")
            localrule: True
            conda:
                "../../envs/data.yaml"
            shell:
                "python -m spinedx detection_audit_verify --settings {params.settings:q} --bundle {params.bundle:q}"
                " --cases {input.cases:q} --out {output:q} 2> {log:q}"

        ruleorder: detection_audit_verify > audit_verify
