if DEMO:

    rule demo_cohort:
        output:
            images=directory(IMAGES_DIR),
            cases=CASES,
        params:
            settings=settings("demo_cohort", "sequences"),
        log:
            log_path("demo_cohort", "demo_cohort"),
        benchmark:
            benchmark_path("demo_cohort", "demo_cohort")
        conda:
            "../../envs/data.yaml"
        shell:
            "python -m spinedx demo_cohort --settings {params.settings:q}"
            " --images-dir {output.images:q} --cases {output.cases:q} 2> {log:q}"
