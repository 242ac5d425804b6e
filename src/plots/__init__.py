"""Figures for nnlab, one module per subject; each function writes one PNG and closes its figure.

    common       the Agg backend, figure/save helpers, log axes that tolerate zeros and NaN
    data         a dataset's scatter (the `generate` stage)
    runs         a training run's curves, decision boundary, activation histograms, layer diagnostics
    grids        a sweep's leaderboard, curves by job, a metric against a swept parameter
    activations  S2: activation histogram grids and gradient norms by layer (untrained nets)
    toys         S3/S4 toys: optimizer trajectories on a valley, the clipping toy

A leaf package: it imports NumPy and matplotlib only (never the rest of nnlab), so anything may draw with it.
This file imports nothing, so `import src.plots.<module>` costs only what that module needs.
"""
