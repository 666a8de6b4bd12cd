"""The edge runtime: an exported model and what it reads and gives.

- :mod:`~cossl_edge.runtime.metadata`: the ONNX input, output and metadata names;
- :mod:`~cossl_edge.runtime.model`: opening the file and its checks (:class:`ModelError`);
- :mod:`~cossl_edge.runtime.pooling`: the global pooling, in numpy;
- :mod:`~cossl_edge.runtime.encoder`: :class:`Encoder`, contract → session → readings;
- :mod:`~cossl_edge.runtime.embeddings`: the embedding file (``embed``);
- :mod:`~cossl_edge.runtime.predictor`: :class:`Predictor`, model + classifier →
  probabilities and heatmaps, the one inference path of the CLI, the node and benchmarks;
- :mod:`~cossl_edge.runtime.heatmaps`: heatmap pictures.

Nothing here imports the few-shot heads (:mod:`cossl_edge.fewshot` sits above): a
:class:`Predictor` takes any classifier with the small protocol it names.
"""
