"""Reading scans: every supported upload or file becomes a :class:`Scan` of 2D float32 slices in [0, 1].

Formats are recognised by their first bytes, not by their names (a PNG named ``.jpg`` is still a PNG); the name is
only a hint, for DICOM files written without the 128-byte preamble. Everything happens in memory: nothing is
written to disk, archives are never extracted, and sizes are checked before pixels are decoded or archives
unpacked, so a small upload cannot make the server allocate gigabytes.

Anything that cannot be read raises :class:`ScanError` with a message written for the person who uploaded the
file: what is wrong, and what to do about it.

One module per concern: ``scan`` (the result, the error, shared limits and checks), ``sniff`` (format detection),
``reader`` (the entry point and dispatch), ``images``, ``dicom``, ``nifti`` and ``archives`` (gzip and zip).
"""

from .archives import MAX_ZIP_MEMBERS
from .images import LUMA_WEIGHTS
from .nifti import FOREGROUND_LEVEL
from .reader import MAX_FILE_BYTES, read_scan
from .scan import MAX_PIXELS, MAX_UNPACKED_BYTES, MAX_VOXELS, MIN_SIDE, ROBUST_PERCENTILES, Scan, ScanError
from .sniff import READABLE, SUPPORTED_EXTENSIONS

__all__ = [
    "FOREGROUND_LEVEL",
    "LUMA_WEIGHTS",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MAX_UNPACKED_BYTES",
    "MAX_VOXELS",
    "MAX_ZIP_MEMBERS",
    "MIN_SIDE",
    "READABLE",
    "ROBUST_PERCENTILES",
    "SUPPORTED_EXTENSIONS",
    "Scan",
    "ScanError",
    "read_scan",
]
