"""Names shared by the exporter and the edge runtime: ONNX inputs, outputs, metadata keys.

An exported encoder is one ONNX file with input ``image`` (N×C×S×S float32, already through
the contract's ``normalize``), output ``embedding`` (N×D, the pooled representation), and
with ``--local-map`` a second output ``local_map`` (N×D×h×w, before pooling).
Its ``metadata_props`` hold the keys below, every value a string (JSON where structured).
"""

INPUT = "image"
OUTPUT = "embedding"
LOCAL_MAP = "local_map"
ANOMALY_MAP = "anomaly_map"  # N×h×w: departure from the training images' normal model

KEY_CONTRACT = "cossl_edge.contract"  # PreprocessContract.to_json()
KEY_METHOD = "cossl_edge.method"  # JSON: {"method", "arch", "width", "w_s", ...}
KEY_VERSION = "cossl_edge.version"  # package version that exported it
KEY_FINGERPRINT = "cossl_edge.data_fingerprint"  # sha256 of the training data ids
KEY_CENTERING = "cossl_edge.centering"  # JSON list: mean embedding of calibration images
KEY_EMBED_DIM = "cossl_edge.embedding_dim"
KEY_PRECISION = "cossl_edge.precision"  # "fp32" | "int8"
KEY_INT8_TARGET = "cossl_edge.int8_target"  # int8 files: the CPU kind it was tuned for
# 3D files only (pretrain --volumes): VolumeContract.to_json(); its input is N×1×S×S×S and
# its local_map N×D×d×h×w. 2D files have no such key.
KEY_VOLUME = "cossl_edge.volume"
