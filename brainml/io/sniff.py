"""Recognising a file's format from its first bytes, and the messages for files that are no scan at all."""

from __future__ import annotations

import struct
from pathlib import Path, PurePosixPath

from .scan import ScanError

SUPPORTED_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "gif", "dcm", "dicom", "nii", "gz", "zip")
READABLE = "PNG, JPEG, TIFF, BMP, WebP, GIF, DICOM (one file, or a zip of a series) or NIfTI (.nii, .nii.gz)"
IMAGE_LABELS = {"PNG": "PNG", "JPEG": "JPEG", "TIFF": "TIFF", "BMP": "BMP", "WEBP": "WebP", "GIF": "GIF"}
NOT_SCANS = {
    "PDF": "This file is a PDF, not an image or a scan. Export the slice from the PDF viewer as PNG, or upload "
    "the original image.",
    "TEXT": "This file holds text, not an image or a scan. Upload the scan itself; BrainML reads {readable}.",
    "RAR": "This is a RAR archive; BrainML opens zip archives. Re-pack the files as a .zip and upload that.",
    "7Z": "This is a 7-Zip archive; BrainML opens zip archives. Re-pack the files as a .zip and upload that.",
    "TAR": "This is a tar archive; BrainML opens zip archives. Re-pack the files as a .zip and upload that.",
    "HEIC": "This is a HEIC/HEIF photo, which BrainML does not read. Export it as JPEG or PNG and upload that.",
    "NIfTI-pair": "This is the header half of a NIfTI/Analyze pair (.hdr + .img); BrainML reads single-file "
    "NIfTI. Convert the pair to one .nii or .nii.gz file (e.g. with nibabel or FSL) and upload that.",
}
_DICOM_SUFFIXES = {".dcm", ".dicom", ".ima", ""}


def detect_format(data: bytes) -> str | None:
    """The format named by the file's first bytes, or None."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM") and len(data) >= 26:
        return "BMP"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[128:132] == b"DICM":
        return "DICOM"
    if head.startswith(b"\x1f\x8b"):
        return "GZIP"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "ZIP"
    nifti = nifti_version(data)
    if nifti:
        return "NIfTI-pair" if nifti == "pair" else "NIfTI"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith(b"Rar!\x1a\x07"):
        return "RAR"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7Z"
    if data[257:262] == b"ustar":
        return "TAR"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heif"):
        return "HEIC"
    if _is_text(data):
        return "TEXT"
    return None


def _is_text(data: bytes) -> bool:
    sample = data[:4096]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        # The sample may end inside a multi-byte character.
        try:
            text = sample[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return bool(text) and sum(ch.isprintable() or ch in "\r\n\t" for ch in text) >= 0.97 * len(text)


def nifti_version(data: bytes) -> str | None:
    """ "1" or "2" for single-file NIfTI, "pair" for a .hdr of a NIfTI/Analyze pair, None otherwise."""
    if len(data) < 348:
        return None
    for endian in "<>":
        (header_size,) = struct.unpack(endian + "i", data[:4])
        if header_size == 348:
            magic = data[344:348]
            return "1" if magic == b"n+1\x00" else "pair" if magic in (b"ni1\x00", b"\x00\x00\x00\x00") else None
        if header_size == 540 and len(data) >= 540:
            magic = data[4:8]
            return "2" if magic == b"n+2\x00" else "pair" if magic == b"ni2\x00" else None
    return None


def dicom_name_hint(name: str | None) -> bool:
    """DICOM files often carry .dcm/.ima or no extension at all (IM0001, 1.2.840...)."""
    if not name:
        return False
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    return suffix in _DICOM_SUFFIXES or suffix[1:].isdigit()


def looks_like_raw_dicom(data: bytes) -> bool:
    """A DICOM stream without preamble starts with an element of group 0002 (file meta) or 0008."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00") and data[3] == 0


def unrecognised(name: str | None) -> ScanError:
    suffix = Path(name).suffix.lower() if name else ""
    claim = f"Its name ends in {suffix}, but its contents are not that format. " if suffix else ""
    return ScanError(
        f"BrainML cannot tell what kind of file this is. {claim}BrainML reads {READABLE}; export the scan in one "
        "of these formats and upload it again."
    )
