"""int8 for 3D encoders (``pretrain --volumes`` runs): ship it only where this CPU runs it
faster than fp32.

onnxruntime's static quantizer writes QDQ around every ``Conv`` whatever its rank, but
whether the CPU provider then runs a 3D convolution as an integer kernel (rather than
dequantizing around an fp32 one) depends on the build, so the export measures: fp32 and
int8 on a batch of calibration-sized volumes, at one and all threads, best of each. The
int8 file is kept when it quantized and is faster on the batch; otherwise the fp32 file is
the one to ship and the report and one printed line say why. Nothing is decided ahead of
the measurement.
"""

from __future__ import annotations

from cossl_edge.export.export_report import speedup

BATCHES = (1, 4)  # batch of volumes timed: one series, and a few series at once
DECISION_BATCH = 4


def decide(report: dict, error: str | None = None) -> dict:
    """``report['int8_decision']``: whether the int8 file is shipped, the measured ratios,
    and ``line``: the sentence the CLI prints."""
    if error is not None:
        return {"shipped": False, "reason": "not supported", "detail": error,
                "line": f"3D int8: not supported here ({error}); keeping fp32 encoder.onnx"}
    rows = report.get("latency") or []
    ratios = {f"speedup_batch{b}": speedup(rows, "ort-int8", "ort-fp32", batch=b)
              for b in BATCHES}
    ratio = ratios[f"speedup_batch{DECISION_BATCH}"]
    if ratio is None:
        return {"shipped": False, "reason": "not measured", **ratios,
                "line": "3D int8: latency not measured; keeping fp32 encoder.onnx"}
    cos = (report.get("int8_agreement") or {}).get("cosine_mean", float("nan"))
    figures = (f"int8 ×{ratio:.2f} the speed of fp32 at batch {DECISION_BATCH} "
               f"(×{ratios['speedup_batch1']:.2f} at batch 1), mean cosine {cos:.4f}")
    if ratio > 1.0:
        return {"shipped": True, "reason": "faster", **ratios,
                "line": f"3D int8: shipped encoder.int8.onnx ({figures})"}
    return {"shipped": False, "reason": "slower", **ratios,
            "line": f"3D int8: slower than fp32 on this CPU ({figures}); keeping fp32 "
                    "encoder.onnx, encoder.int8.onnx not written"}
