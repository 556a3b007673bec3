"""Reading scans: every supported upload or file becomes a :class:`Scan` of 2D float32 slices in [0, 1].

Formats are recognised by their first bytes, not by their names (a PNG named ``.jpg`` is still a PNG); the name is
only a hint, for DICOM files written without the 128-byte preamble. Everything happens in memory: nothing is
written to disk, archives are never extracted, and sizes are checked before pixels are decoded or archives
unpacked, so a small upload cannot make the server allocate gigabytes.

Anything that cannot be read raises :class:`ScanError` with a message written for the person who uploaded the
file: what is wrong, and what to do about it.
"""

from __future__ import annotations

import gzip
import operator
import os
import struct
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from io import BytesIO
from pathlib import Path, PurePosixPath

import nibabel
import numpy as np
import pydicom
from PIL import ExifTags, Image, ImageOps
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

SUPPORTED_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "gif", "dcm", "dicom", "nii", "gz", "zip")

# 50 megapixels is ~7000 x 7000, far beyond any MRI slice; it is below Pillow's own bomb limit (~89 MP), so our
# check, made on the header before any pixel is decoded, always speaks first.
MAX_PIXELS = 50_000_000
# Below 64 pixels a side there is too little anatomy left for the models or for a person to check the result.
MIN_SIDE = 64
# A 3D volume or DICOM series: 100 M voxels (400 MB as float32) holds a 512 x 512 x 380 acquisition.
MAX_VOXELS = 100_000_000
MAX_FILE_BYTES = 512 * 2**20
# Cap on what gzip, zip and deflated DICOM may unpack to, counted as bytes are actually produced.
MAX_UNPACKED_BYTES = 512 * 2**20
MAX_ZIP_MEMBERS = 10_000

# The window used when a source gives none: wide enough to keep the anatomy, narrow enough that a few hot
# voxels (vessels, artefacts) do not compress everything else into the dark end.
ROBUST_PERCENTILES = (0.5, 99.5)
# A NIfTI slice's "brain" is its voxels above 10% of the robust range: well above scanner background noise.
FOREGROUND_LEVEL = 0.1
# ITU-R BT.601 luma weights, the same as Pillow's convert("L"), so colour reads the same here and elsewhere.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

READABLE = "PNG, JPEG, TIFF, BMP, WebP, GIF, DICOM (one file, or a zip of a series) or NIfTI (.nii, .nii.gz)"
_IMAGE_LABELS = {"PNG": "PNG", "JPEG": "JPEG", "TIFF": "TIFF", "BMP": "BMP", "WEBP": "WebP", "GIF": "GIF"}
_NOT_SCANS = {
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
_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DEFLATED = b"1.2.840.10008.1.2.1.99"


class ScanError(ValueError):
    """A file that BrainML cannot read, with a message for the person who supplied it.

    Args:
        message: what is wrong and what to do, in plain words.
        filename: the file's name when known; it leads the message.
    """

    def __init__(self, message: str, filename: str | None = None):
        self.message = message
        self.filename = filename
        super().__init__(f"{filename}: {message}" if filename else message)


@dataclass(eq=False)  # arrays do not compare with ==; two scans are equal only if they are the same object
class Scan:
    """A decoded scan: one or more 2D slices and the facts about their source that are safe to show.

    Attributes:
        slices: (n_slices, H, W) float32 in [0, 1]; a 2D image is one slice.
        format: "PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF", "DICOM" or "NIfTI".
        name: the file's name, when known.
        original_size: (width, height) of one slice as stored in the file, before EXIF rotation or NIfTI
            reorientation; ``slices.shape`` gives the size as returned.
        bit_depth: bits per sample in the source (1, 8, 12, 16 ...; 32 for float data).
        pixel_spacing: (row, column) spacing in mm when the source states it, else None.
        chosen_slice: the slice to show first (NIfTI: the one with most brain; DICOM series: the middle one).
        metadata: non-identifying facts (modality, window, orientation ...); never names, IDs or dates.
    """

    slices: np.ndarray
    format: str
    name: str | None
    original_size: tuple[int, int]
    bit_depth: int
    pixel_spacing: tuple[float, float] | None = None
    chosen_slice: int = 0
    metadata: dict = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.slices.shape[0])

    @property
    def image(self) -> np.ndarray:
        """The chosen slice, (H, W) float32 in [0, 1]."""
        return self.slices[self.chosen_slice]

    def slice(self, index: int) -> np.ndarray:
        """Slice ``index`` (0-based), (H, W) float32 in [0, 1].

        Raises:
            ScanError: the scan has no such slice.
        """
        return self.slices[self._checked_index(index)]

    def _checked_index(self, index) -> int:
        try:
            position = operator.index(index)
        except TypeError:
            raise ScanError(f"The slice number must be a whole number, not {index!r}.", self.name) from None
        if not 0 <= position < self.n_slices:
            if self.n_slices == 1:
                raise ScanError(f"Slice {position} does not exist: this scan has one slice (number 0).", self.name)
            raise ScanError(
                f"Slice {position} does not exist: this scan has {self.n_slices} slices "
                f"(0 to {self.n_slices - 1}). Choose a slice in that range.",
                self.name,
            )
        return position


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
                raise ScanError(f"{path} is larger than {_size_text(MAX_FILE_BYTES)}, the most BrainML opens.")
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
            raise ScanError(f"The file is larger than {_size_text(MAX_FILE_BYTES)}, the most BrainML opens.", name)
        return bytes(content), name
    raise ScanError(f"BrainML reads a file's bytes or a path, not a {type(source).__name__}.", name)


