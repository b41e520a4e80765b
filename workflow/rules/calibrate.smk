# Calibration: train every candidate setting of the preset's free knobs on the baseline and the
# fragile arms, then judge the candidates by the criteria of config.yaml's `calibration` block.
#   snakemake --cores all calibrate     # -> reports/calibration/{calibration.csv,.md,.png}


rule calibration_train:
    input:
        peak=peak_file,
    output:
        metrics=f"{CALIBRATION_RESULTS}/{{candidate}}/{{ablation}}/seed{{seed}}/metrics.json",
        history=f"{CALIBRATION_RESULTS}/{{candidate}}/{{ablation}}/seed{{seed}}/history.csv",
    log:
        "logs/calibration/{candidate}/{ablation}/seed{seed}.log",
    benchmark:
        "logs/benchmark/calibration/{candidate}/{ablation}/seed{seed}.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    threads: job_threads
    resources:
        gpu=gpu_resource,
    params:
        run_config=run_config,
        data=run_data,
        provenance=run_provenance,
        out=subpath(output.metrics, parent=True),
        on_gpus=config["on_insufficient_gpus"],
        standins=config["cpu_standins"],
        lock_dir=untracked(lambda wc: config["gpu_lock_dir"]),
    shell:
        "alexnet-bench train --config-json {params.run_config:q}"
        " --provenance-json {params.provenance:q} --expect-data {params.data:q}"
        " --out {params.out}"
        " --label candidate={wildcards.candidate} --label ablation={wildcards.ablation}"
        " --label seed={wildcards.seed} --gpu-lock-dir {params.lock_dir}"
        " --on-insufficient-gpus {params.on_gpus} --cpu-standins {params.standins} --record-failures"
        " --peak-flops {input.peak} > {log} 2>&1"


rule calibration_report:
    input:
        metrics=calibration_metrics(),
    output:
        table=f"{CALIBRATION_REPORTS}/calibration.csv",
        markdown=f"{CALIBRATION_REPORTS}/calibration.md",
        figure=report(
            f"{CALIBRATION_REPORTS}/calibration.png",
            caption="../report/figure.rst",
            category="Calibration",
        ),
    log:
        "logs/calibration_report.log",
    benchmark:
        "logs/benchmark/calibration_report.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    params:
        results=lambda wc, input: results_dir(input.metrics, depth=3),
        out=subpath(output.table, parent=True),
        study=lambda wc: json.dumps(study_identity(config)),  # candidates in config order
    shell:
        "alexnet-bench calibration-report --results {params.results} --out {params.out}"
        " --study-json {params.study:q} > {log} 2>&1"


rule calibrate:
    input:
        rules.calibration_report.output,
