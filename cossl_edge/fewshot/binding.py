"""A classifier file and the model it was fitted on, opened together: what ``fewshot
predict`` and the node serve."""

from __future__ import annotations

from pathlib import Path

from cossl_edge.fewshot.classifier import FewShotClassifier


def open_predictor(classifier_file: str | Path, model: str | Path | None = None,
                   threads: int = 0, spinning: bool = True, check=None):
    """(the classifier, a :class:`~cossl_edge.runtime.predictor.Predictor` of it on its
    model): ``model`` or the one recorded at fit, which must be that same model (its
    sha256); a model exported without a contract takes the one the file recorded.
    ``check(classifier)``, when given, runs before the model is opened."""
    from cossl_edge.runtime.encoder import open_with_contract  # onnxruntime: only here
    from cossl_edge.runtime.predictor import Predictor

    clf = FewShotClassifier.load(classifier_file)
    if check is not None:
        check(clf)
    if model is None and not clf.model_path:
        raise ValueError(f"{classifier_file}: records no model; pass --model MODEL.onnx")
    model_path = Path(model or clf.model_path)
    encoder = open_with_contract(model_path, clf.contract, threads, spinning)
    clf.check_model(encoder.sha256, model_path, classifier_file)
    return clf, Predictor(encoder, clf)
