//! Integration tests, in one binary so the (large) dependency graph is linked
//! once. Everything runs on small generated data through the real code paths.

mod common;
mod config;
mod dataset;
mod models;
mod native_resolution;
mod nifti_errors;
mod nifti_io;
mod patient_wise;
mod phantom;
mod relink;
mod rounds;
mod shared_store;
mod simulate;
mod soak;
mod store;
mod tui;
mod tui_fixture;
mod tui_tmux;
