//! The geometry shared by export and import: a suggested slice is the full
//! plane `s` of the canonical (RAS) volume, saved as a one-slice 3D image
//! whose affine places it exactly where it lies in the volume, so it lines
//! up over the scan in ITK-SNAP or 3D Slicer. PNGs show the same plane in
//! radiological view: anterior (axial) or superior (coronal, sagittal) up,
//! the patient's right on the left.

use crate::config::SliceAxis;
use crate::store::{CropWindow, extract_slice};
use crate::volume::Volume;

/// Plane `s` along `axis` of a canonical 3D volume, as a one-slice volume.
pub fn plane<T: Copy>(volume: &Volume<T>, axis: SliceAxis, s: usize) -> Volume<T> {
    let [nx, ny, nz, _] = volume.dims;
    let normal = axis.normal_axis();
    let mut dims = [nx, ny, nz, 1];
    dims[normal] = 1;
    let mut data = Vec::with_capacity(dims[0] * dims[1] * dims[2]);
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let mut p = [x, y, z];
                p[normal] = s;
                data.push(volume.data[volume.index(p[0], p[1], p[2])]);
            }
        }
    }
    let mut origin = [0.0; 3];
    origin[normal] = s as f64;
    Volume::new(dims, volume.affine.translated_voxels(origin), data)
}

/// Size of a plane as (rows, columns) in the slice's own frame.
pub fn plane_shape(volume_dims: [usize; 4], axis: SliceAxis) -> (usize, usize) {
    let (row_axis, col_axis) = axis.in_plane_axes();
    (volume_dims[row_axis], volume_dims[col_axis])
}

/// Value at (row, column) of a one-slice plane volume.
fn at<T: Copy>(plane: &Volume<T>, axis: SliceAxis, r: usize, c: usize) -> T {
    let (row_axis, col_axis) = axis.in_plane_axes();
    let mut p = [0usize; 3];
    p[row_axis] = r;
    p[col_axis] = c;
    plane.data[plane.index(p[0], p[1], p[2])]
}

/// The plane as a row-major image in radiological view (PNG orientation).
pub fn to_display<T: Copy>(plane: &Volume<T>, axis: SliceAxis) -> (usize, usize, Vec<T>) {
    let (rows, cols) = plane_shape(plane.dims, axis);
    let mut out = Vec::with_capacity(rows * cols);
    for dr in 0..rows {
        for dc in 0..cols {
            out.push(at(plane, axis, rows - 1 - dr, cols - 1 - dc));
        }
    }
    (rows, cols, out)
}

/// Inverse of `to_display`: a radiological-view image back onto the plane's
/// voxel grid (dims of `template`).
pub fn from_display<T: Copy + Default>(
    image: &[T],
    template_dims: [usize; 4],
    axis: SliceAxis,
) -> Vec<T> {
    let (rows, cols) = plane_shape(template_dims, axis);
    let (row_axis, col_axis) = axis.in_plane_axes();
    let [nx, ny, _, _] = template_dims;
    let mut data = vec![T::default(); template_dims[0] * template_dims[1] * template_dims[2]];
    for dr in 0..rows {
        for dc in 0..cols {
            let mut p = [0usize; 3];
            p[row_axis] = rows - 1 - dr;
            p[col_axis] = cols - 1 - dc;
            data[p[0] + nx * (p[1] + ny * p[2])] = image[dr * cols + dc];
        }
    }
    data
}

/// A full plane cropped/padded to the store's window for its volume: the
/// pixel grid the models see.
pub fn to_store_window<T: Copy>(
    plane: &Volume<T>,
    axis: SliceAxis,
    origin: [i64; 2],
    size: [usize; 2],
    fill: T,
) -> Vec<T> {
    let window = CropWindow { axis, origin, size };
    let mut out = vec![fill; size[0] * size[1]];
    extract_slice(plane, &window, 0, fill, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Affine;

    #[test]
    fn planes_sit_where_they_were_and_display_round_trips() {
        let dims = [4, 3, 5, 1];
        let v = Volume::new(
            dims,
            Affine::diagonal([1.0, 2.0, 3.0], [5.0, 6.0, 7.0]),
            (0..60u32).collect(),
        );
        for axis in [SliceAxis::Axial, SliceAxis::Coronal, SliceAxis::Sagittal] {
            let p = plane(&v, axis, 1);
            // Voxel 0 of the plane is voxel (.., 1, ..) of the volume, in world space too.
            let mut q = [0.0; 3];
            q[axis.normal_axis()] = 1.0;
            assert_eq!(p.affine.apply([0.0; 3]), v.affine.apply(q));
            let (_, _, shown) = to_display(&p, axis);
            assert_eq!(from_display(&shown, p.dims, axis), p.data);
        }
        let axial = plane(&v, SliceAxis::Axial, 2);
        assert_eq!(axial.dims, [4, 3, 1, 1]);
        assert_eq!(axial.data[0], 24);
        // Display: top-left is the last row (anterior) and last column (right).
        let (rows, cols, shown) = to_display(&axial, SliceAxis::Axial);
        assert_eq!((rows, cols), (3, 4));
        assert_eq!(shown[0], axial.data[axial.index(3, 2, 0)]);
    }
}
