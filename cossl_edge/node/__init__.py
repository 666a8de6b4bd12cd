"""A torch-free DICOM node: receive images by C-STORE, classify each series with a few-shot
classifier, and send the result back as a DICOM Comprehensive SR.

The flow, one direction::

    scanner ──C-STORE──▶ SCP (scp.py) ──fsync'd file──▶ spool/ (spool.py)
        + state.sqlite (state.py, its tables in state_schema.py)
        worker (worker.py): series quiet for N s → selection rules (rules.py)
        → classification (classify.py) → SR (structured_report.py), heatmap SCs of a local
        classifier (capture.py), its Parametric Maps and Segmentations per series
        (overlays.py, overlay_frames.py) → sender: C-STORE to the PACS (forward.py)

``server.py`` holds the :class:`~cossl_edge.node.server.Node` that ``cossl-edge serve`` runs:
it builds these parts and starts and stops their threads.

Every step is a state change in one SQLite file (WAL) beside the spool, committed before the
next step starts, so a node killed at any point resumes where it stood. Needs the ``[node]``
extra (pynetdicom, highdicom); nothing here imports torch.
"""

from __future__ import annotations

from cossl_edge.node.config import NodeConfig

__all__ = ["NodeConfig"]
