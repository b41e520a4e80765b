# The host's CPU peak FLOP/s, measured once per results directory before any training job
# (every job waits for it and divides its FLOP/s by it, so MFU is never against a disturbed probe).


rule peak_flops:
    output:
        "results/{preset}/peak_flops.json",
    log:
        "logs/peak_flops/{preset}.log",
    benchmark:
        "logs/benchmark/peak_flops/{preset}.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    threads: max(PEAK_THREADS)  # it runs before any training job; nothing else disturbs it
    params:
        threads=" ".join(map(str, PEAK_THREADS)),
    shell:
        "alexnet-bench peak-flops --out {output} --threads {params.threads} > {log} 2>&1"
