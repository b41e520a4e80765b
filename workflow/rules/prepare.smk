# Prepared data: an image folder is decoded once per split and stored size into the cache
# (data_cache_dir), and every training cell reading it takes the store's token as input. A token
# (results/.prepared/<tree key>/...) names the store's content digest: the cells' identity. The
# job is a checkpoint: once it has run, Snakemake reads the digest again, so a rebuild that finds
# the same pixels (a touched file) retrains nothing, and an edited image retrains every cell
# reading that split. Where the tree and the cache lie is provenance, never a reason to rebuild.


checkpoint prepare_data:
    output:
        token=f"{PREPARED_TOKENS}/{{key}}/{{split}}-{{stored}}px{{fmt}}.json",
    log:
        "logs/prepare_data/{key}/{split}-{stored}px{fmt}.log",
    benchmark:
        "logs/benchmark/prepare_data/{key}/{split}-{stored}px{fmt}.tsv"
    conda:
        "../envs/alexnet-bench.yaml"
    threads: config["prepare_threads"]
    params:
        state=prepare_state,
        fingerprint=lambda wc: prepared_entry(wc.key)["tree"].fingerprint,
        val_fraction=lambda wc: prepared_entry(wc.key)["tree"].val_fraction,
        on_bad_image=prepare_on_bad_image,
        format=lambda wc: store_format(wc.fmt),
        root=prepare_root,
        cache_dir=prepare_cache_dir,
    shell:
        "alexnet-bench prepare-data --root {params.root:q} --split {wildcards.split}"
        " --stored-size {wildcards.stored} --format {params.format}"
        " --cache-dir {params.cache_dir:q} --fingerprint {params.fingerprint}"
        " --token {output.token} --state {params.state:q} --val-fraction {params.val_fraction}"
        " --on-bad-image {params.on_bad_image} --workers {threads} > {log} 2>&1"


# `snakemake --cores all prepare`: build (or check) every store the study reads, train nothing.
rule prepare:
    input:
        prepared_token_files,
