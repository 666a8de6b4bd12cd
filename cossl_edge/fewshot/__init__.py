"""Few-shot classification on a model's readings: numpy-only heads behind one protocol.

- leaves that nothing cycles through: :mod:`~cossl_edge.fewshot.maths` (CL2N, softmax,
  weighted votes, AUC), :mod:`~cossl_edge.fewshot.errors`, :mod:`~cossl_edge.fewshot.logreg`,
  :mod:`~cossl_edge.fewshot.normal` (the one normal-class rule);
- heads (:mod:`~cossl_edge.fewshot.head`'s protocol: fit → JSON-ready params, proba, check):
  prototypes, logistic regression, kNN (:mod:`~cossl_edge.fewshot.embedding_heads`), local
  with its scorings (:mod:`~cossl_edge.fewshot.local`, :mod:`~cossl_edge.fewshot.positions`),
  anomaly (:mod:`~cossl_edge.fewshot.anomaly`), named in one table
  (:mod:`~cossl_edge.fewshot.heads`);
- the classifier file, an envelope around a head (:mod:`~cossl_edge.fewshot.classifier`);
- :func:`~cossl_edge.fewshot.binding.open_predictor`: a classifier file and its model as a
  :class:`~cossl_edge.runtime.predictor.Predictor`.
"""

from cossl_edge.fewshot.classifier import UNKNOWN, FewShotClassifier, Prediction
from cossl_edge.fewshot.errors import ClassifierError
from cossl_edge.fewshot.heads import HEADS, make_head
from cossl_edge.fewshot.maths import cl2n
from cossl_edge.fewshot.normal import NORMAL_NAMES, normal_class_of

KINDS = tuple(HEADS)  # what --classifier offers, besides auto
READS = {kind: head.reads for kind, head in HEADS.items()}

__all__ = ["HEADS", "KINDS", "NORMAL_NAMES", "READS", "UNKNOWN", "ClassifierError",
           "FewShotClassifier", "Prediction", "cl2n", "make_head", "normal_class_of"]
