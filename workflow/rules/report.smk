# Reports: aggregate every cell of the study into reports/ (HTML, Markdown, CSV, PNG/SVG).


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
    log:
        "logs/report.log",
    benchmark:
        "logs/benchmark/report.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    params:
        results=lambda wc, input: results_dir(input.metrics),
        out=subpath(output.html, parent=True),
        study=lambda wc: json.dumps(config, sort_keys=True),
    shell:
        "alexnet-bench report --results {params.results} --out {params.out}"
        " --study-json {params.study:q} --expected {input.metrics} > {log} 2>&1"
