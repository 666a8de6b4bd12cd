"""Phantoms: synthetic chest scans with a known finding, for ``cossl-edge demo`` and the
clinical examples. Only their pixels ship here (:mod:`cossl_edge.phantoms.pixels`, numpy
only); the examples' DICOM headers and fake patients stay in ``clinical_examples/``."""
