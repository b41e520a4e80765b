# The figure1 study: the paper's Figure 1 as the paper ran it (`snakemake --cores all figure1`).
# Not part of the default target. Study logic lives in alexnet_bench.figure1; the rules only
# call `alexnet-bench figure1 train|select|summarize`. One job per run, like every study cell.
# Every step runs per init of figure1.inits (variance_preserving, cuda_convnet):
#   sweep:  one job per (init, activation, lr, seed); each run stops at the target
#   select: per init the fastest rate per activation -> results/figure1/<init>/selection.json
#   final:  one job per (init, activation, seed): a fresh seed at the selected rate
#   summary: per-init ratios with CIs, the interaction, checks -> results/figure1/summary.json;
#            reports/figure1/ (figure, md)
rule figure1:
    input:
        f"{FIG1_RESULTS}/summary.json",
        f"{FIG1_REPORTS}/figure1.png",


rule figure1_sweep:
    output:
        "results/figure1/{init}/sweep/{activation}/lr{lr}/seed{seed}/metrics.json",
    log:
        "logs/figure1/{init}/sweep/{activation}/lr{lr}/seed{seed}.log",
    benchmark:
        "logs/benchmark/figure1/{init}/sweep/{activation}/lr{lr}/seed{seed}.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    threads: config["threads_per_job"]
    resources:
        gpu=1 if USE_GPU_RESOURCE else 0,
    params:
        run_config=figure1_run_config("sweep", 0),
        provenance=figure1_run_config("sweep", 1),
        data=figure1_run_config("sweep", "data"),
        out=subpath(output[0], parent=True),
        flags=untracked(lambda wc: FIG1_TRAIN_FLAGS),
    shell:
        "alexnet-bench figure1 train --config-json {params.run_config:q}"
        " --provenance-json {params.provenance:q} --expect-data {params.data:q}"
        " --seed {wildcards.seed} --out {params.out} {params.flags}"
        " --label study=figure1 --label stage=sweep --label init={wildcards.init}"
        " --label activation={wildcards.activation}"
        " > {log} 2>&1"


rule figure1_select:
    input:
        figure1_sweep_metrics,
    output:
        selection="results/figure1/{init}/selection.json",
        table="results/figure1/{init}/sweep.csv",
    log:
        "logs/figure1/{init}/select.log",
    benchmark:
        "logs/benchmark/figure1/{init}/select.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    params:
        identity=FIG1_IDENTITY,
        settings=untracked(lambda wc: FIG1_SETTINGS),
        results=subpath(output.selection, ancestor=2),
    shell:
        "alexnet-bench figure1 select --settings-json {params.settings:q}"
        " --init {wildcards.init} --results {params.results} > {log} 2>&1"


rule figure1_final:
    input:
        selection="results/figure1/{init}/selection.json",
    output:
        "results/figure1/{init}/final/{activation}/seed{seed}/metrics.json",
    log:
        "logs/figure1/{init}/final/{activation}/seed{seed}.log",
    benchmark:
        "logs/benchmark/figure1/{init}/final/{activation}/seed{seed}.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    threads: config["threads_per_job"]
    resources:
        gpu=1 if USE_GPU_RESOURCE else 0,
    params:
        run_config=figure1_run_config("final", 0),
        provenance=figure1_run_config("final", 1),
        data=figure1_run_config("final", "data"),
        out=subpath(output[0], parent=True),
        flags=untracked(lambda wc: FIG1_TRAIN_FLAGS),
    shell:
        "alexnet-bench figure1 train --config-json {params.run_config:q}"
        " --provenance-json {params.provenance:q} --expect-data {params.data:q}"
        " --lr-from {input.selection} --activation {wildcards.activation}"
        " --seed {wildcards.seed} --out {params.out} {params.flags}"
        " --label study=figure1 --label stage=final --label init={wildcards.init}"
        " --label activation={wildcards.activation}"
        " > {log} 2>&1"


rule figure1_summary:
    input:
        selection=figure1_selections(),
        final=figure1_final_metrics(),
    output:
        summary=f"{FIG1_RESULTS}/summary.json",
        table=f"{FIG1_RESULTS}/final.csv",
        figure=report(
            f"{FIG1_REPORTS}/figure1.png",
            caption="../report/figure1.rst",
            category="Figure 1 study",
        ),
        svg=f"{FIG1_REPORTS}/figure1.svg",
        markdown=f"{FIG1_REPORTS}/summary.md",
    log:
        "logs/figure1/summary.log",
    benchmark:
        "logs/benchmark/figure1/summary.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    params:
        identity=FIG1_IDENTITY,
        settings=untracked(lambda wc: FIG1_SETTINGS),
        results=subpath(output.summary, parent=True),
        out=subpath(output.figure, parent=True),
    shell:
        "alexnet-bench figure1 summarize --settings-json {params.settings:q}"
        " --results {params.results} --out {params.out} > {log} 2>&1"
