# `snakemake --cores all [--resources gpu=N] plan`: the study's time, device-hours, energy and
# disk predicted before it runs, from timings measured on this host (docs/plan.md). It reruns
# when the config, --cores, the gpu resource or the state of the results change (a cell done,
# a checkpoint written); `snakemake --cores all plan -R plan` measures again regardless.


rule plan:
    output:
        json=f"{REPORTS}/plan/plan.json",
        md=f"{REPORTS}/plan/plan.md",
    log:
        "logs/plan.log",
    benchmark:
        "logs/benchmark/plan.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    threads: lambda wildcards: workflow.cores  # alone: no other job disturbs the probe
    params:
        study=lambda wc: json.dumps(config, sort_keys=True),
        cores=lambda wc: workflow.cores,
        gpu=lambda wc: plan_gpu_option(),
        state=plan_state,
        out=subpath(output.json, parent=True),
    shell:
        "alexnet-bench plan --study-json {params.study:q} --cores {params.cores} {params.gpu}"
        " --out {params.out} 2>&1 | tee {log}"
