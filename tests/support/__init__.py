"""Shared test fixtures, written once: ``from support.<module> import ...``.

- :mod:`support.ports` — a free loopback port;
- :mod:`support.folders` — labelled class folders (shapes, per-class brightness) and plain
  folders of PNGs;
- :mod:`support.models` — tiny ONNX encoders with the project's metadata (global and local);
- :mod:`support.runs` — a tiny run directory as ``pretrain`` writes it.

Each module imports only what it needs (numpy, Pillow; onnx and torch inside the builders),
so the edge tests' minimal environment can import the torch-free ones.
"""
