//! nextslice: suggestive annotation of brain MRI with gradient-guided sampling
//! (Dai et al., Medical Image Analysis 2022).
//!
//! Layers, lowest first; a module imports only those below it (the
//! README's "Layout of the code" has one line per module):
//! `config`, `layout`, `fsutil`, `heap`, `rng`, `switch`, `progress`, `gpu`, `device` →
//! `volume` → `store`, `model`, `eval` → `train`, `strategy`, `masks` →
//! `journal` → `project` → `engine` → `simulate` → `worker` → `tui` → the
//! CLI (in the binary).

pub mod config;
pub mod device;
pub mod engine;
pub mod eval;
pub mod failpoint;
pub mod fsutil;
pub mod gpu;
pub mod heap;
pub mod journal;
pub mod layout;
pub mod masks;
pub mod model;
pub mod progress;
pub mod project;
pub mod rng;
pub mod simulate;
pub mod store;
pub mod strategy;
pub mod switch;
pub mod train;
pub mod tui;
pub mod volume;
pub mod worker;
