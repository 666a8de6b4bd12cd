"""The node throughput benchmark's readings (benchmarks/node_throughput.py), without a
network: its rates from the node's log, its counts of the maps and SEGs in the PACS, and the
targets its section of docs/benchmarks.md states."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
sys.path.insert(0, BENCHMARKS)
import node_throughput as nt  # noqa: E402

sys.path.remove(BENCHMARKS)  # its modules (datasets.py, ...) must not shadow packages later


def _log(t0: float) -> list[dict]:
    """Two series: the last instance classified 4 s in, complete after a 1 s quiet period,
    stored 0.5 s and 1.5 s later."""
    return [{"event": "image", "t": t0 + 1.0}, {"event": "image", "t": t0 + 4.0},
            {"event": "series_complete", "series": "a", "t": t0 + 5.0},
            {"event": "series_complete", "series": "b", "t": t0 + 5.0},
            {"event": "report", "series": "a", "s": 0.3},
            {"event": "sent", "series": "a", "t": t0 + 5.5, "s": 0.1},
            {"event": "sent", "series": "b", "t": t0 + 6.5, "s": 0.2}]


def test_rates_from_the_node_log():
    r = nt.rates(100.0, 103.0, 390, 400, 1.0, _log(100.0))
    assert r["received_per_s"] == pytest.approx(130)
    assert r["classified_per_s"] == pytest.approx(100)
    assert r["in_pacs_per_s"] == pytest.approx(400 / 5.5)  # less the quiet period
    assert r["in_pacs_with_quiet_per_s"] == pytest.approx(400 / 6.5)
    assert (r["sr_delay_mean_s"], r["sr_delay_max_s"]) == pytest.approx((1.0, 1.5))
    assert (r["report_s"], r["send_s"]) == ([0.3], [0.1, 0.2])


def test_objects_in_pacs_counts_objects_and_frames():
    class Pacs:
        def sop_classes(self, uid, frames=False):
            held = {"s1": [(nt.PARAMETRIC_MAP, 3), (nt.SEGMENTATION, 3),
                           (nt.COMPREHENSIVE_SR, 1)],
                    "s2": [(nt.SEGMENTATION, 1), (nt.SEGMENTATION, 1),
                           (nt.COMPREHENSIVE_SR, 1), ("1.2.840.10008.5.1.4.1.1.2", 1)]}
            out = Counter()
            for sop_class, n in held[uid]:
                out[sop_class] += n if frames else 1
            return out

    assert nt.objects_in_pacs(Pacs(), ["s1", "s2"]) == {
        "sr": 2, "pmap": 1, "seg": 3, "pmap_frames": 3, "seg_frames": 5}


def test_doc_section_states_the_targets_met_or_not():
    row = {"setting": "overlays-tls", "associations": 1, "instances": 200, "called": 75,
           "stored": {"pmap": 1, "seg": 1, "pmap_frames": 75, "seg_frames": 75},
           "received_per_s": 90.0, "classified_per_s": 88.0, "in_pacs_per_s": 55.0,
           "in_pacs_with_quiet_per_s": 44.0, "sr_delay_mean_s": 1.1, "sr_delay_max_s": 1.1}
    record = {"command": ".venv/bin/python benchmarks/node_throughput.py", "cpus": 2,
              "machine": "x86_64", "loadavg_1_5_15": [[0.5, 0.5, 0.5], [2.0, 1.0, 1.0]],
              "rows": [row], "reference_per_s": dict.fromkeys((
                  "storescu_to_orthanc", "bare_pynetdicom", "bare_pynetdicom_node_transport",
                  "node_sender_to_orthanc_quick_ack_false",
                  "node_sender_to_orthanc_quick_ack_true"), 1.0)}
    text = nt.doc_section(record, 200, 1.0)
    assert text.startswith(nt.START) and text.rstrip().endswith(nt.END)
    assert "| local, SR + PMAP + SEG, scanner over TLS | 1 | 200 | 75 | 75 / 75 (1 / 1) |" \
        in text
    assert "55 (44)" in text and "load average 0.5–2.0" in text
    assert text.count("**yes**") == 2
    slow = nt.doc_section({**record, "rows": [{**row, "in_pacs_per_s": 49.0}]}, 200, 1.0)
    assert "in every setting:\n**no**" in slow
