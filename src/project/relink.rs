//! `nextslice relink --data NEW`: point a project at its data after the
//! data moved (copied to a GPU box's SSD, a renamed mount). Stores are
//! keyed by content relative to the data root, so the data at NEW must
//! give the very store the project was using: then only `dataset.root` in
//! `project.toml` changes, and the store, latents, masks and rounds are
//! kept as they are. Data that differs is refused, naming what differs,
//! and nothing is written.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::{Project, ProjectError};
use crate::fsutil::write_atomic;
use crate::layout::CONFIG_FILE;
use crate::progress::Progress;
use crate::store::{SliceStore, store_key_with};
use crate::volume::dataset::discover;

/// What `relink` did.
#[derive(Debug, PartialEq)]
pub struct Relinked {
    pub from: Option<PathBuf>,
    pub to: PathBuf,
    pub cases: usize,
    pub store_key: String,
}

impl Project {
    /// Points the project at `data`, if it holds the same inputs.
    pub fn relink(
        &self,
        data: &Path,
        progress: &dyn Progress,
        cancel: &AtomicBool,
    ) -> Result<Relinked, ProjectError> {
        let data = std::fs::canonicalize(data).map_err(|source| ProjectError::Io {
            path: data.to_path_buf(),
            source,
        })?;
        let mut config = self.config.clone();
        config.dataset.root = Some(data.clone());
        let cases = discover(&config.dataset, &data)?.cases;
        let root = self.store_root();
        let in_use = self
            .current_store_dir()
            .and_then(|dir| SliceStore::open(&dir).ok())
            .ok_or_else(|| {
                ProjectError::Invalid(
                "this project has no slice store yet; edit dataset.root in project.toml instead"
                    .into(),
            )
            })?;
        let wanted: Vec<&str> = in_use
            .meta()
            .volumes
            .iter()
            .map(|v| v.case.as_str())
            .collect();
        let found: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        let missing: Vec<&&str> = wanted.iter().filter(|c| !found.contains(c)).collect();
        if !missing.is_empty() {
            return Err(ProjectError::Invalid(format!(
                "{} does not hold {} of the project's {} cases (first: {}); nothing changed",
                data.display(),
                missing.len(),
                wanted.len(),
                missing[0]
            )));
        }
        let key = store_key_with(&root, &config, &cases, progress, cancel)?;
        if key != in_use.meta().key {
            return Err(ProjectError::Invalid(format!(
                "the files under {} differ in content from those the project's store was built from (or other cases were added); nothing changed — point a new project at them instead",
                data.display()
            )));
        }
        let path = self.path(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ProjectError::Io {
            path: path.clone(),
            source,
        })?;
        let edited = with_dataset_root(&text, &data);
        // The edited file must still be this project's configuration.
        let check = crate::config::Config::from_toml_str(&edited, &path.display().to_string())?;
        if check.dataset.root.as_deref() != Some(data.as_path()) {
            return Err(ProjectError::Invalid(format!(
                "cannot set dataset.root in {}; set it to {} by hand",
                path.display(),
                data.display()
            )));
        }
        write_atomic(&path, edited.as_bytes()).map_err(|source| ProjectError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Relinked {
            from: self.config.dataset.root.clone(),
            to: data,
            cases: cases.len(),
            store_key: key,
        })
    }
}

/// `text` with `dataset.root` set to `data`: the `root =` line of the
/// `[dataset]` table replaced (comments and layout elsewhere kept), or one
/// added under the table's header.
fn with_dataset_root(text: &str, data: &Path) -> String {
    let value = toml::Value::String(data.to_string_lossy().into_owned()).to_string();
    let line = format!("root = {value}");
    let mut out = Vec::new();
    let mut in_dataset = false;
    let mut done = false;
    for l in text.lines() {
        let trimmed = l.trim_start();
        if trimmed.starts_with('[') {
            if in_dataset && !done {
                out.push(line.clone());
                done = true;
            }
            in_dataset = trimmed.starts_with("[dataset]");
            out.push(l.to_string());
            continue;
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        if in_dataset && !done && key == "root" {
            out.push(line.clone());
            done = true;
            continue;
        }
        out.push(l.to_string());
    }
    if !done {
        if !in_dataset {
            out.push("[dataset]".into());
        }
        out.push(line);
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_line_is_replaced_and_the_rest_kept() {
        let text = "# my notes\n[dataset]\nlayout = \"brats\"\nroot = \"/old/place\" # moved\nmodalities = [\"t1\"]\n\n[vae]\nz_dim = 3\n";
        let edited = with_dataset_root(text, Path::new("/new/pl\"ace"));
        assert_eq!(
            edited,
            "# my notes\n[dataset]\nlayout = \"brats\"\nroot = '/new/pl\"ace'\nmodalities = [\"t1\"]\n\n[vae]\nz_dim = 3\n"
        );
        let added = with_dataset_root("[dataset]\nlayout = \"brats\"\n[vae]\n", Path::new("/d"));
        assert_eq!(
            added,
            "[dataset]\nlayout = \"brats\"\nroot = \"/d\"\n[vae]\n"
        );
    }
}
