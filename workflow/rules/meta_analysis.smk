# Bivariate Bayesian meta-analysis of the fold models' Se/Sp (table + figures 4 and 5).
# The statistics are R (R/meta_analysis.R, R/bivariate.stan) called through rpy2; the
# compiled Stan model is cached outside the results (${XDG_CACHE_HOME:-~/.cache}/spinedx/stan).
rule meta_analysis:
    input:
        fold_2x2=rules.evaluation.output.fold_2x2,
        r_code=f"{workflow.basedir}/R/meta_analysis.R",
        stan_model=f"{workflow.basedir}/R/bivariate.stan",
    output:
        table=report(f"{RESULTS}/tables/meta_analysis.csv", caption="../report/meta_analysis.rst",
                     category="5. Meta-analysis", subcategory="Pooled Se/Sp"),
        sroc_pdf=f"{RESULTS}/figures/fig5_sroc.pdf",
        sroc_png=report(f"{RESULTS}/figures/fig5_sroc.png", caption="../report/fig5.rst",
                        category="5. Meta-analysis", subcategory="Figure 5"),
        forests=[path for input in [*SEQUENCES, "ALL"] for path in (
            f"{RESULTS}/figures/fig4_forest_{input}.pdf",
            report(f"{RESULTS}/figures/fig4_forest_{input}.png", caption="../report/fig4.rst",
                   category="5. Meta-analysis", subcategory="Figure 4", labels={"input": input}))],
    params:
        settings=settings("meta_analysis"),
        figures_dir=subpath(output.sroc_pdf, parent=True),
    log:
        log_path("meta_analysis", "meta_analysis"),
    benchmark:
        benchmark_path("meta_analysis", "meta_analysis")
    conda:
        "../../envs/r.yaml"
    shell:
        "python -m spinedx meta_analysis --settings {params.settings:q} --fold-2x2 {input.fold_2x2:q}"
        " --out {output.table:q} --figures-dir {params.figures_dir:q} 2> {log:q}"
