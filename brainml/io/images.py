"""2D images (PNG, JPEG, TIFF, BMP, WebP, GIF) through Pillow: EXIF rotation, bit depth, colour to grey."""

from __future__ import annotations

from io import BytesIO

import numpy as np
from PIL import ExifTags, Image, ImageOps

from .scan import MAX_PIXELS, Scan, ScanError, check_not_blank, check_slice_size, stretch
from .sniff import IMAGE_LABELS

# ITU-R BT.601 luma weights, the same as Pillow's convert("L"), so colour reads the same here and elsewhere.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def read_image(data: bytes, fmt: str) -> Scan:
    label = IMAGE_LABELS[fmt]
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
        check_slice_size(width, height)
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
    check_not_blank(pixels)
    return Scan(
        slices=pixels[np.newaxis],
        format=fmt,
        name=None,
        original_size=(width, height),
        bit_depth=bit_depth,
        metadata=metadata,
    )


def _damaged_image_message(data: bytes, fmt: str) -> str:
    label = IMAGE_LABELS[fmt]
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
            return stretch(values, low, max(high, low + 1)), bit_depth, {"intensity_scale": "min-max"}
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
        return stretch(values, low, high if high > low else low + 1), 32, {"intensity_scale": "min-max"}
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
    grey, details["colour"] = rgb_to_grey(rgb[..., :3])
    details["colour_saturation"] = colour_saturation(rgb[..., :3])
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


def colour_saturation(rgb: np.ndarray) -> float:
    """Share of pixels whose colour is clearly not grey (channel spread above 12% of full scale). MRI is grey, even
    when stored as RGB JPEG (whose compression leaves a spread of a few levels); a photo or a chart is not."""
    rgb = np.asarray(rgb)
    spread = rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1).astype(np.int16)
    return round(float((spread > 0.12 * 255).mean()), 4)


def rgb_to_grey(rgb: np.ndarray) -> tuple[np.ndarray, str]:
    """(H, W, 3) -> (H, W) float32 on the source's scale. MRI exported as RGB (R = G = B) keeps one channel."""
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if np.array_equal(red, green) and np.array_equal(green, blue):
        return red.astype(np.float32), "grey stored as RGB"
    return rgb.astype(np.float32) @ LUMA_WEIGHTS, "colour, converted to luminance"
