# Comparison of two results directories (or cells) by `alexnet-bench compare`, configured by
# config.yaml's `compare` block (docs/compare.md); not part of the default target:
#   snakemake --cores 1 compare --config 'compare={base: results-v1/default}'
rule compare:
    output:
        html=f"{COMPARE['out']}/index.html",
        markdown=f"{COMPARE['out']}/compare.md",
        json=f"{COMPARE['out']}/compare.json",
    log:
        "logs/compare.log",
    benchmark:
        "logs/benchmark/compare.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    params:
        base=compare_side("base"),
        new=compare_side("new"),
        out=subpath(output.html, parent=True),
        threshold=COMPARE["threshold"],
        margin=COMPARE["margin"],
        report_only="" if COMPARE["fail_on_regression"] else "--report-only",
        results_version=compare_fingerprint,
    shell:
        "alexnet-bench compare {params.base:q} {params.new:q} --out {params.out:q}"
        " --threshold {params.threshold} --margin {params.margin:q} {params.report_only}"
        " > {log} 2>&1"
