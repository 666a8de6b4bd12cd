"""Volumes: a CT/MR series or a NIfTI file as one D×H×W float array in [0, 1], at a chosen
spacing, with its orientation kept (numpy only at run time; nibabel for NIfTI, the
``[volumes]`` extra). :func:`discover_volumes` finds them in a folder, :func:`load_volume`
reads one; a series that cannot be a volume is reported with the rule it breaks."""

from cossl_edge.volumes.dicom_volume import dicom_volume
from cossl_edge.volumes.discovery import (
    VolumeDiscovery,
    VolumeRef,
    discover_volumes,
    load_volume,
    load_volumes,
)
from cossl_edge.volumes.nifti import is_nifti, nifti_volume
from cossl_edge.volumes.volume import Volume, VolumeSkip, resample

__all__ = [
    "Volume", "VolumeDiscovery", "VolumeRef", "VolumeSkip", "dicom_volume",
    "discover_volumes", "is_nifti", "load_volume", "load_volumes", "nifti_volume", "resample",
]
