# Participant flow (STARD 2015 item 19, stage participant_flow): from the cases table, the
# image table, the annotations stage's exclusion records, the folds, the case-level
# predictions (the ensembled image predictions where labels belong to images) and the
# reader study. Folds or hold-out partitions (P.splits), every cohort.
rule participant_flow:
    input:
        cases=CASES,
        images=P.images_table,
        excluded=expand(P.annotation_exclusions("{sequence}"), sequence=SEQUENCES),
        case_predictions=ISSUE15_CASE_PREDICTIONS,
        image_predictions=ISSUE15_IMAGE_PREDICTIONS,
        folds=[] if AUDIT else P.splits,
        readers=READERS_FILE or [],
    output:
        table=report(P.table(paths.FLOW_TABLE), caption="../report/participant_flow.rst",
                     category="1. Cohort", subcategory="Participant flow (STARD 19)"),
        figure=figure_report(P.figure(paths.FLOW_FIGURE), "participant_flow.rst", "1. Cohort",
                             "Participant flow (STARD 19)"),
    params:
        settings=settings("classes", "audit", "data", "splits", "sequences", "planes", *VOLUME_SECTIONS),
        figure=lambda wildcards, output: paths.figure_stem(output.figure[0]),
        folds=lambda wildcards, input: f"--folds {shlex.quote(input.folds)}" if input.folds else "",
        readers=lambda wildcards, input: f"--readers {shlex.quote(input.readers)}" if input.readers else "",
    log:
        P.log("participant_flow", "participant_flow"),
    benchmark:
        P.benchmark("participant_flow", "participant_flow")
    localrule: True
    conda:
        "../../envs/figures.yaml"
    shell:
        "python -m spinedx participant_flow --settings {params.settings:q} --cases {input.cases:q}"
        " --images {input.images:q} --excluded {input.excluded:q} --case-predictions {input.case_predictions:q}"
        " --image-predictions {input.image_predictions:q}"
        " {params.folds} {params.readers} --out {output.table:q} --figure {params.figure:q} 2> {log:q}"


# Detection studies: the detection_cases stage's table, the folds, the candidates stage's
# lesion tables and the readers' (stage participant_flow, detection_main_stage).
if DETECTION and DETECTION_ISSUE15:

    rule detection_participant_flow:
        input:
            cases=P.detection_cases,
            lesion_hits=per_pair(P.detection_lesion_hits),
            folds=P.folds,
            reader_lesions=[P.detection_reader_lesions] if READER_MARKS else [],
        output:
            table=report(P.table(paths.FLOW_TABLE), caption="../report/participant_flow.rst",
                         category="1. Cohort", subcategory="Participant flow (STARD 19)"),
            figure=figure_report(P.figure(paths.FLOW_FIGURE), "participant_flow.rst", "1. Cohort",
                                 "Participant flow (STARD 19)"),
        params:
            settings=settings("sequences", "detection", "detection_evaluation", "splits"),
            figure=lambda wildcards, output: paths.figure_stem(output.figure[0]),
            readers=lambda wildcards, input: (f"--reader-lesions {shlex.quote(input.reader_lesions[0])}"
                                              if input.reader_lesions else ""),
        log:
            P.log("participant_flow", "detection_participant_flow"),
        benchmark:
            P.benchmark("participant_flow", "detection_participant_flow")
        localrule: True
        conda:
            "../../envs/figures.yaml"
        shell:
            "python -m spinedx detection_participant_flow --settings {params.settings:q} --cases {input.cases:q}"
            " --lesion-hits {input.lesion_hits:q} --folds {input.folds:q} {params.readers}"
            " --out {output.table:q} --figure {params.figure:q} 2> {log:q}"

    ruleorder: detection_participant_flow > participant_flow