def _read_bytes(data: bytes, name: str | None, inside: str | None = None) -> Scan:
    """Dispatch on the file's first bytes. ``inside`` names the container ("gzip", "zip") it came out of."""
    if not data:
        raise ScanError("The file is empty (0 bytes). Upload the scan again; the copy may have failed.")
    kind = _sniff(data)
    if kind in _IMAGE_LABELS:
        return _read_image(data, kind)
    if kind == "DICOM":
        return _dicom_scan([(name, _parse_dicom(data, certain=True))])
    if kind == "NIfTI":
        return _read_nifti(data)
    if kind == "GZIP":
        if inside == "gzip":
            raise ScanError("The file is compressed twice; BrainML unpacks one level. Upload the inner file.")
        inner_name = name[:-3] if name and name.lower().endswith(".gz") else name
        return _read_bytes(_gunzip(data), inner_name, inside="gzip")
    if kind == "ZIP":
        if inside:
            raise ScanError("The file is an archive inside an archive; upload the inner archive itself.")
        return _read_zip(data, name)
    if kind in _NOT_SCANS:
        raise ScanError(_NOT_SCANS[kind].format(readable=READABLE))
    if _dicom_name_hint(name) or _looks_like_raw_dicom(data):
        return _dicom_scan([(name, _parse_dicom(data, certain=False, name=name))])
    raise _unrecognised(name)


def _sniff(data: bytes) -> str | None:
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
    nifti = _nifti_version(data)
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


def _unrecognised(name: str | None) -> ScanError:
    suffix = Path(name).suffix.lower() if name else ""
    claim = f"Its name ends in {suffix}, but its contents are not that format. " if suffix else ""
    return ScanError(
        f"BrainML cannot tell what kind of file this is. {claim}BrainML reads {READABLE}; export the scan in one "
        "of these formats and upload it again."
    )


def _size_text(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.0f} MB"


def _check_slice_size(width: int, height: int, what: str = "image") -> None:
    """Refuse slices too large to decode safely or too small to read, from their declared size alone."""
    if width * height > MAX_PIXELS:
        raise ScanError(
            f"The {what} is {width}x{height} pixels ({width * height / 1e6:,.0f} megapixels); BrainML opens "
            f"images up to {MAX_PIXELS / 1e6:.0f} megapixels. Downscale it (an MRI slice rarely needs more than "
            "1024x1024) and upload it again."
        )
    if min(width, height) < MIN_SIDE:
        raise ScanError(
            f"The {what} is {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed. Upload the original "
            "scan rather than a thumbnail."
        )


def _check_not_blank(values: np.ndarray, what: str = "image") -> None:
    if values.size == 0 or values.min() == values.max():
        raise ScanError(
            f"The {what} is blank (every pixel is the same), so there is nothing to examine. Check that the right "
            "file was exported; a failed export often gives an all-black image."
        )


