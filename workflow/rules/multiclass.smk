# Study shapes beyond the reference study (issue 13): clinical fusion (stage `fusion`), the
# N-class tables (`multiclass_evaluation`) and figures (`multiclass_figures`). Requested
# through STUDY_OUTPUTS (workflow/rules/common.smk) when the study is not of the reference
# shape; the tables' captions say why the meta-analysis does not run for these studies.


rule fusion:
    input:
        case_predictions=CASE_PREDICTIONS,
        cases=CASES,
    output:
        predictions=P.fusion_predictions,
        coefficients=report(P.table(paths.FUSION_COEFFICIENTS), caption="../report/fusion.rst",
                            category="4. Final system", subcategory="Clinical fusion"),
    params:
        settings=settings("classes", "fusion", "splits"),
    log:
        P.log("fusion", "fusion"),
    benchmark:
        P.benchmark("fusion", "fusion")
    localrule: True
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx fusion {input.case_predictions:q} --settings {params.settings:q} --cases {input.cases:q}"
        " --out {output.predictions:q} --coefficients {output.coefficients:q} 2> {log:q}"


rule multiclass_evaluation:
    input:
        images=ENSEMBLED,
        cases=CASE_PREDICTIONS,
        fusion=[P.fusion_predictions] if FUSION else [],
        # Audit mode: the distribution-shift summary comes before any metric (issue 15).
        shift_checked=SHIFT_CHECKED,
    output:
        tables=[report(path, caption="../report/multiclass_tables.rst", category="3. N-class evaluation",
                       subcategory="Tables", labels={"table": name})
                for name, path in MULTICLASS_TABLES.items()],
    params:
        settings=settings("classes", "labels", "evaluation", "decision", "planes", "sequences", "splits", "data"),
        out_dir=lambda wildcards, output: os.path.dirname(output.tables[0]),
        fusion=lambda wildcards, input: " ".join(f"--fusion-predictions {shlex.quote(f)}" for f in input.fusion),
        cases=lambda wildcards, input: " ".join(["--case-predictions", *map(shlex.quote, input.cases)])
        if input.cases else "",
    log:
        P.log("multiclass_evaluation", "multiclass_evaluation"),
    benchmark:
        P.benchmark("multiclass_evaluation", "multiclass_evaluation")
    localrule: True
    conda:
        "../../envs/evaluation.yaml"
    shell:
        "python -m spinedx multiclass_evaluation --settings {params.settings:q} --image-predictions {input.images:q}"
        " {params.cases} {params.fusion} --out-dir {params.out_dir:q} 2> {log:q}"


rule multiclass_figures:
    input:
        tables=list(MULTICLASS_TABLES.values()),
        images=ENSEMBLED,
        cases=CASE_PREDICTIONS,
    output:
        figures=[path for name in MULTICLASS_FIGURES
                 for path in figure_report(P.figure(name), "multiclass_figures.rst", "3. N-class evaluation",
                                           "Figures", figure=name)],
    params:
        settings=settings("classes", "labels", "figures", "backbones", *VOLUME_SECTIONS),
        tables_dir=lambda wildcards, input: os.path.dirname(input.tables[0]),
        fusion="--fusion" if FUSION else "",
        out_dir=lambda wildcards, output: os.path.dirname(output.figures[0]),
        cases=lambda wildcards, input: " ".join(["--case-predictions", *map(shlex.quote, input.cases)])
        if input.cases else "",
    log:
        P.log("multiclass_figures", "multiclass_figures"),
    benchmark:
        P.benchmark("multiclass_figures", "multiclass_figures")
    localrule: True
    conda:
        "../../envs/figures.yaml"
    shell:
        "python -m spinedx multiclass_figures --settings {params.settings:q} --tables-dir {params.tables_dir:q}"
        " --image-predictions {input.images:q} {params.cases} {params.fusion} --out-dir {params.out_dir:q}"
        " 2> {log:q}"
