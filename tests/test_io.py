"""Tests for brainml.io: every format, mode and bad input a user can hand to read_scan, built in memory."""

from __future__ import annotations

import builtins
import gzip
import io
import os
import struct
import tempfile
import zipfile
import zlib

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    MRImageStorage,
    generate_uid,
)

from brainml.io import archives as scan_archives
from brainml.io import dicom as scan_dicom
from brainml.io import reader as scan_reader
from brainml.io import MAX_PIXELS, MIN_SIDE, SUPPORTED_EXTENSIONS, Scan, ScanError, read_scan


def phantom(size: int = 96, dtype=np.uint8, peak: int = 255) -> np.ndarray:
    """A bright disc (the head) on black with a brighter square (a lesion) and a ramp, so no two images match."""
    rows, cols = np.mgrid[:size, :size]
    image = np.zeros((size, size), dtype=np.float64)
    image[(rows - size / 2) ** 2 + (cols - size / 2) ** 2 < (size * 0.4) ** 2] = 0.5
    image[size // 3 : size // 2, size // 3 : size // 2] = 1.0
    image += cols / size * 0.1
    return np.round(image / image.max() * peak).astype(dtype)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def dicom_bytes(pixels: np.ndarray, *, preamble: bool = True, with_pixels: bool = True,
                transfer_syntax=ExplicitVRLittleEndian, **tags) -> bytes:
    dataset = Dataset()
    dataset.SOPClassUID = MRImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.Modality = "MR"
    dataset.PatientName = "Doe^Jane"
    dataset.PatientID = "PID-998877"
    dataset.PatientBirthDate = "19700101"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation, dataset.SamplesPerPixel = 0, 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    for keyword, value in tags.items():
        setattr(dataset, keyword, value)
    if with_pixels:
        dataset.PixelData = pixels.astype("<u2").tobytes()
    buffer = io.BytesIO()
    if preamble:
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = transfer_syntax
        dcmwrite(buffer, dataset, enforce_file_format=True)
    else:
        dcmwrite(buffer, dataset, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def nifti_bytes(volume: np.ndarray, affine=None, gz: bool = False, version: int = 1) -> bytes:
    image_class = nibabel.Nifti1Image if version == 1 else nibabel.Nifti2Image
    image = image_class(volume, np.eye(4) if affine is None else affine)
    image.header.set_xyzt_units("mm")
    data = image.to_bytes()
    return gzip.compress(data, compresslevel=1) if gz else data


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares a size; the pixels never follow (the reader must not need them)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def head_volume(shape=(64, 72, 20), widest=13) -> np.ndarray:
    """An ellipsoid 'head' whose cross-section is largest at axial slice ``widest``."""
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    radius = 1 - ((z - widest) / shape[2]) ** 2 * 3
    inside = ((x - shape[0] / 2) / (shape[0] * 0.4)) ** 2 + ((y - shape[1] / 2) / (shape[1] * 0.4)) ** 2 < radius
    return np.where(inside, 600.0, 5.0).astype(np.float32)


def assert_unit_slices(scan: Scan, n_slices: int, height: int, width: int) -> None:
    assert scan.slices.shape == (n_slices, height, width)
    assert scan.slices.dtype == np.float32
    assert 0.0 <= scan.slices.min() and scan.slices.max() <= 1.0
    assert scan.n_slices == n_slices
    assert scan.image.shape == (height, width)


def test_supported_extensions_cover_every_reader():
    assert set(SUPPORTED_EXTENSIONS) >= {"png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "gif", "dcm", "dicom",
                                         "nii", "gz", "zip"}
    assert all(not extension.startswith(".") for extension in SUPPORTED_EXTENSIONS)


def test_png_8bit_grey_keeps_values_and_size():
    pixels = phantom(96)[:, :80]
    scan = read_scan(encode(Image.fromarray(pixels), "PNG"), name="slice.png")
    assert_unit_slices(scan, 1, 96, 80)
    np.testing.assert_allclose(scan.image, pixels / 255, atol=1e-6)
    assert (scan.format, scan.name, scan.original_size, scan.bit_depth) == ("PNG", "slice.png", (80, 96), 8)
    assert scan.pixel_spacing is None and scan.chosen_slice == 0


def test_png_16bit_full_range_divides_by_65535():
    pixels = phantom(96, np.uint16, 65535)
    scan = read_scan(encode(Image.fromarray(pixels), "PNG"))
    np.testing.assert_allclose(scan.image, pixels / 65535, atol=1e-6)
    assert scan.bit_depth == 16 and scan.image.max() == 1.0


def test_png_12bit_values_in_16bit_file_use_12bit_scale():
    pixels = phantom(96, np.uint16, 4095)
    scan = read_scan(encode(Image.fromarray(pixels), "PNG"))
    np.testing.assert_allclose(scan.image, pixels / 4095, atol=1e-6)
    assert scan.metadata["intensity_scale"] == "divided by 4095"


def test_tiff_16bit():
    pixels = phantom(96, np.uint16, 1000)
    scan = read_scan(encode(Image.fromarray(pixels), "TIFF"), name="slice.tif")
    assert scan.format == "TIFF" and scan.bit_depth == 16
    np.testing.assert_allclose(scan.image, pixels / 1023, atol=1e-6)


def test_grey_stored_as_rgb_becomes_one_channel():
    grey = phantom(96)
    scan = read_scan(encode(Image.fromarray(np.dstack([grey] * 3)), "PNG"))
    assert_unit_slices(scan, 1, 96, 96)
    np.testing.assert_allclose(scan.image, grey / 255, atol=1e-6)
    assert scan.metadata["colour"] == "grey stored as RGB"


def test_true_colour_becomes_luminance_like_pillow():
    grey = phantom(96)
    rgb = Image.fromarray(np.dstack([grey, np.flipud(grey), np.fliplr(grey)]))
    scan = read_scan(encode(rgb, "PNG"))
    expected = np.asarray(rgb.convert("L"), dtype=np.float32) / 255
    np.testing.assert_allclose(scan.image, expected, atol=1.5 / 255)
    assert scan.metadata["colour"] == "colour, converted to luminance"


def test_rgba_is_composited_on_black():
    grey = phantom(96)
    alpha = np.full_like(grey, 255)
    alpha[:, :48] = 0
    scan = read_scan(encode(Image.fromarray(np.dstack([grey, grey, grey, alpha])), "PNG"))
    assert np.all(scan.image[:, :48] == 0)
    np.testing.assert_allclose(scan.image[:, 48:], grey[:, 48:] / 255, atol=1e-6)


def test_palette_image():
    grey = phantom(96)
    palette_image = Image.fromarray(grey).convert("P")
    assert palette_image.mode == "P"
    scan = read_scan(encode(palette_image, "PNG"))
    np.testing.assert_allclose(scan.image, grey / 255, atol=1e-6)
    assert scan.metadata["converted_from"] == "P"


def test_cmyk_jpeg():
    grey = phantom(96)
    scan = read_scan(encode(Image.fromarray(grey).convert("CMYK"), "JPEG", quality=95))
    assert scan.format == "JPEG" and scan.metadata["mode"] == "CMYK"
    assert np.abs(scan.image - grey / 255).mean() < 0.03


def test_grey_jpeg():
    grey = phantom(96)
    scan = read_scan(encode(Image.fromarray(grey), "JPEG", quality=95), name="slice.jpg")
    assert scan.format == "JPEG" and scan.bit_depth == 8
    assert np.abs(scan.image - grey / 255).mean() < 0.02


def test_bmp_and_lossless_webp():
    grey = phantom(96)
    for fmt, options in (("BMP", {}), ("WEBP", {"lossless": True})):
        scan = read_scan(encode(Image.fromarray(np.dstack([grey] * 3)), fmt, **options))
        assert scan.format == fmt
        np.testing.assert_allclose(scan.image, grey / 255, atol=1e-6)


def test_gif_reads_first_frame():
    first, second = phantom(96), np.fliplr(phantom(96))
    frames = [Image.fromarray(first).convert("P"), Image.fromarray(second).convert("P")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    scan = read_scan(data)
    assert scan.format == "GIF" and scan.n_slices == 1 and scan.metadata["frames"] == 2
    np.testing.assert_allclose(scan.image, first / 255, atol=1e-6)


def test_exif_orientation_is_applied():
    stored = np.full((64, 128), 40, dtype=np.uint8)
    stored[:16, :16] = 255  # marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    scan = read_scan(encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif))
    assert scan.image.shape == (128, 64)
    assert scan.original_size == (128, 64)
    assert scan.image[:16, -16:].mean() > 0.9  # now top-right
    assert scan.image[-16:, :16].mean() < 0.3
    assert scan.metadata["exif_orientation"] == 6


def test_format_comes_from_content_not_name():
    scan = read_scan(encode(Image.fromarray(phantom()), "PNG"), name="actually_a_png.jpg")
    assert scan.format == "PNG"


def test_reads_path_and_file_object(tmp_path):
    data = encode(Image.fromarray(phantom()), "PNG")
    path = tmp_path / "case.png"
    path.write_bytes(data)
    from_path = read_scan(path)
    from_string = read_scan(str(path))
    upload = io.BytesIO(data)
    upload.name = "upload.png"
    from_object = read_scan(upload)
    assert from_path.name == from_string.name == "case.png" and from_object.name == "upload.png"
    np.testing.assert_array_equal(from_path.image, from_object.image)


def test_empty_file():
    with pytest.raises(ScanError, match="The file is empty"):
        read_scan(b"", name="scan.png")


def test_random_bytes():
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ScanError, match="BrainML cannot tell what kind of file this is") as caught:
        read_scan(b"\x13\x37" + noise, name="mystery.bin")
    assert str(caught.value).startswith("mystery.bin: ")
    assert "ends in .bin" in str(caught.value)


def test_text_renamed_png():
    with pytest.raises(ScanError, match="This file holds text, not an image or a scan"):
        read_scan(b"Patient notes\nNothing to see here.\n" * 10, name="notes.png")


def test_pdf_renamed_png_names_the_file():
    with pytest.raises(ScanError) as caught:
        read_scan(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n" + bytes(500), name="report.png")
    assert str(caught.value).startswith("report.png: This file is a PDF, not an image or a scan")


def test_truncated_png():
    data = encode(Image.fromarray(phantom(128)), "PNG")
    with pytest.raises(ScanError, match="The PNG is cut off"):
        read_scan(data[: len(data) // 2], name="half.png")


def test_truncated_jpeg():
    data = encode(Image.fromarray(phantom(128)), "JPEG", quality=95)
    with pytest.raises(ScanError, match="The JPEG is cut off"):
        read_scan(data[: len(data) // 2], name="half.jpg")


def test_damaged_png_with_complete_ending():
    data = bytearray(encode(Image.fromarray(phantom(128)), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 40] = b"\xff" * 40
    with pytest.raises(ScanError, match="The PNG is damaged"):
        read_scan(bytes(data))


def test_image_over_max_pixels_is_refused_from_its_header():
    assert 10_000 * 6_000 > MAX_PIXELS
    # The file is a header and nothing else: the message can only come from the header, before any decoding.
    with pytest.raises(ScanError, match=r"The image is 10000x6000 pixels \(60 megapixels\)"):
        read_scan(png_header_only(10_000, 6_000))


def test_pillow_decompression_bomb_becomes_scan_error():
    with pytest.raises(ScanError, match="larger than 50 megapixels") as caught:
        read_scan(png_header_only(20_000, 20_000))
    assert isinstance(caught.value.__cause__, Image.DecompressionBombError)


def test_tiny_image():
    with pytest.raises(ScanError, match="The image is 3x3 pixels; at least 64x64 is needed"):
        read_scan(encode(Image.new("L", (3, 3), 100), "PNG"))
    assert MIN_SIDE == 64


@pytest.mark.parametrize("value", [0, 128])
def test_constant_image_is_blank(value):
    with pytest.raises(ScanError, match=r"The image is blank \(every pixel is the same\)"):
        read_scan(encode(Image.new("L", (96, 96), value), "PNG"))


def test_nonexistent_path(tmp_path):
    with pytest.raises(ScanError, match="There is no file at"):
        read_scan(tmp_path / "missing.png")


def test_directory_path(tmp_path):
    with pytest.raises(ScanError, match="is a folder, not a file"):
        read_scan(tmp_path)


def test_slice_out_of_range():
    data = encode(Image.fromarray(phantom()), "PNG")
    with pytest.raises(ScanError, match="Slice 5 does not exist: this scan has one slice"):
        read_scan(data, slice_index=5)
    with pytest.raises(ScanError, match="Slice -1 does not exist"):
        read_scan(data).slice(-1)


def test_unexpected_decoder_failure_becomes_scan_error(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(scan_reader, "read_image", broken)
    with pytest.raises(ScanError, match="BrainML could not read this file") as caught:
        read_scan(encode(Image.fromarray(phantom()), "PNG"), name="x.png")
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert "RuntimeError" in str(caught.value)


def test_dicom_single_file_with_spacing_and_percentile_window():
    pixels = phantom(96, np.uint16, 4000)
    scan = read_scan(dicom_bytes(pixels, PixelSpacing=[0.5, 0.75]), name="IM0001.dcm")
    assert_unit_slices(scan, 1, 96, 96)
    assert (scan.format, scan.bit_depth, scan.original_size) == ("DICOM", 12, (96, 96))
    assert scan.pixel_spacing == (0.5, 0.75)
    assert scan.metadata["window"]["source"] == "0.5-99.5 percentile"
    assert scan.metadata["modality"] == "MR"
    # Brighter stored values stay brighter.
    assert scan.image[40, 40] > scan.image[48, 10] > scan.image[0, 0]


def test_dicom_rescale_and_window():
    pixels = np.full((64, 64), 500, dtype=np.uint16)  # 2 * 500 - 1000 = 0
    pixels[:, 20:40] = 600  # -> 200
    pixels[:, 40:] = 700  # -> 400
    data = dicom_bytes(pixels, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=200.5, WindowWidth=401)
    scan = read_scan(data)
    np.testing.assert_allclose(scan.image[0, [0, 30, 50]], [0.0, 0.5, 1.0], atol=1e-6)
    assert scan.metadata["window"] == {"centre": 200.5, "width": 401.0, "source": "DICOM tags"}
    assert scan.metadata["rescale_slope"] == 2.0 and scan.metadata["rescale_intercept"] == -1000.0


def test_dicom_monochrome1_is_inverted():
    pixels = phantom(64, np.uint16, 4000)
    normal = read_scan(dicom_bytes(pixels)).image
    inverted = read_scan(dicom_bytes(pixels, PhotometricInterpretation="MONOCHROME1")).image
    np.testing.assert_allclose(inverted, 1.0 - normal, atol=1e-6)
    assert inverted[0, 0] == 1.0


def test_dicom_without_preamble_is_read_with_name_hint():
    pixels = phantom(64, np.uint16, 4000)
    data = dicom_bytes(pixels, preamble=False)
    assert data[128:132] != b"DICM"
    scan = read_scan(data, name="IM0001")
    assert scan.format == "DICOM" and scan.image.shape == (64, 64)


def test_dicom_metadata_never_identifies_the_patient():
    scan = read_scan(dicom_bytes(phantom(64, np.uint16, 4000), PixelSpacing=[1, 1]))
    text = repr(scan.metadata)
    for secret in ("Doe", "Jane", "PID-998877", "19700101"):
        assert secret not in text


def test_dicom_without_pixel_data():
    with pytest.raises(ScanError, match="This DICOM file holds no image"):
        read_scan(dicom_bytes(phantom(64, np.uint16), with_pixels=False), name="report.dcm")


def test_dicom_with_short_pixel_data():
    data = dicom_bytes(phantom(64, np.uint16, 4000))
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.PixelData = dataset.PixelData[:1000]
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    with pytest.raises(ScanError, match="The DICOM image is cut off"):
        read_scan(buffer.getvalue())


def test_dicom_compressed_without_decoder_is_explained():
    dataset_bytes = dicom_bytes(phantom(64, np.uint16), with_pixels=False, transfer_syntax=JPEGLSLossless)
    dataset = pydicom.dcmread(io.BytesIO(dataset_bytes))
    dataset.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(200)])
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    with pytest.raises(ScanError, match="compressed with JPEG-LS Lossless Image Compression"):
        read_scan(buffer.getvalue(), name="compressed.dcm")


def test_dicom_multiframe_becomes_slices_with_the_middle_chosen():
    frames = np.stack([phantom(64, np.uint16, 1000) * (k + 1) for k in range(4)])
    data = dicom_bytes(frames[0], with_pixels=False)
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.NumberOfFrames = 4
    dataset.PixelData = frames.astype("<u2").tobytes()
    dataset["PixelData"].VR = "OW"
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    scan = read_scan(buffer.getvalue())
    assert scan.slices.shape == (4, 64, 64) and scan.chosen_slice == 2
    assert np.all(np.diff(scan.slices.mean(axis=(1, 2))) > 0)


def test_deflated_dicom_is_read_and_its_unpacked_size_capped(monkeypatch):
    dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(phantom(64, np.uint16, 4000))))
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    assert read_scan(buffer.getvalue()).metadata["transfer_syntax"] == "Deflated Explicit VR Little Endian"
    monkeypatch.setattr(scan_dicom, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(ScanError, match="The DICOM file unpacks to more than"):
        read_scan(buffer.getvalue())


def test_random_bytes_named_dcm_are_not_taken_for_dicom():
    noise = np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    with pytest.raises(ScanError, match="BrainML cannot tell what kind of file this is"):
        read_scan(b"\x08\x00" + b"\x05\x00" + noise, name="fake.dcm")


def _series(n=5, with_positions=True):
    """Slice k holds the constant k * 500 plus a gradient (so no slice is blank)."""
    members = {}
    gradient = np.tile(np.arange(64, dtype=np.uint16), (64, 1))
    for k in range(n):
        tags = {"InstanceNumber": n - k if with_positions else k + 1, "SeriesInstanceUID": "1.2.3.4",
                "WindowCenter": 1500, "WindowWidth": 3000}
        if with_positions:
            # Instance numbers run backwards on purpose: position along the normal must win.
            tags.update(ImageOrientationPatient=[1, 0, 0, 0, 1, 0], ImagePositionPatient=[0, 0, 10.0 * k])
        members[k] = dicom_bytes(gradient + 500 * k, **tags)
    return members


def test_dicom_series_zip_sorted_by_position():
    series = _series()
    shuffled = {f"series/IM{order:04d}.dcm": series[k] for order, k in enumerate([3, 0, 4, 1, 2])}
    scan = read_scan(zip_bytes(shuffled), name="series.zip")
    assert_unit_slices(scan, 5, 64, 64)
    means = scan.slices[:, :, 0].mean(axis=1)
    assert np.all(np.diff(means) > 0)
    assert scan.chosen_slice == 2
    assert scan.metadata["sorted_by"] == "ImagePositionPatient" and scan.metadata["plane"] == "axial"


def test_dicom_series_zip_sorted_by_instance_number_without_positions():
    series = _series(with_positions=False)
    shuffled = {f"{name}": series[k] for name, k in zip("edcba", range(5))}  # names sort in reverse
    scan = read_scan(zip_bytes(shuffled))
    assert scan.metadata["sorted_by"] == "InstanceNumber"
    assert np.all(np.diff(scan.slices[:, :, 0].mean(axis=1)) > 0)


def test_nifti_chooses_the_slice_with_most_brain_and_honours_slice_index():
    volume = head_volume()
    scan = read_scan(nifti_bytes(volume), name="head.nii")
    assert_unit_slices(scan, 20, 72, 64)
    assert (scan.format, scan.chosen_slice, scan.bit_depth, scan.original_size) == ("NIfTI", 13, 32, (64, 72))
    assert scan.pixel_spacing == (1.0, 1.0)
    assert read_scan(nifti_bytes(volume), slice_index=4).chosen_slice == 4
    with pytest.raises(ScanError, match=r"Slice 20 does not exist: this scan has 20 slices \(0 to 19\)"):
        read_scan(nifti_bytes(volume), slice_index=20)


def test_nifti_slices_are_shown_anterior_up_patient_right_on_left():
    volume = head_volume((64, 72, 20))
    volume[-6:, -6:, :] = 1000.0  # voxels at the patient's right (+x) and anterior (+y) in RAS
    spacing_affine = np.diag([0.9, 1.1, 3.0, 1.0])
    ras = read_scan(nifti_bytes(volume, spacing_affine))
    assert ras.image[:6, :6].min() == 1.0  # top-left on screen
    # The same head stored left-to-right and posterior-to-anterior flipped must look the same.
    lps_affine = np.diag([-0.9, -1.1, 3.0, 1.0])
    lps_affine[:3, 3] = [0.9 * 63, 1.1 * 71, 0]
    lps = read_scan(nifti_bytes(volume[::-1, ::-1, :].copy(), lps_affine))
    np.testing.assert_allclose(lps.slices, ras.slices, atol=1e-6)
    assert lps.metadata["source_orientation"] == "LPS" and ras.metadata["source_orientation"] == "RAS"
    assert ras.pixel_spacing == pytest.approx((1.1, 0.9)) and ras.metadata["slice_thickness_mm"] == pytest.approx(3.0)


def test_nifti_gz_and_nifti2():
    volume = head_volume().astype(np.int16)
    gz_scan = read_scan(nifti_bytes(volume, gz=True), name="head.nii.gz")
    assert gz_scan.format == "NIfTI" and gz_scan.bit_depth == 16
    np.testing.assert_allclose(gz_scan.slices, read_scan(nifti_bytes(volume, version=2)).slices)


def test_nifti_4d_series_is_refused():
    with pytest.raises(ScanError, match=r"This NIfTI file holds a 4D series \(64x64x4x3\); BrainML reads 3D volumes"):
        read_scan(nifti_bytes(np.ones((64, 64, 4, 3), dtype=np.uint8)))


def test_nifti_4d_with_one_volume_is_squeezed():
    scan = read_scan(nifti_bytes(head_volume()[..., np.newaxis]))
    assert scan.slices.shape == (20, 72, 64)


def test_nifti_2d_is_refused():
    with pytest.raises(ScanError, match=r"This NIfTI file holds a single 2D image \(64x64\)"):
        read_scan(nifti_bytes(phantom(64).astype(np.float32)))


def test_nifti_nans_become_zero():
    volume = head_volume()
    volume[:5, :5, :] = np.nan
    scan = read_scan(nifti_bytes(volume))
    assert np.isfinite(scan.slices).all()
    assert scan.metadata["non_finite_voxels_set_to_0"] == 5 * 5 * 20


def test_nifti_all_nan_is_refused():
    with pytest.raises(ScanError, match="every voxel is NaN"):
        read_scan(nifti_bytes(np.full((64, 64, 4), np.nan, dtype=np.float32)))


def test_nifti_cut_off():
    data = nifti_bytes(head_volume())
    with pytest.raises(ScanError, match="The NIfTI file is cut off"):
        read_scan(data[: len(data) // 2], name="head.nii")


def test_gzip_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(scan_archives, "MAX_UNPACKED_BYTES", 2**20)
    with pytest.raises(ScanError, match="unpacks to more than 1 MB"):
        read_scan(gzip.compress(bytes(3 * 2**20), compresslevel=1), name="head.nii.gz")


def test_zip_with_no_scans():
    with pytest.raises(ScanError, match="The zip holds no scans"):
        read_scan(zip_bytes({"readme.txt": b"hello", "notes/more.txt": b"world"}), name="case.zip")


def test_zip_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(scan_archives, "MAX_UNPACKED_BYTES", 2**20)
    with pytest.raises(ScanError, match="unpacks to more than 1 MB"):
        read_scan(zip_bytes({"a.dcm": bytes(2 * 2**20)}))


def test_zip_members_together_over_the_cap_are_refused(monkeypatch):
    monkeypatch.setattr(scan_archives, "MAX_UNPACKED_BYTES", 2**20)
    members = {f"part{i}.dcm": bytes(400_000) for i in range(4)}  # each small, together over the cap
    with pytest.raises(ScanError, match="unpacks to more than"):
        read_scan(zip_bytes(members))


def test_zip_member_lying_about_its_size_is_not_unpacked_past_its_claim(monkeypatch):
    monkeypatch.setattr(scan_archives, "MAX_UNPACKED_BYTES", 2**20)
    data = bytearray(zip_bytes({"a.dcm": bytes(4 * 2**20)}))
    claimed = struct.pack("<I", 1000)
    data[22:26] = claimed  # local header's uncompressed size
    directory = data.index(b"PK\x01\x02")
    data[directory + 24 : directory + 28] = claimed  # central directory's
    with pytest.raises(ScanError, match="The zip holds no scans .*skipped 1 entry that could not be unpacked"):
        read_scan(bytes(data))


def test_zip_path_traversal_is_never_read():
    image = encode(Image.fromarray(phantom()), "PNG")
    with pytest.raises(ScanError, match=r"The zip holds no scans .*skipped 2 entries whose path leads outside the zip"):
        read_scan(zip_bytes({"../../etc/evil.png": image, "/abs/evil.png": image}))
    scan = read_scan(zip_bytes({"../evil.png": encode(Image.new("L", (96, 96), 7), "PNG"), "good.png": image}))
    assert scan.metadata["zip_member"] == "good.png"
    np.testing.assert_allclose(scan.image, phantom() / 255, atol=1e-6)


def test_zip_of_images_reads_the_first_and_says_so():
    first, second = phantom(), np.fliplr(phantom())
    scan = read_scan(zip_bytes({"b.png": encode(Image.fromarray(second), "PNG"),
                                "a.png": encode(Image.fromarray(first), "PNG")}))
    np.testing.assert_allclose(scan.image, first / 255, atol=1e-6)
    assert "holds 2 such files" in scan.metadata["note"]


def test_zip_holding_a_nifti():
    scan = read_scan(zip_bytes({"head.nii.gz": nifti_bytes(head_volume(), gz=True)}))
    assert scan.format == "NIfTI" and scan.chosen_slice == 13


def test_zip_member_errors_name_the_member():
    with pytest.raises(ScanError, match=r"^tiny.png \(in case.zip\): The image is 3x3 pixels"):
        read_scan(zip_bytes({"tiny.png": encode(Image.new("L", (3, 3)), "PNG")}), name="case.zip")


def test_a_zip_of_scans_hands_back_its_files_without_clutter():
    first, second = encode(Image.fromarray(phantom()), "PNG"), encode(Image.fromarray(phantom()[::-1]), "PNG")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("scans/", b"")
        archive.writestr("scans/b.png", second)
        archive.writestr("scans/a.png", first)
        archive.writestr("__MACOSX/scans/._a.png", b"resource fork")
        archive.writestr("scans/.DS_Store", b"finder")
        archive.writestr("../escape.png", b"outside")
    scan = read_scan(buffer.getvalue(), name="scans.zip")
    assert scan.metadata["zip_member"] == "scans/a.png"
    assert scan.members == (("scans/a.png", first), ("scans/b.png", second))


def test_office_document_is_named_as_such():
    with pytest.raises(ScanError, match="This file is an Office document"):
        read_scan(zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w/>"}), name="x.docx")


def test_damaged_zip():
    data = zip_bytes({"a.png": encode(Image.fromarray(phantom()), "PNG")})
    with pytest.raises(ScanError, match="The zip is damaged or cut off"):
        read_scan(data[:40], name="case.zip")


def test_reading_uploads_writes_nothing_to_disk(monkeypatch, tmp_path):
    uploads = {
        "a.png": encode(Image.fromarray(phantom()), "PNG"),
        "a.jpg": encode(Image.fromarray(phantom()), "JPEG"),
        "a.tif": encode(Image.fromarray(phantom(96, np.uint16, 4000)), "TIFF"),
        "a.dcm": dicom_bytes(phantom(64, np.uint16, 4000)),
        "a.nii.gz": nifti_bytes(head_volume(), gz=True),
        "a.zip": zip_bytes({f"IM{k}.dcm": data for k, data in _series(3).items()}),
    }
    real_open, real_os_open = builtins.open, os.open

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"write attempted: {file}")
        return real_open(file, mode, *args, **kwargs)

    def read_only_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise AssertionError(f"write attempted: {path}")
        return real_os_open(path, flags, *args, **kwargs)

    def no_temp(*args, **kwargs):
        raise AssertionError("temporary file attempted")

    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.setattr(io, "open", read_only_open)
    monkeypatch.setattr(os, "open", read_only_os_open)
    for factory in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, factory, no_temp)
    monkeypatch.chdir(tmp_path)
    for name, data in uploads.items():
        assert read_scan(data, name=name).n_slices >= 1
    assert list(tmp_path.iterdir()) == []
