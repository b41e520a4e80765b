# Training: one job per (preset, ablation, seed) cell, calling the package CLI.


rule train:
    input:
        peak=peak_file,
        prepared=prepared_inputs,
    output:
        metrics="results/{preset}/{ablation}/seed{seed}/metrics.json",
        history="results/{preset}/{ablation}/seed{seed}/history.csv",
    log:
        "logs/train/{preset}/{ablation}/seed{seed}.log",
    benchmark:
        "logs/benchmark/{preset}/{ablation}/seed{seed}.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    threads: job_threads
    resources:
        gpu=gpu_resource,
    params:
        run_config=run_config,
        data=run_data,
        provenance=run_provenance,
        rebuild=rebuild_missing,
        out=subpath(output.metrics, parent=True),
        record=lambda wc: (
            "--record-failures" if config["failed_runs"] == "record" else ""
        ),
        on_gpus=config["on_insufficient_gpus"],
        standins=config["cpu_standins"],
        lock_dir=untracked(lambda wc: config["gpu_lock_dir"]),
    shell:
        "alexnet-bench train --config-json {params.run_config:q}"
        " --provenance-json {params.provenance:q} --expect-data {params.data:q}"
        " {params.rebuild} --out {params.out}"
        " --label preset={wildcards.preset} --label ablation={wildcards.ablation}"
        " --label seed={wildcards.seed} --gpu-lock-dir {params.lock_dir}"
        " --on-insufficient-gpus {params.on_gpus} --cpu-standins {params.standins} {params.record}"
        " --peak-flops {input.peak}"
        " > {log} 2>&1"


# One target per ablation family in config.yaml (ablation_activation, ablation_lrn, ...): the
# baseline plus the study's ablations of that family, no report.
for _family in ABLATION_FAMILIES:

    rule:
        name:
            f"ablation_{_family}"
        input:
            family_metrics(_family),
