# Detection (issue 16): the cases and their volumes, the networks' inputs, the folds, and
# the demo's synthetic readers. Rules exist only with task.type detection.
if DETECTION:

    wildcard_constraints:
        model="|".join(map(re.escape, DETECTION_TASK.models)),
        detection_input="|".join(map(re.escape, DETECTION_TASK.inputs)),

    rule detection_cases:
        input:
            cases=CASES,
            volumes=lambda wildcards: DETECTION_INPUT_FILES,  # a function, like annotations: the tree lies under images_dir
        output:
            cases=P.detection_cases,
            lesions=P.detection_lesions,
        params:
            settings=settings("sequences", "data", "audit"),
            images_dir=IMAGES_DIR,
        log:
            P.log("detection_cases", "detection_cases"),
        benchmark:
            P.benchmark("detection_cases", "detection_cases")
        localrule: True
        conda:
            "../../envs/data.yaml"
        shell:
            "python -m spinedx detection_cases --settings {params.settings:q} --images-dir {params.images_dir:q}"
            " --cases {input.cases:q} --out {output.cases:q} --lesions-out {output.lesions:q} 2> {log:q}"

    rule detection_preprocessing:
        input:
            P.detection_cases,
        output:
            volumes=P.detection_volumes,
            table=P.detection_preprocessing,
        params:
            settings=settings("sequences", "data", "detection_preprocessing"),
        log:
            P.log("detection_preprocessing", "detection_preprocessing"),
        benchmark:
            P.benchmark("detection_preprocessing", "detection_preprocessing")
        resources:
            mem_mb=config["training"]["mem_mb"],
        conda:
            "../../envs/data.yaml"
        shell:
            "python -m spinedx detection_preprocessing --settings {params.settings:q} --cases {input:q}"
            " --out {output.volumes:q} --table-out {output.table:q} 2> {log:q}"

    rule detection_splits:
        input:
            P.detection_cases,
        output:
            P.folds,
        params:
            settings=settings("splits"),
        log:
            P.log("splits", "detection_splits"),
        benchmark:
            P.benchmark("splits", "detection_splits")
        localrule: True
        conda:
            "../../envs/data.yaml"
        shell:
            "python -m spinedx detection_splits --settings {params.settings:q} --cases {input:q} --out {output:q}"
            " 2> {log:q}"

    # The same folds file as the classification study's: the detection rule writes it.
    ruleorder: detection_splits > splits

    if DETECTION_DEMO_READERS:

        rule detection_demo_readers:
            input:
                cases=CASES,
                volumes=lambda wildcards: DETECTION_INPUT_FILES,  # a function, like annotations: the tree lies under images_dir
            output:
                READER_MARKS,
            params:
                settings=settings("demo_cohort", "sequences", "detection_evaluation", "data"),
                images_dir=IMAGES_DIR,
            log:
                P.log("detection_demo_readers", "detection_demo_readers"),
            benchmark:
                P.benchmark("detection_demo_readers", "detection_demo_readers")
            localrule: True
            conda:
                "../../envs/data.yaml"
            shell:
                "python -m spinedx detection_demo_readers --settings {params.settings:q}"
                " --images-dir {params.images_dir:q} --cases {input.cases:q} --out {output:q} 2> {log:q}"
