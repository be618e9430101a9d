//! A stored slice as a picture for people: grey levels from the slice's own
//! intensity range inside the brain, classes blended in colour, shown in the
//! radiological view. Used by `nextslice show` and the TUI.

use image::{Rgb, RgbImage};

/// Overlay colours per class index (0, background, is never drawn).
pub const CLASS_COLOURS: [[u8; 3]; 8] = [
    [0, 0, 0],
    [230, 60, 60],
    [60, 200, 80],
    [250, 220, 40],
    [70, 130, 255],
    [220, 80, 220],
    [80, 220, 220],
    [255, 150, 40],
];

/// The colour of class `class` (cycling when there are more than 7).
pub fn class_colour(class: usize) -> [u8; 3] {
    if class == 0 {
        return CLASS_COLOURS[0];
    }
    CLASS_COLOURS[1 + (class - 1) % (CLASS_COLOURS.len() - 1)]
}

/// `plane` is one modality of a store slice (row-major, `height`×`width`,
/// zero outside the brain); `classes` an optional mask on the same grid.
/// Returns the picture with anterior/superior up and the patient's right on
/// the left (radiological convention).
pub fn slice_picture(
    plane: &[f32],
    height: usize,
    width: usize,
    classes: Option<&[u8]>,
) -> RgbImage {
    let (lo, hi) = display_window(plane);
    let mut rgb = RgbImage::new(width as u32, height as u32);
    for r in 0..height {
        for c in 0..width {
            let v = plane[r * width + c];
            let g = if v == 0.0 {
                0.0
            } else {
                ((v - lo) / (hi - lo).max(1e-6)).clamp(0.0, 1.0) * 255.0
            };
            let mut px = [g as u8; 3];
            if let Some(m) = classes {
                let class = m[r * width + c] as usize;
                if class > 0 {
                    let col = class_colour(class);
                    px =
                        std::array::from_fn(|k| ((px[k] as u16 * 2 + col[k] as u16 * 3) / 5) as u8);
                }
            }
            rgb.put_pixel((width - 1 - c) as u32, (height - 1 - r) as u32, Rgb(px));
        }
    }
    rgb
}

/// The 1st and 99th percentile of the non-zero (brain) values: robust to a
/// few hot voxels.
fn display_window(plane: &[f32]) -> (f32, f32) {
    let mut inside: Vec<f32> = plane.iter().copied().filter(|v| *v != 0.0).collect();
    if inside.is_empty() {
        return (0.0, 1.0);
    }
    inside.sort_by(f32::total_cmp);
    let n = inside.len();
    (inside[n / 100], inside[n - 1 - n / 100])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_is_flipped_to_the_radiological_view_with_classes_in_colour() {
        // 2×3 slice: a bright voxel at row 0, column 0 labelled class 1.
        let plane = [10.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let classes = [1u8, 0, 0, 0, 0, 0];
        let pic = slice_picture(&plane, 2, 3, Some(&classes));
        // Row 0 / column 0 lands bottom-right.
        let px = pic.get_pixel(2, 1).0;
        assert!(px[0] > px[1] && px[0] > px[2], "class 1 is red-ish: {px:?}");
        // Outside the brain stays black.
        assert_eq!(pic.get_pixel(0, 0).0, [0, 0, 0]);
        // Unlabelled brain is grey.
        let g = pic.get_pixel(1, 0).0;
        assert!(g[0] == g[1] && g[1] == g[2]);
    }

    #[test]
    fn colours_cycle_past_the_palette_but_never_to_background() {
        assert_eq!(class_colour(1), class_colour(8));
        assert_ne!(class_colour(7), class_colour(0));
    }
}
