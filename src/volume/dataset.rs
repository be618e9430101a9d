//! Finding the cases of a dataset on disk: the BraTS layout
//! (`<case>_<modality>.nii.gz`, tokens matched exactly) and a generic layout
//! (one glob per modality, the wildcard text being the case id).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{DatasetConfig, Layout};

/// One subject: an image per modality (in config order) and maybe a label map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub id: String,
    pub images: Vec<PathBuf>,
    pub label: Option<PathBuf>,
}

/// The cases found, and those left out with the reason.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    pub cases: Vec<Case>,
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset directory {}: {source}", root.display())]
    Root {
        root: PathBuf,
        source: std::io::Error,
    },
    #[error("no cases found under {}: {hint}", root.display())]
    Empty { root: PathBuf, hint: String },
    #[error("case `{case}` has two {role} files: {} and {}", first.display(), second.display())]
    Duplicate {
        case: String,
        role: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "case `{case}` has no {missing} file (found {found}); add it, or set dataset.skip_incomplete = true to leave such cases out"
    )]
    Incomplete {
        case: String,
        missing: String,
        found: String,
    },
    #[error("bad glob `{pattern}`: {message}")]
    Glob { pattern: String, message: String },
}

/// Finds every case under `root` according to the configured layout.
pub fn discover(config: &DatasetConfig, root: &Path) -> Result<Discovery, DatasetError> {
    if !root.is_dir() {
        return Err(DatasetError::Root {
            root: root.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let (files, hint) = match config.layout {
        Layout::Brats => (
            brats_files(config, root)?,
            format!(
                "expected files like <case>/<case>_{}.nii.gz",
                config.modalities.first().map_or("flair", |m| m.as_str())
            ),
        ),
        Layout::Generic => (
            generic_files(config, root)?,
            format!("no file matches {:?}", config.image_globs),
        ),
    };
    assemble(config, root, files, hint)
}

/// Role of a file within a case: modality index, or `None` for the label map.
type Role = Option<usize>;

/// Case id → role → path.
type Files = BTreeMap<String, BTreeMap<Role, PathBuf>>;

fn insert(
    files: &mut Files,
    config: &DatasetConfig,
    case: String,
    role: Role,
    path: PathBuf,
) -> Result<(), DatasetError> {
    let slot = files.entry(case.clone()).or_default();
    if let Some(first) = slot.get(&role) {
        return Err(DatasetError::Duplicate {
            case,
            role: role_name(config, role),
            first: first.clone(),
            second: path,
        });
    }
    slot.insert(role, path);
    Ok(())
}

fn role_name(config: &DatasetConfig, role: Role) -> String {
    match role {
        Some(i) => config.modalities[i].clone(),
        None => "label".into(),
    }
}

/// `name` without `.nii.gz` / `.nii`, if it is a NIfTI file name.
fn nifti_stem(name: &str) -> Option<&str> {
    let lower = name.to_ascii_lowercase();
    [".nii.gz", ".nii"]
        .iter()
        .find(|ext| lower.ends_with(*ext))
        .map(|ext| &name[..name.len() - ext.len()])
}

fn brats_files(config: &DatasetConfig, root: &Path) -> Result<Files, DatasetError> {
    let mut tokens: Vec<(String, Role)> = config
        .modalities
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("_{}", m.to_ascii_lowercase()), Some(i)))
        .collect();
    tokens.push((
        format!("_{}", config.label_token.to_ascii_lowercase()),
        None,
    ));
    // Longest first, so `_t1ce` is tried before `_t1` when tokens nest.
    tokens.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));

    let mut files = Files::new();
    let mut dirs = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| DatasetError::Root {
            root: dir.clone(),
            source,
        })?;
        let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                if depth < 8 {
                    dirs.push((path.clone(), depth + 1));
                }
                continue;
            }
            let Some(stem) = nifti_stem(name) else {
                continue;
            };
            let lower = stem.to_ascii_lowercase();
            // Exact token match: the stem must end in `_<token>`, so `_t1`
            // never claims `case_t1ce`.
            if let Some((token, role)) = tokens.iter().find(|(t, _)| lower.ends_with(t.as_str())) {
                let case = stem[..stem.len() - token.len()].to_string();
                if !case.is_empty() {
                    insert(&mut files, config, case, *role, path.clone())?;
                }
            }
        }
    }
    Ok(files)
}

