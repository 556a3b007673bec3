"""NIfTI-1 and NIfTI-2 volumes through nibabel, turned to radiological axial slices."""

from __future__ import annotations

import nibabel
import numpy as np

from .scan import MAX_VOXELS, Scan, ScanError, check_not_blank, check_slice_size, robust_range, stretch
from .sniff import nifti_version

# A NIfTI slice's "brain" is its voxels above 10% of the robust range: well above scanner background noise.
FOREGROUND_LEVEL = 0.1


def read_nifti(data: bytes) -> Scan:
    image_class = nibabel.Nifti1Image if nifti_version(data) == "1" else nibabel.Nifti2Image
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
    check_slice_size(volume.shape[0], volume.shape[1], "NIfTI slice")
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
    check_not_blank(volume, "NIfTI volume")
    low, high = robust_range(volume)
    metadata["window"] = {"low": low, "high": high, "source": "0.5-99.5 percentile of the volume"}
    # Canonical RAS+ axes: x runs to the patient's right, y to anterior, z to superior. Display each axial slice
    # as radiologists do: anterior at the top, the patient's right on the viewer's left.
    slices = np.ascontiguousarray(stretch(volume, low, high)[::-1, ::-1, :].transpose(2, 1, 0))
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
