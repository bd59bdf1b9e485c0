"""lib.experiments: what is specific to one paper's experiments, moved out of its notebook.

One module per notebook (``am_gradcam`` for 01, ``lcam`` for 02, ``sacam`` for 03, ``ucag`` for 04,
``fmgcam`` for 05): the evaluation loops, per-image tables and figures that only that paper needs.
What the notebooks share (statistics, tables, claims, the map store, seeded draws) is in
:mod:`lib.analysis`; the methods and metrics themselves are in :mod:`lib.cams` and :mod:`lib.metrics`.
"""
