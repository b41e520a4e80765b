"""``alexnet-bench plan``: a study's cost and statistical power, predicted before it runs.

One module per job:

* :mod:`.cells`: the study's cells on the target host and what each still needs (epochs,
  images; a completed cell nothing, a resumable one its remaining epochs).
* :mod:`.probe` / :mod:`.probe_worker`: timed steps, evaluation, checkpoints and process
  start-up measured on this machine, in fresh processes running side by side as the study's
  jobs would.
* :mod:`.recorded`: the same rates read back from an earlier results directory instead.
* :mod:`.cost`: job durations, device-seconds, energy and disk from those rates.
* :mod:`.schedule`: the workflow's jobs packed onto ``--cores`` and the ``gpu`` resource.
* :mod:`.power`: seeds needed per claim and ablation, from a pilot study's spread.
* :mod:`.build`: all of it assembled into one plan; :mod:`.render`: table, Markdown, JSON.
* :mod:`.actual`: the plan against what the study then took (the report's section).
"""
