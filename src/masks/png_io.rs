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

/// Reads a label PNG: one 8-bit value per pixel, the palette index of an
/// indexed PNG or the gray level of a grayscale one. Returns (width, height,
/// values). Colour images are refused: their pixel values are not labels.
pub fn read_labels(path: &Path) -> Result<(usize, usize, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // Keep palette indices as they are (no expansion to RGB).
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("not a readable PNG: {e}"))?;
    let info = reader.info();
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
    Ok((frame.width as usize, frame.height as usize, buffer))
}
