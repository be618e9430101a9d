//! The round engine: each step of a round as one function over a project
//! (train-vae, suggest, train, evaluate), one file each, over shared
//! inference plumbing (`infer`), model loading (`models`) and each
//! strategy's preparation (`prepare`, `scores`, `gradient`). Steps check the
//! phase, do their work, make their outputs durable, and only then commit
//! the new state and log the transition — so a crash at any point leaves
//! the previous state, and re-running the step resumes it (model training
//! from its last epoch checkpoint).
//!
//! Imports the project, the journal and everything below them (models,
//! training, strategies, masks, store, eval); the worker and `simulate`
//! call it, nothing here calls them.

mod context;
mod evaluate;
mod gradient;
mod infer;
mod models;
mod native;
#[cfg(test)]
mod padded_passes;
mod prepare;
mod reconcile;
mod scores;
mod suggest;
mod train;
mod train_vae;
mod validate;
mod warmup;

pub use context::{EngineError, Model, StepContext};
pub use evaluate::{Evaluation, evaluate_step};
pub use suggest::suggest_step;
pub use train::train_step;
pub use train_vae::train_vae_step;
pub use warmup::{
    TUNING_STAGE, WarmUp, Workload, WorkloadTuned, ensure_warm, ensure_warm_in, expected_tuning,
    shapes_of, signature, warm_up,
};
