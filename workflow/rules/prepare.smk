# Prepared data: an image folder is decoded once per split and stored size into the cache
# (data_cache_dir), and every training cell reading it takes the store as input. The store's
# directory names the tree's fingerprint, so a changed tree is a new store (rebuilt) and an
# unchanged one is reused by every later study.


rule prepare_data:
    output:
        manifest=f"{DATA_CACHE}/{{tree}}/{{split}}-{{stored}}px{{fmt}}/manifest.json",
    log:
        "logs/prepare_data/{tree}/{split}-{stored}px{fmt}.log",
    benchmark:
        "logs/benchmark/prepare_data/{tree}/{split}-{stored}px{fmt}.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    threads: config["prepare_threads"]
    params:
        root=lambda wc: prepared_tree(wc.tree)["root"],
        val_fraction=lambda wc: prepared_tree(wc.tree)["val_fraction"],
        on_bad_image=prepare_on_bad_image,
        format=lambda wc: wc.fmt.removeprefix("-") or "raw",
        out=subpath(output.manifest, parent=True),
    shell:
        "alexnet-bench prepare-data --root {params.root:q} --split {wildcards.split}"
        " --stored-size {wildcards.stored} --format {params.format} --out {params.out:q}"
        " --val-fraction {params.val_fraction} --on-bad-image {params.on_bad_image}"
        " --workers {threads} > {log} 2>&1"


# `snakemake --cores all prepare`: build (or check) every store the study reads, train nothing.
rule prepare:
    input:
        PREPARED_MANIFESTS,
