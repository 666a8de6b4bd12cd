"""Example 2: CR/DX radiographs (MONOCHROME1 and MONOCHROME2) → few-shot finding classifier
with an abstain threshold.

    python clinical_examples/radiograph_findings/run.py [--tiny] [--abstain 0.5]

Writes chest radiographs of fake patients (half CR, half DX; half stored MONOCHROME1, where
dense is dark, which the reader inverts), pretrains a small co-simclr encoder on the unlabelled
ones, exports it to int8, fits a prototype classifier on 5 labelled images per finding, and
predicts the others: below the abstain threshold the answer is ``unknown`` (left to a
reader). It prints coverage and accuracy with and without abstaining.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import clinical_examples.common as ex  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = ex.example_parser(__doc__, "radiograph-output", "data, run, classifier, predictions",
                            "small data, a few steps")
    parser.add_argument("--abstain", type=float, default=0.5,
                        help="answer 'unknown' below this probability (default 0.5)")
    parser.add_argument("--model", type=Path, default=None,
                        help="use this exported encoder instead of pretraining one")
    args = parser.parse_args(argv)
    ph = ex.phantoms()
    n_train, n_eval = (24, 24) if args.tiny else (480, 150)
    data = args.out / "data"
    with ex.console.status("writing CR/DX phantom radiographs"):
        ph.write_dataset(data / "unlabelled", 0, 0, n_train, seed=20, labels_csv=False)
        ph.write_dataset(data / "labelled", 0, 0, n_eval, seed=21, first_patient=500)
    model = args.model
    if model is None:
        seconds, steps = ex.budget(args.tiny, args.time_budget, "3m")
        model = ex.pretrain_and_export(data / "unlabelled", args.out / "run", size=24 if args.tiny
                                    else 32, time_budget=seconds, max_steps=steps)
    labelled = data / "labelled"
    support, query = ex.split_labels(labelled / "labels.csv", shots=3 if args.tiny else 5)
    ex.console.rule(f"few-shot findings, abstain below {args.abstain}")
    clf = args.out / "findings.json"
    ex.cossl_edge("fewshot", "fit", model, labelled, "--labels", support, "--out", clf,
               "--abstain", args.abstain)
    preds = args.out / "predictions.csv"
    ex.cossl_edge("fewshot", "predict", clf, labelled, "--out", preds)
    truth = ex.truth_by_id(labelled, query)
    got = ex.read_predictions(preds)
    answered = [i for i in truth if got[i][0] != "unknown"]
    correct = sum(got[i][0] == truth[i] for i in answered)
    all_correct = sum(got[i][1] == truth[i] for i in truth)  # the best class, always
    result = {"coverage": len(answered) / len(truth),
              "accuracy_answered": correct / max(1, len(answered)),
              "accuracy_all": all_correct / len(truth)}
    ex.console.print(f"{len(truth)} held-out radiographs: answered {len(answered)} "
                  f"({100 * result['coverage']:.0f}%), {100 * result['accuracy_answered']:.1f}% "
                  f"of those correct; without abstaining {100 * result['accuracy_all']:.1f}%")
    return result


if __name__ == "__main__":
    main()
