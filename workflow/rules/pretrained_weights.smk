# One backbone's pretrained weights, fetched through timm's hub cache (or a local file
# checked) once, before any of its training jobs (spinedx.stages.pretrained_weights). A
# local rule: on a cluster it runs on the submitting node, which can reach the hub.
rule pretrained_weights:
    input:
        pretrained_weight_files,
    output:
        P.pretrained_record("{backbone}"),
    params:
        settings=settings("training"),
    log:
        P.log("pretrained_weights", "{backbone}"),
    benchmark:
        P.benchmark("pretrained_weights", "{backbone}")
    localrule: True
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m spinedx pretrained_weights --settings {params.settings:q} --backbone {wildcards.backbone:q}"
        " --out {output:q} 2> {log:q}"
