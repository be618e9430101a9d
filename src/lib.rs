//! nextslice: suggestive annotation of brain MRI with gradient-guided sampling
//! (Dai et al., Medical Image Analysis 2022).
//!
//! Layers, lowest first: `volume` (NIfTI I/O, orientation, phantoms) and
//! `store` (the preprocessed slice pool) know nothing of models or terminals;
//! `config` describes a dataset and an experiment.

pub mod config;
pub mod device;
pub mod engine;
pub mod eval;
pub mod failpoint;
pub mod fsutil;
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
pub mod train;
pub mod tui;
pub mod volume;
pub mod worker;
