rule annotations:
    input:
        files=sequence_inputs,
        cases=CASES,
        boxes=BOXES,
    output:
        table=P.annotations("{sequence}"),
        # What the table leaves out, and why (read by the participant flow).
        excluded=P.annotation_exclusions("{sequence}"),
    params:
        settings=settings("classes", "sequences", "data", "audit", "labels"),
        images_dir=IMAGES_DIR,
    log:
        P.log("annotations", "{sequence}"),
    benchmark:
        P.benchmark("annotations", "{sequence}")
    # Volume studies read every volume here: a job for the cluster, not the head node.
    localrule: not VOLUMES
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m spinedx annotations --settings {params.settings:q} --images-dir {params.images_dir:q}"
        " --cases {input.cases:q} --sequence {wildcards.sequence:q} --out {output.table:q}"
        " --excluded {output.excluded:q} 2> {log:q}"


rule merge_annotations:
    input:
        expand(P.annotations("{sequence}"), sequence=SEQUENCES),
    output:
        P.images_table,
    params:
        settings=settings(),
        images_dir=IMAGES_DIR,
    log:
        P.log("annotations", "merge_annotations"),
    benchmark:
        P.benchmark("annotations", "merge_annotations")
    localrule: True
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m spinedx merge_annotations {input:q} --settings {params.settings:q}"
        " --images-dir {params.images_dir:q} --out {output:q} 2> {log:q}"
