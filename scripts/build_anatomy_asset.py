"""Rebuild brainml/assets/colin27_head.npz from the Colin27 template shipped by Debian's `mricron-data`.

    apt-get install mricron-data   # or: apt-get download mricron-data && dpkg -x mricron-data_*.deb DIR
    python scripts/build_anatomy_asset.py /usr/share/mricron/templates

The asset keeps the T1 head (ch2.nii.gz, 1 mm, MNI space) cropped to the head, as uint8, and the brain mask
(ch2bet.nii.gz > 0), so the synthetic generator needs neither Debian packages nor a download at run time.
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage


def main(template_dir: str) -> None:
    folder = Path(template_dir)
    head_image = nib.load(folder / "ch2.nii.gz")
    t1 = np.clip(head_image.get_fdata(), 0, 255).astype(np.uint8)
    brain = nib.load(folder / "ch2bet.nii.gz").get_fdata() > 0
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(brain, iterations=2))
    head = ndimage.binary_fill_holes(ndimage.binary_closing(t1 > 12, iterations=3))
    corner = np.array([np.flatnonzero(head.any(axis=tuple(a for a in range(3) if a != axis)))[0] for axis in range(3)])
    stop = np.array([np.flatnonzero(head.any(axis=tuple(a for a in range(3) if a != axis)))[-1] + 1 for axis in range(3)])
    crop = tuple(slice(a, b) for a, b in zip(corner, stop))
    # Voxel of MNI (0, 0, 0) inside the crop; ch2's affine is a pure 1 mm translation in RAS.
    origin = -head_image.affine[:3, 3] - corner
    out = Path(__file__).resolve().parents[1] / "brainml" / "assets" / "colin27_head.npz"
    np.savez_compressed(
        out,
        t1=np.where(head[crop], t1[crop], 0).astype(np.uint8),
        brain=np.packbits(brain[crop]),
        shape=np.array(t1[crop].shape),
        mni_origin_voxel=origin.astype(np.float32),
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), shape {t1[crop].shape}, MNI origin at voxel {origin}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/mricron/templates")
