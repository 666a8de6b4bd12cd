"""Example 1: CT slices from DICOM series, lung window → few-shot triage of slices.

    python clinical_examples/ct_triage/run.py [--tiny] [--out ct-triage-output]

Writes CT series of fake patients (slope/intercept, window tags, slices in shuffled file
order), pretrains a small co-simclr encoder on the unlabelled series with the ``lung`` CT
window, exports it to int8, then with the ``cossl-edge`` edge commands: fits a prototype
classifier on 5 labelled slices per finding, triages every other labelled slice, and runs
few-shot episodes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import clinical_examples.common as ex  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = ex.example_parser(__doc__, "ct-triage-output", "data, run, classifier, predictions",
                            "small data, a few steps")
    parser.add_argument("--model", type=Path, default=None,
                        help="use this exported encoder instead of pretraining one")
    args = parser.parse_args(argv)
    ph = ex.phantoms()
    n_train, n_eval, slices = (2, 2, 9) if args.tiny else (16, 6, 24)
    data = args.out / "data"
    with ex.console.status("writing CT phantom series"):
        ph.write_dataset(data / "unlabelled", n_train, slices, 0, seed=10, labels_csv=False)
        ph.write_dataset(data / "labelled", n_eval, slices, 0, seed=11, first_patient=500)
    model = args.model
    if model is None:
        seconds, steps = ex.budget(args.tiny, args.time_budget, "3m")
        model = ex.pretrain_and_export(data / "unlabelled", args.out / "run", size=24 if args.tiny
                                    else 32, time_budget=seconds, max_steps=steps,
                                    window="lung")
    labelled = data / "labelled"
    support, query = ex.split_labels(labelled / "labels.csv", shots=3 if args.tiny else 5)
    ex.console.rule("few-shot triage (edge commands)")
    clf = args.out / "ct-triage.json"
    ex.cossl_edge("fewshot", "fit", model, labelled, "--labels", support, "--out", clf)
    preds = args.out / "predictions.csv"
    ex.cossl_edge("fewshot", "predict", clf, labelled, "--out", preds)
    truth = ex.truth_by_id(labelled, query)
    got = ex.read_predictions(preds)
    hits = [got[i][0] == lab for i, lab in truth.items()]
    flagged = sum(got[i][0] != "no_finding" for i in truth)
    ex.console.print(f"triage of {len(hits)} held-out slices: {100 * sum(hits) / len(hits):.1f}% "
                  f"correct, {flagged} flagged for review (nodule or effusion)")
    print(ex.cossl_edge("fewshot", "eval", model, labelled, "--labels", labelled / "labels.csv",
                     "--shots", "1,3" if args.tiny else "1,5,10",
                     "--episodes", 20 if args.tiny else 200))
    return {"accuracy": sum(hits) / len(hits), "queries": len(hits), "flagged": flagged}


if __name__ == "__main__":
    main()