def _robust_range(values: np.ndarray) -> tuple[float, float]:
    """The 0.5th-99.5th percentile range, from at most ~2 M evenly spaced samples (fast on whole volumes)."""
    flat = values.ravel(order="K")  # memory order: no copy of a Fortran-ordered NIfTI volume
    sample = flat[:: max(1, flat.size // 2_000_000)]
    low, high = (float(v) for v in np.percentile(sample, ROBUST_PERCENTILES))
    if high <= low:
        low, high = float(flat.min()), float(flat.max())
    return low, high


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto [0, 1], clipping outside, as float32."""
    scaled = (values.astype(np.float32, copy=False) - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def _read_image(data: bytes, fmt: str) -> Scan:
    label = _IMAGE_LABELS[fmt]
    formats = ["JPEG", "MPO"] if fmt == "JPEG" else [fmt]
    try:
        image = Image.open(BytesIO(data), formats=formats)
    except Image.DecompressionBombError as error:
        raise ScanError(
            f"The {label} is larger than {MAX_PIXELS / 1e6:.0f} megapixels, too large to open safely. Downscale it "
            "and upload it again."
        ) from error
    except Exception as error:
        raise ScanError(_damaged_image_message(data, fmt)) from error
    with image:
        width, height = image.size
        _check_slice_size(width, height)
        try:
            image.load()
        except MemoryError:
            raise
        except Exception as error:
            raise ScanError(_damaged_image_message(data, fmt)) from error
        metadata = {"mode": image.mode}
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            metadata["frames"] = frames
            metadata["note"] = f"The file holds {frames} frames; the first is shown."
        try:
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        except Exception:
            orientation = 1
            metadata["exif"] = "unreadable; the image is shown as stored"
        upright = ImageOps.exif_transpose(image) if orientation in range(2, 9) else image
        if orientation in range(2, 9):
            metadata["exif_orientation"] = int(orientation)
        pixels, bit_depth, details = _image_pixels(upright)
    metadata.update(details)
    _check_not_blank(pixels)
    return Scan(
        slices=pixels[np.newaxis],
        format=fmt,
        name=None,
        original_size=(width, height),
        bit_depth=bit_depth,
        metadata=metadata,
    )


def _damaged_image_message(data: bytes, fmt: str) -> str:
    label = _IMAGE_LABELS[fmt]
    cut_off = (fmt == "PNG" and not data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")) or (
        fmt == "JPEG" and b"\xff\xd9" not in data[-64:]
    )
    if cut_off:
        return (
            f"The {label} is cut off: the file ends before the image does. Upload the complete file "
            "(download or export it again if needed)."
        )
    return f"The {label} is damaged and cannot be decoded. Export the image again and upload the new copy."


def _image_pixels(image: Image.Image) -> tuple[np.ndarray, int, dict]:
    """(H, W) float32 in [0, 1], the source's bits per sample, and how colour was handled."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image)
        bit_depth = 16 if mode != "I" else 32
        if values.min() < 0:
            low, high = float(values.min()), float(values.max())
            return _stretch(values, low, max(high, low + 1)), bit_depth, {"intensity_scale": "min-max"}
        divisor = _unsigned_divisor(int(values.max()), bit_depth)
        scaled = values.astype(np.float32) * np.float32(1.0 / divisor)
        return scaled, bit_depth, {"intensity_scale": f"divided by {divisor}"}
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        finite = np.isfinite(values)
        if not finite.any():
            raise ScanError("The image holds no numbers (every pixel is NaN or infinite).")
        values = np.where(finite, values, 0.0).astype(np.float32)
        low, high = float(values.min()), float(values.max())
        return _stretch(values, low, high if high > low else low + 1), 32, {"intensity_scale": "min-max"}
    if mode == "1":
        return np.asarray(image, dtype=np.float32), 1, {"colour": "black and white"}
    if mode == "L":
        return np.asarray(image, dtype=np.float32) * np.float32(1 / 255), 8, {"colour": "grey"}
    if mode == "LA":
        grey_alpha = np.asarray(image, dtype=np.float32)
        composited = grey_alpha[..., 0] * grey_alpha[..., 1] * np.float32(1 / 255**2)
        return composited, 8, {"colour": "grey", "alpha": "composited on black"}
    details = {}
    if mode not in ("RGB", "RGBA"):
        has_alpha = "A" in mode or "a" in mode or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        details["converted_from"] = mode
    rgb = np.asarray(image)
    grey, details["colour"] = _rgb_to_grey(rgb[..., :3])
    if image.mode == "RGBA":
        grey *= rgb[..., 3] * np.float32(1 / 255)
        details["alpha"] = "composited on black"
    return grey * np.float32(1 / 255), 8, details


def _unsigned_divisor(max_value: int, container_bits: int) -> int:
    """The full scale of unsigned data: 2**bits - 1 for the fewest even bits (at least 8) that hold the maximum.

    Scanners digitise at 10, 12, 14 or 16 bits and many exports keep 12-bit values inside 16-bit files; dividing
    those by 65535 would give a nearly black image, while dividing by each image's own maximum would make the same
    tissue read differently from image to image. Rounding the maximum up to the next even bit depth does neither.
    """
    bits = max(8, max_value.bit_length())
    bits = min(bits + bits % 2, container_bits)
    return 2**bits - 1


def _rgb_to_grey(rgb: np.ndarray) -> tuple[np.ndarray, str]:
    """(H, W, 3) -> (H, W) float32 on the source's scale. MRI exported as RGB (R = G = B) keeps one channel."""
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if np.array_equal(red, green) and np.array_equal(green, blue):
        return red.astype(np.float32), "grey stored as RGB"
    return rgb.astype(np.float32) @ LUMA_WEIGHTS, "colour, converted to luminance"


def _dicom_name_hint(name: str | None) -> bool:
    """DICOM files often carry .dcm/.ima or no extension at all (IM0001, 1.2.840...)."""
    if not name:
        return False
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    return suffix in _DICOM_SUFFIXES or suffix[1:].isdigit()


def _looks_like_raw_dicom(data: bytes) -> bool:
    """A DICOM stream without preamble starts with an element of group 0002 (file meta) or 0008."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00") and data[3] == 0


def _parse_dicom(data: bytes, certain: bool, name: str | None = None):
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
        raise _unrecognised(name) from error
    if not has_pixels:
        if not (certain or looks_dicom):
            raise _unrecognised(name)
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
                f"The DICOM file unpacks to more than {_size_text(MAX_UNPACKED_BYTES)}; BrainML does not open it."
            )
        pending = inflater.unconsumed_tail


def _dicom_frames(dataset) -> np.ndarray:
    """The image as (frames, H, W) float32 in modality units (after rescale slope/intercept)."""
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    frames = int(dataset.get("NumberOfFrames") or 1)
    _check_slice_size(columns, rows, "DICOM image")
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
        pixels, _ = _rgb_to_grey(pixels.reshape(frames, rows, columns, samples))
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


def _dicom_scan(named_datasets: list) -> Scan:
    """One DICOM file, or a series already in order, as a Scan windowed for display."""
    reference = named_datasets[len(named_datasets) // 2][1]
    declared = sum(int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames") or 1) for _, ds in named_datasets)
    if declared > MAX_VOXELS:
        raise ScanError(
            f"The series holds {declared / 1e6:,.0f} million pixels in all, more than BrainML opens at once "
            f"({MAX_VOXELS / 1e6:,.0f} million). Zip fewer slices, or one series at a time."
        )
    volume = np.concatenate([_dicom_frames(dataset) for _, dataset in named_datasets])
    _check_not_blank(volume, "DICOM image" if volume.shape[0] == 1 else "DICOM series")
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
        low, high = _robust_range(volume)
        slices = _stretch(volume, low, high)
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


def _sort_series(named_datasets: list) -> tuple[list, str]:
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


def _nifti_version(data: bytes) -> str | None:
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


def _read_nifti(data: bytes) -> Scan:
    image_class = nibabel.Nifti1Image if _nifti_version(data) == "1" else nibabel.Nifti2Image
    try:
        image = image_class.from_bytes(data)
        shape = tuple(int(n) for n in image.shape)
        item_bytes = image.get_data_dtype().itemsize
        data_offset = int(image.header.get_data_offset())
    except MemoryError:
        raise
    except Exception as error:
        raise ScanError(
            "The NIfTI file is damaged: its header cannot be read. Export or convert the volume again."
        ) from error
    dims = "x".join(str(n) for n in shape)
    if len(shape) > 3 and all(n == 1 for n in shape[3:]):
        image = nibabel.squeeze_image(image)
        shape = shape[:3]
    if len(shape) < 3:
        raise ScanError(
            f"This NIfTI file holds a single 2D image ({dims}); BrainML reads 3D NIfTI volumes. Save the image "
            "as PNG, or as a 3D volume with one slice, and upload that."
        )
    if len(shape) > 3:
        raise ScanError(
            f"This NIfTI file holds a {len(shape)}D series ({dims}); BrainML reads 3D volumes. Save one volume "
            "(for example the first, with fslroi or nibabel) as its own .nii.gz and upload that."
        )
    voxels = int(np.prod(shape))
    if voxels > MAX_VOXELS:
        raise ScanError(f"The NIfTI volume ({dims}) holds more than {MAX_VOXELS / 1e6:.0f} million voxels, more "
                        "than BrainML opens. Crop or downsample it first.")
    if len(data) < data_offset + voxels * item_bytes:
        raise ScanError(f"The NIfTI file is cut off: it ends before its {dims} volume does. Upload the full file.")
    canonical = nibabel.as_closest_canonical(image)
    volume = canonical.get_fdata(dtype=np.float32)
    _check_slice_size(volume.shape[0], volume.shape[1], "NIfTI slice")
    metadata = {
        "volume_shape": list(shape),
        "source_orientation": "".join(nibabel.aff2axcodes(image.affine)),
        "orientation": "axial, anterior up, patient's right on the left (radiological convention)",
    }
    if not (int(image.header["sform_code"]) or int(image.header["qform_code"])):
        metadata["note"] = "The file does not state the head's orientation; nibabel's default was assumed."
    finite = np.isfinite(volume)
    if not finite.all():
        if not finite.any():
            raise ScanError("The NIfTI volume holds no numbers (every voxel is NaN). Export the volume again.")
        metadata["non_finite_voxels_set_to_0"] = int(volume.size - np.count_nonzero(finite))
        volume[~finite] = 0.0
    _check_not_blank(volume, "NIfTI volume")
    low, high = _robust_range(volume)
    metadata["window"] = {"low": low, "high": high, "source": "0.5-99.5 percentile of the volume"}
    # Canonical RAS+ axes: x runs to the patient's right, y to anterior, z to superior. Display each axial slice
    # as radiologists do: anterior at the top, the patient's right on the viewer's left.
    slices = np.ascontiguousarray(_stretch(volume, low, high)[::-1, ::-1, :].transpose(2, 1, 0))
    brain_voxels = np.count_nonzero(slices > FOREGROUND_LEVEL, axis=(1, 2))
    fullest = np.flatnonzero(brain_voxels == brain_voxels.max())
    # Voxel sizes from the canonical affine itself, so they follow the axes however the file stored them.
    zooms = [float(z) for z in np.linalg.norm(canonical.affine[:3, :3], axis=0)]
    # Millimetres unless the header says otherwise: the standard's recommendation and what most tools write.
    unit_mm = {"meter": 1000.0, "micron": 0.001}.get(canonical.header.get_xyzt_units()[0], 1.0)
    if all(z > 0 for z in zooms):
        metadata["slice_thickness_mm"] = zooms[2] * unit_mm
    return Scan(
        slices=slices,
        format="NIfTI",
        name=None,
        original_size=(shape[0], shape[1]),
        bit_depth=item_bytes * 8,
        pixel_spacing=(zooms[1] * unit_mm, zooms[0] * unit_mm) if all(z > 0 for z in zooms) else None,
        chosen_slice=int(fullest[len(fullest) // 2]),
        metadata=metadata,
    )


def _too_big_to_unpack(what: str) -> ScanError:
    return ScanError(
        f"The {what} unpacks to more than {_size_text(MAX_UNPACKED_BYTES)}, the most BrainML opens (this is how "
        "'zip bombs' work, so it is refused). Upload fewer or smaller files."
    )


def _gunzip(data: bytes) -> bytes:
    try:
        with gzip.GzipFile(fileobj=BytesIO(data)) as stream:
            inner = stream.read(MAX_UNPACKED_BYTES + 1)
    except EOFError as error:
        raise ScanError("The .gz file is cut off: it ends before its contents do. Upload the full file.") from error
    except (OSError, zlib.error) as error:
        raise ScanError("The .gz file is damaged and cannot be unpacked. Compress the scan again.") from error
    if len(inner) > MAX_UNPACKED_BYTES:
        raise _too_big_to_unpack(".gz file")
    if not inner:
        raise ScanError("The .gz file is empty inside. Compress the scan again.")
    return inner


def _unsafe_member(member: str) -> bool:
    """Absolute paths and '..' could point outside any folder; they are never read (nothing is extracted)."""
    path = member.replace("\\", "/")
    return path.startswith("/") or (len(path) > 1 and path[1] == ":") or ".." in path.split("/")


def _system_junk(member: str) -> bool:
    base = member.replace("\\", "/").rsplit("/", 1)[-1]
    return member.startswith("__MACOSX/") or base.startswith("._") or base in (".DS_Store", "Thumbs.db", "DICOMDIR")


def _read_zip(data: bytes, name: str | None) -> Scan:
    try:
        archive = zipfile.ZipFile(BytesIO(data))
        infos = archive.infolist()
    except Exception as error:
        raise ScanError("The zip is damaged or cut off and cannot be opened. Create the zip again.") from error
    with archive:
        if len(infos) > MAX_ZIP_MEMBERS:
            raise ScanError(f"The zip holds {len(infos):,} entries; BrainML opens zips of up to {MAX_ZIP_MEMBERS:,}.")
        if any(info.filename == "[Content_Types].xml" for info in infos):
            raise ScanError("This file is an Office document (Word, Excel or PowerPoint), not an image or a scan.")
        skipped = Counter()
        members = []
        for info in infos:
            if info.is_dir() or _system_junk(info.filename):
                continue
            if _unsafe_member(info.filename):
                skipped["whose path leads outside the zip"] += 1
            elif info.flag_bits & 0x1:
                skipped["protected by a password"] += 1
            else:
                members.append(info)
        if sum(info.file_size for info in members) > MAX_UNPACKED_BYTES:
            raise _too_big_to_unpack("zip")
        contents, unpacked = [], 0
        for info in sorted(members, key=lambda item: item.filename):
            try:
                with archive.open(info) as stream:
                    blob = stream.read(min(info.file_size, MAX_UNPACKED_BYTES - unpacked) + 1)
            except MemoryError:
                raise
            except Exception:
                skipped["that could not be unpacked"] += 1
                continue
            unpacked += len(blob)
            if len(blob) > info.file_size or unpacked > MAX_UNPACKED_BYTES:
                raise _too_big_to_unpack("zip")
            if blob:
                contents.append((info.filename, blob))
    return _scan_from_members(contents, skipped, name)


def _scan_from_members(contents: list, skipped: Counter, name: str | None) -> Scan:
    """A zip's DICOM files are one series; otherwise its first NIfTI volume, else its first image."""
    kinds = {member: _sniff(blob) for member, blob in contents}
    dicoms, dicom_problems = [], Counter()
    for member, blob in contents:
        kind = kinds[member]
        if kind == "DICOM" or (kind is None and (_dicom_name_hint(member) or _looks_like_raw_dicom(blob))):
            try:
                dicoms.append((member, _parse_dicom(blob, certain=kind == "DICOM", name=member)))
            except ScanError as error:
                if kind == "DICOM":
                    dicom_problems[error.message.split(".")[0]] += 1
    if dicoms:
        return _dicom_series_scan(dicoms, dicom_problems, skipped, len(contents))
    for wanted in (("NIfTI", "GZIP"), tuple(_IMAGE_LABELS)):
        for member, blob in contents:
            if kinds[member] in wanted:
                try:
                    scan = _read_bytes(blob, member, inside="zip")
                except ScanError as error:
                    raise ScanError(error.message, f"{member} (in {name or 'the zip'})") from error.__cause__
                matching = sum(kinds[other] in wanted for other, _ in contents)
                scan.metadata["zip_member"] = member
                if matching > 1:
                    scan.metadata["note"] = (f"The zip holds {matching} such files; the first, {member}, is shown. "
                                             "Upload the others one at a time to see them.")
                return scan
    reasons = [f"skipped {count} entr{'y' if count == 1 else 'ies'} {why}" for why, count in skipped.items()]
    reasons += [f"{count} DICOM file{'' if count == 1 else 's'}: {why}" for why, count in dicom_problems.items()]
    detail = f" ({'; '.join(reasons)})" if reasons else ""
    raise ScanError(
        f"The zip holds no scans that BrainML can read{detail}. Put the DICOM files of one series, a NIfTI volume "
        "or images (PNG, JPEG ...) in the zip and upload it again."
    )


def _dicom_series_scan(dicoms: list, problems: Counter, skipped: Counter, n_members: int) -> Scan:
    """The DICOM files of a zip as one series: the largest series when there are several, slices in order."""
    by_series = {}
    for member, dataset in dicoms:
        key = (str(dataset.get("SeriesInstanceUID", "")), int(dataset.Rows), int(dataset.Columns))
        by_series.setdefault(key, []).append((member, dataset))
    largest = max(by_series.values(), key=len)
    ordered, sorted_by = _sort_series(largest)
    scan = _dicom_scan(ordered)
    scan.metadata.update({"files_in_series": len(ordered), "sorted_by": sorted_by, "zip_entries": n_members})
    if len(by_series) > 1:
        scan.metadata["note"] = (f"The zip holds {len(by_series)} series (or image sizes); the largest, "
                                 f"{len(ordered)} files, is shown. Zip one series at a time to choose.")
    left_out = sum(problems.values()) + sum(skipped.values())
    if left_out:
        scan.metadata["entries_left_out"] = left_out
    return scan
