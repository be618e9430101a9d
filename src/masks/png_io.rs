//! 8-bit PNG in and out: grayscale previews for annotators, and label masks
//! drawn in any tool that saves indexed (palette) or grayscale PNG.

use std::io::Cursor;
use std::path::Path;

use crate::fsutil::write_atomic;

/// Writes a row-major 8-bit grayscale image.
pub fn write_gray(path: &Path, width: usize, height: usize, pixels: &[u8]) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(Cursor::new(&mut bytes), width as u32, height as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(pixels)
            .map_err(std::io::Error::other)?;
    }
    write_atomic(path, &bytes)
}

/// Reads a label PNG of `expected` (width, height): one 8-bit value per
/// pixel, the palette index of an indexed PNG or the gray level of a
/// grayscale one. Colour images are refused: their pixel values are not
/// labels. The size is checked from the header before any pixel buffer is
/// allocated or anything decoded, so a PNG claiming a huge image costs no
/// more than reading its file.
pub fn read_labels(path: &Path, expected: (usize, usize)) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // Keep palette indices as they are (no expansion to RGB).
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("not a readable PNG: {e}"))?;
    let info = reader.info();
    let (width, height) = (info.width as usize, info.height as usize);
    if (width, height) != expected {
        return Err(format!(
            "PNG is {width}×{height}, the slice preview is {}×{}",
            expected.0, expected.1
        ));
    }
    let (color, depth) = (info.color_type, info.bit_depth);
    if depth != png::BitDepth::Eight {
        return Err(format!(
            "{depth:?}-bit PNG; label masks must be 8-bit indexed or grayscale"
        ));
    }
    if !matches!(color, png::ColorType::Indexed | png::ColorType::Grayscale) {
        return Err(format!(
            "{color:?} PNG; label masks must be indexed (palette) or grayscale, where each pixel value is a label"
        ));
    }
    let size = reader.output_buffer_size().ok_or("PNG too large")?;
    let mut buffer = vec![0u8; size];
    let frame = reader
        .next_frame(&mut buffer)
        .map_err(|e| format!("corrupt PNG: {e}"))?;
    buffer.truncate(frame.buffer_size());
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_of_the_wrong_size_is_refused_from_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mask.png");
        write_gray(&path, 3, 2, &[0, 1, 2, 4, 1, 0]).unwrap();
        assert_eq!(read_labels(&path, (3, 2)).unwrap(), [0, 1, 2, 4, 1, 0]);
        let wrong = read_labels(&path, (2, 3)).unwrap_err();
        assert!(
            wrong.contains("PNG is 3×2, the slice preview is 2×3"),
            "{wrong}"
        );
        // A header that claims 60 000 × 60 000 pixels: refused, not allocated.
        let mut bytes = std::fs::read(&path).unwrap();
        let ihdr = bytes.windows(4).position(|w| w == b"IHDR").unwrap() + 4;
        bytes[ihdr..ihdr + 8].copy_from_slice(&[0, 0, 0xea, 0x60, 0, 0, 0xea, 0x60]);
        let mut crc = flate2::Crc::new();
        crc.update(&bytes[ihdr - 4..ihdr + 13]);
        bytes[ihdr + 13..ihdr + 17].copy_from_slice(&crc.sum().to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let huge = read_labels(&path, (3, 2)).unwrap_err();
        assert!(huge.contains("PNG is 60000×60000"), "{huge}");
    }
}
