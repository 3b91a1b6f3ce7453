if DEMO:

    rule demo_cohort:
        output:
            # Every file is declared (planned without rendering), so the demo's inputs
            # are the same set of files before and after generation.
            images=[f"{IMAGES_DIR}/{path}" for files in DEMO_FILES.values() for path in files],
            cases=CASES,
        params:
            settings=settings("demo_cohort", "sequences"),
            images_dir=lambda wildcards, output: os.path.commonpath(output.images),
        log:
            P.log("demo_cohort", "demo_cohort"),
        benchmark:
            P.benchmark("demo_cohort", "demo_cohort")
        localrule: True
        conda:
            "../../envs/data.yaml"
        shell:
            "python -m spinedx demo_cohort --settings {params.settings:q}"
            " --images-dir {params.images_dir:q} --cases {output.cases:q} 2> {log:q}"
