"""CO-SSL pretraining (installed as ``cossl_edge.training``; needs the ``[train]`` extra)."""
