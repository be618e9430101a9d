//! Slice pictures, made off the UI thread: read the slice from the store,
//! overlay the mask, scale and encode for the terminal's graphics protocol
//! (or half-blocks). Only the newest request matters; older queued ones are
//! skipped.
//!
//! Imports the app's `Update` and picture types, `snapshot` and the
//! engine's store and masks.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};

use image::DynamicImage;
use ratatui::layout::Rect;
use ratatui_image::Resize;
use ratatui_image::picker::Picker;
use ratatui_image::protocol::Protocol;

use super::app::{ImageRequest, Overlay, Update};
use super::snapshot::newest_store;
use crate::masks::preview::slice_picture;
use crate::masks::{derived_path, predicted_path};
use crate::project::{RoundState, SliceIndex};
use crate::store::SliceStore;

pub fn spawn(
    project: PathBuf,
    picker: Picker,
    requests: Receiver<ImageRequest>,
    tx: Sender<Update>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut store: Option<SliceStore> = None;
        while let Ok(mut request) = requests.recv() {
            while let Ok(newer) = requests.try_recv() {
                request = newer;
            }
            let result = make(&project, &picker, &mut store, &request);
            if tx.send(Update::Image(request, result)).is_err() {
                return;
            }
        }
    })
}

/// Scales the slice up (or down) to fill the cells it is given, keeping
/// its aspect: the protocols only ever shrink, and a 128² slice would be a
/// stamp in a large pane.
pub fn fill_cells(picture: DynamicImage, picker: &Picker, cells: (u16, u16)) -> DynamicImage {
    let font = picker.font_size();
    let (fw, fh) = (font.0.max(1) as f64, font.1.max(1) as f64);
    let (pw, ph) = (cells.0 as f64 * fw, cells.1 as f64 * fh);
    let scale = (pw / picture.width() as f64).min(ph / picture.height() as f64);
    let w = ((picture.width() as f64 * scale).floor() as u32).max(1);
    let h = ((picture.height() as f64 * scale).floor() as u32).max(1);
    picture.resize_exact(w, h, image::imageops::FilterType::Triangle)
}

/// The picture for `request`, reopening the store if it was rebuilt.
pub fn make(
    project: &std::path::Path,
    picker: &Picker,
    store: &mut Option<SliceStore>,
    request: &ImageRequest,
) -> Result<Protocol, String> {
    let newest = newest_store(project).ok_or("the slice store is not built yet")?;
    if store.as_ref().is_none_or(|s| s.dir() != newest) {
        *store = Some(SliceStore::open(&newest).map_err(|e| e.to_string())?);
    }
    let store = store.as_ref().ok_or("no slice store")?;
    let state = RoundState::load(project).map_err(|e| e.to_string())?;
    let index = SliceIndex::new(store, &state.test_cases);
    let id = index
        .id(&request.key)
        .ok_or_else(|| format!("{} is not in the slice store", request.key))?;
    let meta = store.meta();
    let (h, w) = (meta.height, meta.width);
    let mut values = vec![0f32; meta.slice_values()];
    store
        .read_image(id, &mut values)
        .map_err(|e| e.to_string())?;
    let channel = request.modality.min(meta.channels().saturating_sub(1));
    let plane = &values[channel * h * w..(channel + 1) * h * w];
    let mask = match request.overlay {
        Overlay::None => None,
        Overlay::Truth => {
            let mut m = vec![0u8; h * w];
            store
                .read_label(id, &mut m)
                .map_err(|e| e.to_string())?
                .then_some(m)
        }
        Overlay::Mask => std::fs::read(derived_path(project, &request.key))
            .ok()
            .filter(|m| m.len() == h * w),
        // None for the random seed batch (no U-Net yet).
        Overlay::Prediction => std::fs::read(predicted_path(project, &request.key))
            .ok()
            .filter(|m| m.len() == h * w),
    };
    let picture = fill_cells(
        DynamicImage::ImageRgb8(slice_picture(plane, h, w, mask.as_deref())),
        picker,
        request.cells,
    );
    let area = Rect::new(0, 0, request.cells.0, request.cells.1);
    picker
        .new_protocol(picture, area, Resize::Fit(None))
        .map_err(|e| e.to_string())
}
