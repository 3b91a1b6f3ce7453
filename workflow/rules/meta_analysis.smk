# Bivariate Bayesian meta-analysis of the fold models' Se/Sp (table + figures 4 and 5).
# The statistics are R (R/meta_analysis.R, R/bivariate.stan) called through rpy2; the
# compiled Stan model is cached outside the results (${XDG_CACHE_HOME:-~/.cache}/spinedx/stan).
rule meta_analysis:
    input:
        fold_2x2=EVALUATION_TABLES["fold_2x2"],
        r_code=f"{workflow.basedir}/R/meta_analysis.R",
        stan_model=f"{workflow.basedir}/R/bivariate.stan",
    output:
        table=report(P.table(paths.META_ANALYSIS_TABLE), caption="../report/meta_analysis.rst",
                     category="5. Meta-analysis", subcategory="Pooled Se/Sp"),
        sroc=figure_report(P.figure(paths.SROC_FIGURE), "fig5.rst", "5. Meta-analysis", "Figure 5"),
        forests=[path for input_ in META_ANALYSIS_INPUTS
                 for path in figure_report(P.figure(paths.forest_figure(input_)), "fig4.rst",
                                           "5. Meta-analysis", "Figure 4", input=input_)],
    params:
        settings=settings("meta_analysis"),
        figures_dir=lambda wildcards, output: os.path.dirname(output.sroc[0]),
    log:
        P.log("meta_analysis", "meta_analysis"),
    benchmark:
        P.benchmark("meta_analysis", "meta_analysis")
    conda:
        "../../envs/r.yaml"
    shell:
        "python -m spinedx meta_analysis --settings {params.settings:q} --fold-2x2 {input.fold_2x2:q}"
        " --out {output.table:q} --figures-dir {params.figures_dir:q} 2> {log:q}"
