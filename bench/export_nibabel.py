"""Checks an export against nibabel: every exported axial slice image has its
volume's own in-plane size, the affine of that plane of the RAS-canonical
volume, and the same voxels.

    python bench/export_nibabel.py PROJECT DATA [ROUND]

(The venv of bench/setup-python.sh plus `pip install nibabel`.)
"""
import glob
import re
import sys

import nibabel as nib
import numpy as np

project, data = sys.argv[1], sys.argv[2]
round_dir = f"{project}/rounds/{int(sys.argv[3]) if len(sys.argv) > 3 else 0:03d}/export"
checked = 0
for path in sorted(glob.glob(f"{round_dir}/*_s[0-9][0-9][0-9]_*.nii.gz")):
    match = re.match(r".*/(.+)_s(\d+)_([^_/]+)\.nii\.gz$", path)
    case, s, modality = match.group(1), int(match.group(2)), match.group(3)
    source = nib.as_closest_canonical(nib.load(f"{data}/{case}/{case}_{modality}.nii.gz"))
    exported = nib.load(path)
    plane = source.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, s], [0, 0, 0, 1]])
    assert exported.shape[:2] == source.shape[:2], (path, exported.shape, source.shape)
    assert np.allclose(exported.affine, plane, atol=1e-3), (path, exported.affine, plane)
    assert np.allclose(np.asarray(exported.dataobj)[..., 0], np.asarray(source.dataobj)[..., s]), path
    checked += 1
if checked == 0:
    sys.exit(f"no exported slices under {round_dir}")
print(f"{checked} exported slices: nibabel reads each volume's own size, affine and voxels")
