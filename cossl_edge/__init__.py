"""cossl-edge: CO-SSL pretraining, ONNX export and a torch-free edge runtime.

The base package (this one) never imports torch, MONAI or albumentations: it runs on a
scanner console or a vehicle computer with numpy, onnxruntime, pydicom and typer only.
Pretraining lives in :mod:`cossl_edge.training`, export in :mod:`cossl_edge.export`.
"""

from cossl_edge.contract import PreprocessContract

__version__ = "0.1.0"

__all__ = ["PreprocessContract", "__version__"]
