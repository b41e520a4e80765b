# Reports: aggregate every cell of the study into reports/ (HTML, Markdown, CSV, PNG/SVG).
# `snakemake --report reports/snakemake-report.zip` packs the page, figures and tables.


rule report:
    input:
        metrics=study_metrics(),
    output:
        html=report(
            f"{REPORTS}/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
        summary=f"{REPORTS}/summary.md",
        figures=report(
            directory(f"{REPORTS}/figures"),
            patterns=["{name}.png"],
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
        tables=report(
            directory(f"{REPORTS}/tables"),
            patterns=["{name}.csv"],
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{name}"},
        ),
    log:
        "logs/report.log",
    benchmark:
        "logs/benchmark/report.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    params:
        results=lambda wc, input: results_dir(input.metrics),
        out=subpath(output.html, parent=True),
        study=lambda wc: json.dumps(study_identity(config), sort_keys=True),
        captions=output_captions(),
        figure1=FIG1_RESULTS,
        # not an input (the default target never runs figure1); its summary's hash reruns the
        # report when figure1 results appear or change
        figure1_version=lambda wc: figure1_fingerprint(),
    shell:
        "alexnet-bench report --results {params.results} --out {params.out}"
        " --study-json {params.study:q} --figure1 {params.figure1}"
        " --expected {input.metrics} > {log} 2>&1"
