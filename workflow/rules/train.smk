# Training: one job per (preset, ablation, seed) cell, calling the package CLI.


rule train:
    input:
        peak=peak_file,
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
        out=subpath(output.metrics, parent=True),
        record=lambda wc: (
            "--record-failures" if config["failed_runs"] == "record" else ""
        ),
        on_gpus=config["on_insufficient_gpus"],
        standins=config["cpu_standins"],
        lock_dir=config["gpu_lock_dir"],
    shell:
        "alexnet-bench train --config-json {params.run_config:q} --out {params.out}"
        " --label preset={wildcards.preset} --label ablation={wildcards.ablation}"
        " --label seed={wildcards.seed} --gpu-lock-dir {params.lock_dir}"
        " --on-insufficient-gpus {params.on_gpus} --cpu-standins {params.standins} {params.record}"
        " --peak-flops {input.peak}"
        " > {log} 2>&1"


rule ablation_activation:
    input:
        family_metrics("activation"),


rule ablation_lrn:
    input:
        family_metrics("lrn"),


rule ablation_dropout:
    input:
        family_metrics("dropout"),


rule ablation_augmentation:
    input:
        family_metrics("augmentation"),


rule ablation_pooling:
    input:
        family_metrics("pooling"),


rule ablation_gpus:
    input:
        family_metrics("gpus"),
