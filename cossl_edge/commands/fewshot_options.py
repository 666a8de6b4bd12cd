"""The options ``fewshot fit`` and ``fewshot eval`` share."""

from __future__ import annotations

import typer

from cossl_edge.commands.common import choices
from cossl_edge.fewshot import KINDS
from cossl_edge.fewshot.local import SCORINGS

Classifier = choices("Classifier", ("auto", *KINDS))
Scoring = choices("Scoring", ("auto", *SCORINGS))
KIND = typer.Option(Classifier("auto"), "--classifier", help="auto: chooses from the "
                    "support set itself, leaving one image out, between proto and anomaly "
                    "(when the model has an anomaly map and the task is normal against one "
                    "finding), and says which; proto: CL2N nearest prototype (SimpleShot); "
                    "logreg: L2 logistic regression (numpy); knn: cosine kNN; anomaly: one "
                    "threshold on the model's anomaly map (its departure from the unlabeled "
                    "training images), with heatmaps; local: every local vector scored "
                    "(--local-scoring), with heatmaps, for a model exported with --local-map.")
NORMAL = typer.Option(None, "--normal-class", help="anomaly, auto and local: the class "
                      "without a finding (by default the one class named normal, "
                      "no_finding, negative, functional, good or ok).")
SCORING = typer.Option(Scoring("auto"), "--local-scoring", help="local: prototype (each "
                       "local vector against the class prototypes of the pooled "
                       "embeddings), memory (nearest normal support vector, PatchCore-style), "
                       "hybrid (the sum of both, each standardised on the normal support), or "
                       "auto: hybrid for a GeM- or max-pooled model (pretrain --findings "
                       "local), memory for a mean-pooled one.")
