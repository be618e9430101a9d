//! The operator's short steps as library calls, shared by the CLI and the
//! TUI so both check the same preconditions: export the suggestions, check
//! an import, confirm it, ask the running job to stop. Imports masks and the
//! journal, like the rest of the project.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::{Labelled, Phase, Project, RoundState};
use crate::config::SamplingUnit;
use crate::journal::{self, EventLog, Holder, Job, LockError, WorkerLock, running_worker};
use crate::layout::EXPORT_DIR;
use crate::masks::{
    Awaited, Exported, ImportPlan, MaskError, ToExport, apply_import, export, export_volumes,
    plan_import,
};
use crate::progress::Progress;

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    NotNow(String),
    #[error(transparent)]
    Mask(#[from] MaskError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Project(#[from] super::ProjectError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn awaiting_masks(state: &RoundState, what: &str) -> Result<(), ActionError> {
    if state.phase != Phase::AwaitingMasks || state.pending.is_empty() {
        return Err(ActionError::NotNow(format!(
            "{what}: the project is waiting to {}",
            state.phase.describe()
        )));
    }
    Ok(())
}

/// Writes the pending suggestions (2D NIfTI, PNG previews, manifest) into
/// the round's `export/` folder.
pub fn export_pending(project: &Project, progress: &dyn Progress) -> Result<Exported, ActionError> {
    let state = project.state()?;
    awaiting_masks(&state, "nothing to export")?;
    let store = project.store(progress, &AtomicBool::new(false))?;
    let sources = project
        .discover()?
        .cases
        .into_iter()
        .map(|c| (c.id, c.images))
        .collect();
    let dir = project.round_dir(state.round).join(EXPORT_DIR);
    let slices: Vec<ToExport> = state
        .pending
        .iter()
        .map(|p| ToExport {
            key: &p.key,
            source: p.source.as_ref(),
        })
        .collect();
    // Patient-wise rounds go out as whole volumes.
    let write = match project.config.sampling.unit {
        SamplingUnit::Slice => export,
        SamplingUnit::Volume => export_volumes,
    };
    Ok(write(
        &dir,
        &project.config,
        store.meta(),
        &sources,
        &slices,
    )?)
}

/// Checks mask files (or folders of them) against the pending suggestions;
/// writes nothing.
pub fn check_import(
    project: &Project,
    paths: &[PathBuf],
    progress: &dyn Progress,
) -> Result<ImportPlan, ActionError> {
    let state = project.state()?;
    awaiting_masks(&state, "no masks are awaited")?;
    if running_worker(&project.dir).is_some() {
        return Err(ActionError::NotNow(
            "a job is running in this project; import when it has finished".into(),
        ));
    }
    let store = project.store(progress, &AtomicBool::new(false))?;
    let awaited = Awaited {
        pending: state.pending.iter().map(|p| &p.key).collect(),
        labelled: state.labelled.iter().map(|l| (&l.key, l.round)).collect(),
    };
    Ok(plan_import(&project.config, store.meta(), &awaited, paths)?)
}

/// What a confirmed import did.
pub struct Imported {
    pub accepted: usize,
    pub remaining: usize,
}

/// Applies a checked plan's accepted masks and commits the state: to
/// Training once no suggestion is left without its mask.
/// Holds the project's lock while it writes, so no job starts under it
/// (and it waits briefly for one that is finishing, else says which runs).
pub fn confirm_import(project: &Project, plan: &ImportPlan) -> Result<Imported, ActionError> {
    let holder = Holder {
        pid: std::process::id(),
        job: Job::Import,
        device: String::new(),
        started: journal::now(),
    };
    let lock = WorkerLock::acquire(&project.dir, &holder)?;
    if let Some(stale) = &lock.stale {
        let _ = EventLog::new(&project.dir).append(stale.ending());
    }
    let mut state = project.state()?;
    awaiting_masks(&state, "no masks are awaited")?;
    if plan.accepted.is_empty() {
        return Err(ActionError::NotNow("no valid mask in this import".into()));
    }
    // The plan was made against the state as it was; a mask for a slice no
    // longer pending (imported meanwhile) would be counted twice.
    if let Some(stale) = plan
        .accepted
        .iter()
        .find(|m| !state.pending.iter().any(|p| p.key == m.key))
    {
        return Err(ActionError::NotNow(format!(
            "{} is no longer awaiting a mask; check the import again",
            stale.key
        )));
    }
    let rows = apply_import(&project.dir, state.round, plan)?;
    let accepted = rows.len();
    for row in rows {
        state.pending.retain(|p| p.key != row.key);
        state.labelled.push(Labelled {
            key: row.key,
            mask: row.mask,
            round: state.round,
        });
    }
    let remaining = state.pending.len();
    if remaining == 0 {
        let log = EventLog::new(&project.dir);
        project.commit(
            &mut state,
            Phase::Training,
            &format!("{accepted} masks imported"),
            &log,
        )?;
    } else {
        state
            .save(&project.dir)
            .map_err(super::ProjectError::from)?;
    }
    Ok(Imported {
        accepted,
        remaining,
    })
}

/// Asks the running job to stop after its current batch (its last
/// checkpoint is kept). Returns who was asked, or `None` if nothing runs.
pub fn request_cancel(dir: &Path) -> Result<Option<Holder>, ActionError> {
    let Some(holder) = running_worker(dir) else {
        return Ok(None);
    };
    if holder.job == Job::Import {
        return Err(ActionError::NotNow(
            "masks are being imported (it takes a moment and cannot be cancelled)".into(),
        ));
    }
    journal::request_cancel(dir).map_err(|source| ActionError::Io {
        path: dir.join(crate::layout::CANCEL_FILE),
        source,
    })?;
    Ok(Some(holder))
}