fn generic_files(config: &DatasetConfig, root: &Path) -> Result<Files, DatasetError> {
    let mut files = Files::new();
    let patterns = config
        .image_globs
        .iter()
        .enumerate()
        .map(|(i, g)| (g, Some(i)))
        .chain(config.label_glob.iter().map(|g| (g, None)));
    for (pattern, role) in patterns {
        let bad = |message: String| DatasetError::Glob {
            pattern: pattern.clone(),
            message,
        };
        if pattern.contains(['[', ']', '{', '}']) {
            return Err(bad("only `*`, `**` and `?` wildcards are supported".into()));
        }
        let full = format!(
            "{}/{}",
            glob::Pattern::escape(&root.to_string_lossy()),
            pattern
        );
        let paths = glob::glob(&full).map_err(|e| bad(e.to_string()))?;
        for path in paths {
            let path = path.map_err(|e| bad(e.to_string()))?;
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            // Hidden files (e.g. macOS `._x.nii.gz` resource forks) are not data.
            if rel
                .components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let rel = rel.to_string_lossy().replace('\\', "/");
            let Some(captures) = wildcard_captures(pattern, &rel) else {
                continue;
            };
            let mut id: Vec<String> = Vec::new();
            for c in captures.into_iter().filter(|c| !c.is_empty()) {
                if id.last() != Some(&c) {
                    id.push(c);
                }
            }
            insert(&mut files, config, id.join("/"), role, path)?;
        }
    }
    Ok(files)
}

/// The text each wildcard of `pattern` matched in `text` (`*` and `?` stay
/// within one path component, `**` crosses them), or `None` if no match.
pub fn wildcard_captures(pattern: &str, text: &str) -> Option<Vec<String>> {
    fn go(p: &[char], t: &[char], caps: &mut Vec<String>) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => {
                let double = p.get(1) == Some(&'*');
                // `**/` may also match no directory at all (as in the glob crate).
                if double && p.get(2) == Some(&'/') {
                    caps.push(String::new());
                    if go(&p[3..], t, caps) {
                        return true;
                    }
                    caps.pop();
                }
                let rest = if double { &p[2..] } else { &p[1..] };
                for n in 0..=t.len() {
                    if !double && t[..n].contains(&'/') {
                        break;
                    }
                    caps.push(t[..n].iter().collect());
                    if go(rest, &t[n..], caps) {
                        return true;
                    }
                    caps.pop();
                }
                false
            }
            Some('?') => match t.first() {
                Some(c) if *c != '/' => {
                    caps.push(c.to_string());
                    if go(&p[1..], &t[1..], caps) {
                        return true;
                    }
                    caps.pop();
                    false
                }
                _ => false,
            },
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..], caps),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let mut caps = Vec::new();
    go(&p, &t, &mut caps).then_some(caps)
}

fn assemble(
    config: &DatasetConfig,
    root: &Path,
    files: Files,
    hint: String,
) -> Result<Discovery, DatasetError> {
    let mut discovery = Discovery::default();
    for (id, mut roles) in files {
        let missing: Vec<String> = (0..config.modalities.len())
            .filter(|i| !roles.contains_key(&Some(*i)))
            .map(|i| config.modalities[i].clone())
            .collect();
        if !missing.is_empty() {
            let found: Vec<String> = roles.keys().map(|r| role_name(config, *r)).collect();
            if roles.keys().all(Option::is_none) && config.layout == Layout::Generic {
                discovery
                    .skipped
                    .push((id, "label map without images".into()));
                continue;
            }
            if config.skip_incomplete {
                discovery
                    .skipped
                    .push((id, format!("no {} file", missing.join(", "))));
                continue;
            }
            return Err(DatasetError::Incomplete {
                case: id,
                missing: missing.join(", "),
                found: if found.is_empty() {
                    "nothing".into()
                } else {
                    found.join(", ")
                },
            });
        }
        let label = roles.remove(&None);
        let images = (0..config.modalities.len())
            .filter_map(|i| roles.remove(&Some(i)))
            .collect();
        discovery.cases.push(Case { id, images, label });
    }
    if discovery.cases.is_empty() {
        return Err(DatasetError::Empty {
            root: root.to_path_buf(),
            hint,
        });
    }
    Ok(discovery)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_follow_glob_rules() {
        assert_eq!(
            wildcard_captures("img/*_t1.nii.gz", "img/007_t1.nii.gz"),
            Some(vec!["007".into()])
        );
        assert_eq!(
            wildcard_captures("img/*_t1.nii.gz", "img/a/007_t1.nii.gz"),
            None
        );
        assert_eq!(
            wildcard_captures("**/sub-*_T1w.nii", "x/y/sub-01_T1w.nii"),
            Some(vec!["x/y".into(), "01".into()])
        );
        assert_eq!(
            wildcard_captures("s?.nii", "s1.nii"),
            Some(vec!["1".into()])
        );
    }
}
