"""Phantoms: synthetic chest scans with a known finding, for ``cossl-edge demo`` and the
clinical examples. Only their pixels ship here (:mod:`cossl_edge.phantoms.pixels`, numpy
only; 3D chest CT volumes in :mod:`cossl_edge.phantoms.volumes`, their anatomy in
:mod:`cossl_edge.phantoms.chest3d`); the examples' DICOM headers and fake patients stay
in ``clinical_examples/``."""
