//! Tab completion for the import prompt, like a shell's: the last word of
//! the input is completed to the longest common prefix of the entries it
//! could name; folders get a trailing `/`.
//!
//! A leaf: imports only `std`.

use std::path::Path;

/// Most candidates listed under the prompt.
const MAX_CHOICES: usize = 12;

/// Returns the completed input and the candidates (file names) when more
/// than one remains.
pub fn complete_path(input: &str) -> (String, Vec<String>) {
    let start = input.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let (head, word) = input.split_at(start);
    let (dir, prefix) = match word.rfind('/') {
        Some(i) => (&word[..=i], &word[i + 1..]),
        None => ("", word),
    };
    let listing = if dir.is_empty() { "." } else { dir };
    let Ok(entries) = std::fs::read_dir(expand_home(listing)) else {
        return (input.to_string(), Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir())
                || std::fs::metadata(e.path()).is_ok_and(|m| m.is_dir());
            Some(if is_dir { format!("{name}/") } else { name })
        })
        .collect();
    names.sort();
    let Some(first) = names.first() else {
        return (input.to_string(), Vec::new());
    };
    let common = names.iter().fold(first.clone(), |acc, n| {
        acc.chars()
            .zip(n.chars())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a)
            .collect()
    });
    let completed = format!("{head}{dir}{common}");
    let choices = if names.len() > 1 {
        names.truncate(MAX_CHOICES);
        names
    } else {
        Vec::new()
    };
    (completed, choices)
}

fn expand_home(dir: &str) -> std::path::PathBuf {
    match (dir.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => Path::new(dir).to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_to_the_common_prefix_and_lists_the_choices() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("masks-round-1"))?;
        std::fs::create_dir(dir.path().join("masks-round-2"))?;
        std::fs::write(dir.path().join("notes.txt"), b"")?;

        let (line, choices) = complete_path(&format!("{root}/ma"));
        assert_eq!(line, format!("{root}/masks-round-"));
        assert_eq!(choices, vec!["masks-round-1/", "masks-round-2/"]);

        let (line, choices) = complete_path(&format!("a.nii {root}/masks-round-2"));
        assert_eq!(line, format!("a.nii {root}/masks-round-2/"));
        assert!(choices.is_empty());

        let (line, _) = complete_path(&format!("{root}/zzz"));
        assert_eq!(line, format!("{root}/zzz"), "no match leaves the input");
        Ok(())
    }
}
