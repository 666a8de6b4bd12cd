"""Evaluation of frozen encoders, torch-free: does CO-SSL beat its base method, and is it
more robust? (``shared/METHOD.md``, "Evaluation protocol").

- :mod:`.probe` linear probe (numpy logistic regression) on a seeded stratified split;
- :mod:`.knn` weighted kNN (Wu et al. 2018);
- few-shot episodes: :func:`cossl_edge.evaluation.episodes.evaluate_episodes` (CL2N prototypes);
- :mod:`.corruptions` Gaussian input noise, and internal masking of feature-map positions
  before pooling;
- :mod:`.redundancy` mean pairwise cosine similarity between an image's local vectors;
- :mod:`.features` what turns prepared images into embeddings (+ local maps): an ONNX model
  or raw pixels (a run directory's torch encoder is in ``cossl_edge.training.run_features``);
- :mod:`.protocol` all of it on one labelled set, as one JSON-ready dict;
- :mod:`.plots` PNG curves and bars (matplotlib, Agg).
"""
