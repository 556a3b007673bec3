"""The entry point: fetch the bytes from wherever they are, then hand them to the reader for their format."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from .archives import gunzip, read_zip
from .dicom import dicom_scan, parse_dicom
from .images import read_image
from .nifti import read_nifti
from .scan import Scan, ScanError, size_text
from .sniff import (
    IMAGE_LABELS,
    NOT_SCANS,
    READABLE,
    detect_format,
    dicom_name_hint,
    looks_like_raw_dicom,
    unrecognised,
)

MAX_FILE_BYTES = 512 * 2**20


def read_scan(data: bytes | str | os.PathLike, name: str | None = None, slice_index: int | None = None) -> Scan:
    """Decode an uploaded file's bytes, or the file at a path, into a :class:`Scan`.

    Args:
        data: the file's bytes (an upload), a path to a file, or a binary file object.
        name: the file's name, for messages and for the hint DICOM files without a preamble need; defaults to
            the path's (or file object's) name.
        slice_index: the slice to choose instead of the default one.

    Returns:
        The scan, slices in [0, 1].

    Raises:
        ScanError: for anything that cannot be read; never another exception. Unexpected decoder failures keep
            the original exception as ``__cause__``.
    """
    raw, name = _load_source(data, name)
    try:
        scan = _read_bytes(raw, name)
    except ScanError as error:
        if error.filename or not name:
            raise
        raise ScanError(error.message, name) from error.__cause__
    except MemoryError as error:
        message = "The scan is too large to open in this server's memory. Upload a smaller file."
        raise ScanError(message, name) from error
    except Exception as error:
        raise ScanError(
            f"BrainML could not read this file: its decoder failed ({type(error).__name__}). The file may be damaged "
            "or use a variant BrainML does not support; export the scan again as PNG, DICOM or NIfTI and retry.",
            name,
        ) from error
    scan = replace(scan, name=name)
    if slice_index is not None:
        scan = replace(scan, chosen_slice=scan._checked_index(slice_index))
    return scan


def _load_source(source, name: str | None) -> tuple[bytes, str | None]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name
    if isinstance(source, (str, os.PathLike)):
        try:
            path = Path(source)
            if not path.exists():
                raise ScanError(f"There is no file at {path}. Check the path and try again.")
            if path.is_dir():
                raise ScanError(
                    f"{path} is a folder, not a file. Choose one scan file; for a DICOM series, zip the folder "
                    "and open the zip."
                )
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ScanError(f"{path} is larger than {size_text(MAX_FILE_BYTES)}, the most BrainML opens.")
            return path.read_bytes(), name or path.name
        except ScanError:
            raise
        except PermissionError as error:
            raise ScanError(f"BrainML is not allowed to read {source}. Check the file's permissions.") from error
        except (OSError, ValueError) as error:
            raise ScanError(f"{source} could not be read ({error.__class__.__name__}).") from error
    if hasattr(source, "read"):
        name = name or (os.path.basename(str(source.name)) if getattr(source, "name", None) else None)
        try:
            content = source.getvalue() if hasattr(source, "getvalue") else source.read(MAX_FILE_BYTES + 1)
        except Exception as error:
            raise ScanError(f"The upload could not be read ({type(error).__name__}). Upload it again.", name) from error
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ScanError("The upload was opened as text; BrainML needs its bytes (open it in binary mode).", name)
        if len(content) > MAX_FILE_BYTES:
            raise ScanError(f"The file is larger than {size_text(MAX_FILE_BYTES)}, the most BrainML opens.", name)
        return bytes(content), name
    raise ScanError(f"BrainML reads a file's bytes or a path, not a {type(source).__name__}.", name)


def _read_bytes(data: bytes, name: str | None, inside: str | None = None) -> Scan:
    """Dispatch on the file's first bytes. ``inside`` names the container ("gzip", "zip") it came out of."""
    if not data:
        raise ScanError("The file is empty (0 bytes). Upload the scan again; the copy may have failed.")
    kind = detect_format(data)
    if kind in IMAGE_LABELS:
        return read_image(data, kind)
    if kind == "DICOM":
        return dicom_scan([(name, parse_dicom(data, certain=True))])
    if kind == "NIfTI":
        return read_nifti(data)
    if kind == "GZIP":
        if inside == "gzip":
            raise ScanError("The file is compressed twice; BrainML unpacks one level. Upload the inner file.")
        inner_name = name[:-3] if name and name.lower().endswith(".gz") else name
        return _read_bytes(gunzip(data), inner_name, inside="gzip")
    if kind == "ZIP":
        if inside:
            raise ScanError("The file is an archive inside an archive; upload the inner archive itself.")
        return read_zip(data, name, read_member=_read_bytes)
    if kind in NOT_SCANS:
        raise ScanError(NOT_SCANS[kind].format(readable=READABLE))
    if dicom_name_hint(name) or looks_like_raw_dicom(data):
        return dicom_scan([(name, parse_dicom(data, certain=False, name=name))])
    raise unrecognised(name)
