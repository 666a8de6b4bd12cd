"""cossl-edge: CO-SSL pretraining, ONNX export and a torch-free edge runtime.

The base package (this one) never imports torch, MONAI or albumentations: it runs on a
scanner console or a vehicle computer with numpy, onnxruntime, pydicom and typer only.
Pretraining lives in :mod:`cossl_edge.training`, export in :mod:`cossl_edge.export`.
"""

from cossl_edge.contract import PreprocessContract

__version__ = "0.1.0"

# The edge API, imported on first use so that `import cossl_edge` stays light (no onnxruntime).
_LAZY = {
    "Encoder": "cossl_edge.runtime.encoder",
    "FewShotClassifier": "cossl_edge.fewshot",
    "cl2n": "cossl_edge.fewshot",
    "evaluate_episodes": "cossl_edge.evaluation.episodes",
    "embed_to_file": "cossl_edge.runtime.embeddings",
    "load_embeddings": "cossl_edge.runtime.embeddings",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cossl_edge' has no attribute {name!r}")


__all__ = ["PreprocessContract", "__version__", *_LAZY]
