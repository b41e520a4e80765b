"""The ``figure1`` study: the paper's Figure 1 as the paper ran it.

A four-layer CNN (cuda-convnet ``layers-18pct``, :mod:`alexnet_bench.cifar_net`) with ReLU or
tanh, no regularisation; per activation a learning-rate sweep picks the rate that reaches the
target training error (25%) in the fewest epochs, then fresh seeds at the chosen rates give the
tanh / ReLU ratio of epochs to the target with a confidence interval.

Modules: :mod:`.settings` (the ``figure1:`` block of config.yaml -> grid and run configs; light,
the workflow imports it), :mod:`.analysis` (learning-rate selection on runs read through
:mod:`alexnet_bench.collect`), :mod:`.results` (selection.json, summary.json and its schema; the
ratio from :mod:`alexnet_bench.effects`) and :mod:`.cli` (``alexnet-bench figure1
train|select|summarize``; ``train`` is one seed, launched like every study cell). The study's
pictures and tables are a view in :mod:`alexnet_bench.reports.figure1_view`, which imports this
package, never the other way round.
"""
