"""DICOM through pydicom: one file, or the ordered files of a series, windowed for display."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .images import rgb_to_grey
from .scan import (
    MAX_UNPACKED_BYTES,
    MAX_VOXELS,
    Scan,
    ScanError,
    check_not_blank,
    check_slice_size,
    robust_range,
    size_text,
    stretch,
)
from .sniff import unrecognised

_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DEFLATED = b"1.2.840.10008.1.2.1.99"


def parse_dicom(data: bytes, certain: bool, name: str | None = None):
    """Parse a DICOM file and check that it holds an image.

    With ``certain`` false (no "DICM" marker) a file that does not turn out to hold a DICOM image is reported as
    unrecognised: pydicom's ``force=True`` "succeeds" on almost any bytes, so success alone proves nothing.
    """
    _refuse_deflate_bomb(data)
    try:
        dataset = pydicom.dcmread(BytesIO(data), force=True)
        has_pixels = any(keyword in dataset for keyword in _PIXEL_DATA_KEYWORDS)
        looks_dicom = any(keyword in dataset for keyword in ("SOPClassUID", "Modality", "StudyInstanceUID"))
    except MemoryError:
        raise
    except Exception as error:
        if certain:
            raise ScanError(
                "The DICOM file is damaged or cut off and cannot be read. Export it again from the scanner or PACS."
            ) from error
        raise unrecognised(name) from error
    if not has_pixels:
        if not (certain or looks_dicom):
            raise unrecognised(name)
        if "DirectoryRecordSequence" in dataset:
            raise ScanError(
                "This DICOM file is a directory index (DICOMDIR), not an image. Zip the whole folder of images "
                "and upload the zip."
            )
        raise ScanError(
            "This DICOM file holds no image (it has no pixel data; it may be a report or a structured document). "
            "Upload the image files of the series instead."
        )
    missing = [keyword for keyword in ("Rows", "Columns", "BitsAllocated") if keyword not in dataset]
    if missing:
        raise ScanError(
            f"The DICOM file lacks {', '.join(missing)}, which describe its image, so it cannot be decoded. "
            "Export it again from the scanner or PACS."
        )
    return dataset


def _refuse_deflate_bomb(data: bytes) -> None:
    """pydicom inflates a deflated data set whole and without limit; measure it first, in bounded steps."""
    if data[128:132] != b"DICM" or _DEFLATED not in data[132:2048]:
        return
    # The file meta starts with its group length (0002,0000) UL; the deflated stream begins right after it.
    if data[132:138] != b"\x02\x00\x00\x00UL":
        raise ScanError("The deflated DICOM file has no file-meta length, so it cannot be opened safely.")
    start = 144 + struct.unpack("<I", data[140:144])[0]
    inflater, pending, total = zlib.decompressobj(-zlib.MAX_WBITS), data[start:], 0
    while pending:
        try:
            total += len(inflater.decompress(pending, 2**20))
        except zlib.error as error:
            raise ScanError("The deflated DICOM file is damaged and cannot be unpacked. Export it again.") from error
        if total > MAX_UNPACKED_BYTES:
            raise ScanError(
                f"The DICOM file unpacks to more than {size_text(MAX_UNPACKED_BYTES)}; BrainML does not open it."
            )
        pending = inflater.unconsumed_tail


def _dicom_frames(dataset) -> np.ndarray:
    """The image as (frames, H, W) float32 in modality units (after rescale slope/intercept)."""
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    frames = int(dataset.get("NumberOfFrames") or 1)
    check_slice_size(columns, rows, "DICOM image")
    if frames * rows * columns > MAX_VOXELS:
        raise ScanError(f"The DICOM file holds {frames} frames of {columns}x{rows}, more than BrainML opens.")
    for keyword, default in (("SamplesPerPixel", 1), ("PixelRepresentation", 0),
                             ("PhotometricInterpretation", "MONOCHROME2")):
        if keyword not in dataset:
            setattr(dataset, keyword, default)
    if "BitsStored" not in dataset:
        dataset.BitsStored = dataset.BitsAllocated
    syntax = _transfer_syntax(dataset)
    samples = int(dataset.SamplesPerPixel)
    if not syntax.is_transfer_syntax:
        raise ScanError(
            f"The DICOM file is encoded with a transfer syntax BrainML does not know ({syntax}). Export the series "
            "uncompressed (Explicit VR Little Endian) and upload it again."
        )
    if syntax.is_compressed:
        try:
            decodable = get_decoder(syntax).is_available
        except (NotImplementedError, ValueError):
            decodable = False
        if not decodable:
            raise ScanError(
                f"The DICOM image is compressed with {syntax.name}, which BrainML cannot decode here. Export the "
                "series uncompressed (Explicit VR Little Endian) and upload it again."
            )
    elif "PixelData" in dataset:
        expected = rows * columns * frames * samples * int(dataset.BitsAllocated) // 8
        if len(dataset.PixelData) < expected:
            raise ScanError(
                "The DICOM image is cut off: it has less pixel data than its size says. Export it again."
            )
    try:
        pixels = dataset.pixel_array
    except MemoryError:
        raise
    except Exception as error:
        raise ScanError(
            f"The DICOM image ({syntax.name}) could not be decoded; the file may be damaged. Export it again, "
            "uncompressed if possible."
        ) from error
    if samples > 1:
        pixels, _ = rgb_to_grey(pixels.reshape(frames, rows, columns, samples))
    else:
        pixels = apply_modality_lut(pixels, dataset)
    return np.asarray(pixels, dtype=np.float32).reshape(frames, rows, columns)


def _transfer_syntax(dataset) -> UID:
    """The transfer syntax, filled in from how the file was parsed when it has no file meta."""
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    if syntax is None:
        implicit, little_endian = dataset.original_encoding
        if implicit:
            syntax = ImplicitVRLittleEndian
        else:
            syntax = ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian
        if getattr(dataset, "file_meta", None) is None:
            dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = syntax
    return UID(syntax)


def _first_number(value) -> float | None:
    if isinstance(value, (MultiValue, list, tuple)):
        value = value[0] if len(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def dicom_scan(named_datasets: list) -> Scan:
    """One DICOM file, or a series already in order, as a Scan windowed for display."""
    reference = named_datasets[len(named_datasets) // 2][1]
    declared = sum(int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames") or 1) for _, ds in named_datasets)
    if declared > MAX_VOXELS:
        raise ScanError(
            f"The series holds {declared / 1e6:,.0f} million pixels in all, more than BrainML opens at once "
            f"({MAX_VOXELS / 1e6:,.0f} million). Zip fewer slices, or one series at a time."
        )
    volume = np.concatenate([_dicom_frames(dataset) for _, dataset in named_datasets])
    check_not_blank(volume, "DICOM image" if volume.shape[0] == 1 else "DICOM series")
    metadata = _dicom_metadata(reference)
    centre = _first_number(reference.get("WindowCenter"))
    width = _first_number(reference.get("WindowWidth"))
    slices = None
    if centre is not None and width is not None and width > 1:
        # The linear VOI function of DICOM PS3.3 C.11.2.1.2.1, mapped onto [0, 1].
        slices = np.clip((volume - np.float32(centre - 0.5)) * np.float32(1 / (width - 1)) + 0.5, 0, 1)
        metadata["window"] = {"centre": centre, "width": width, "source": "DICOM tags"}
        if slices.min() == slices.max():
            slices = None
            metadata["note"] = "The stored window shows nothing of this image; a percentile window is used."
    if slices is None:
        low, high = robust_range(volume)
        slices = stretch(volume, low, high)
        metadata["window"] = {"low": low, "high": high, "source": "0.5-99.5 percentile"}
    if metadata.get("photometric_interpretation") == "MONOCHROME1":
        # MONOCHROME1 stores bright as low values; invert so bright tissue is bright, as everywhere else.
        slices = 1.0 - slices
    spacing = reference.get("PixelSpacing")
    pixel_spacing = None
    if spacing is not None and len(spacing) == 2 and all((_first_number(v) or 0) > 0 for v in spacing):
        pixel_spacing = (float(spacing[0]), float(spacing[1]))
    return Scan(
        slices=np.ascontiguousarray(slices, dtype=np.float32),
        format="DICOM",
        name=None,
        original_size=(int(reference.Columns), int(reference.Rows)),
        bit_depth=int(reference.get("BitsStored") or reference.BitsAllocated),
        pixel_spacing=pixel_spacing,
        chosen_slice=len(slices) // 2,
        metadata=metadata,
    )


def _dicom_metadata(dataset) -> dict:
    """Facts about the acquisition, chosen from a fixed list so that nothing identifying can slip through."""
    facts = {
        "modality": dataset.get("Modality"),
        "photometric_interpretation": dataset.get("PhotometricInterpretation"),
        "transfer_syntax": _transfer_syntax(dataset).name,
        "body_part": dataset.get("BodyPartExamined"),
        "rescale_slope": _first_number(dataset.get("RescaleSlope")),
        "rescale_intercept": _first_number(dataset.get("RescaleIntercept")),
        "slice_thickness_mm": _first_number(dataset.get("SliceThickness")),
        "magnetic_field_strength_t": _first_number(dataset.get("MagneticFieldStrength")),
        "plane": _dicom_plane(dataset),
    }
    return {key: (str(value) if isinstance(value, str) else value) for key, value in facts.items()
            if value not in (None, "")}


def _slice_normal(dataset) -> np.ndarray | None:
    orientation = dataset.get("ImageOrientationPatient")
    if orientation is None or len(orientation) != 6:
        return None
    cosines = np.array([float(v) for v in orientation])
    return np.cross(cosines[:3], cosines[3:])


def _dicom_plane(dataset) -> str | None:
    normal = _slice_normal(dataset)
    if normal is None or not np.any(normal):
        return None
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def sort_series(named_datasets: list) -> tuple[list, str]:
    """Order slices along the slice normal (ImagePositionPatient), else by InstanceNumber, else by file name."""
    normal = _slice_normal(named_datasets[0][1])
    positions = []
    for _, dataset in named_datasets:
        position = dataset.get("ImagePositionPatient")
        if normal is None or position is None or len(position) != 3:
            break
        positions.append(float(np.dot(normal, [float(v) for v in position])))
    if len(positions) == len(named_datasets) and len(set(positions)) == len(positions):
        order = np.argsort(positions, kind="stable")
        return [named_datasets[i] for i in order], "ImagePositionPatient"
    numbers = [_first_number(dataset.get("InstanceNumber")) for _, dataset in named_datasets]
    if None not in numbers:
        order = np.argsort(numbers, kind="stable")
        return [named_datasets[i] for i in order], "InstanceNumber"
    return sorted(named_datasets, key=lambda item: item[0] or ""), "file name"
