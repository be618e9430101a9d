//! Building a `Config` from layered TOML files, with errors that say which
//! file and key are wrong and what would be accepted.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Config;

/// The configurations shipped with nextslice (files under `config/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// BraTS 2019: four modalities, labels 0/1/2/4, paper settings.
    Brats2019,
    /// MALC-like whole-brain parcellation, one T1 channel, paper settings.
    Malc,
    /// The phantom demo: small slices and narrow models that train on a CPU.
    Demo,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Brats2019, Preset::Malc, Preset::Demo];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Brats2019 => "brats2019",
            Preset::Malc => "malc",
            Preset::Demo => "demo",
        }
    }

    /// The preset's TOML text, compiled into the binary.
    pub fn text(self) -> &'static str {
        match self {
            Preset::Brats2019 => include_str!("../../config/brats2019.toml"),
            Preset::Malc => include_str!("../../config/malc.toml"),
            Preset::Demo => include_str!("../../config/demo.toml"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid TOML: {message}", file.display())]
    Syntax { file: PathBuf, message: String },
    #[error("{}: key `{key}`: {message}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

/// One layer: where it came from and its table.
struct Layer {
    origin: PathBuf,
    table: toml::Table,
}

impl Config {
    /// A built-in preset, unchanged.
    pub fn preset(preset: Preset) -> Config {
        Self::from_layers(vec![preset_layer(preset)])
            .unwrap_or_else(|e| panic!("built-in preset {} is invalid: {e}", preset.name()))
    }

    /// A preset, then the user's file (when it exists), then `files` in order.
    pub fn resolve(preset: Preset, files: &[PathBuf]) -> Result<Config, ConfigError> {
        let mut layers = vec![preset_layer(preset)];
        if let Some(user) = user_config_path().filter(|p| p.exists()) {
            layers.push(read_layer(&user)?);
        }
        for file in files {
            layers.push(read_layer(file)?);
        }
        Self::from_layers(layers)
    }

    /// A complete configuration from one file (e.g. a project's `project.toml`).
    pub fn from_file(file: &Path) -> Result<Config, ConfigError> {
        Self::from_layers(vec![read_layer(file)?])
    }

    /// A complete configuration from TOML text (a project file about to be
    /// written); errors name `origin`.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Self::from_layers(vec![parse_layer(PathBuf::from(origin), text)?])
    }

    /// A preset with TOML text laid over it (tests, the demo).
    pub fn preset_with(preset: Preset, origin: &str, text: &str) -> Result<Config, ConfigError> {
        let overlay = parse_layer(PathBuf::from(origin), text)?;
        Self::from_layers(vec![preset_layer(preset), overlay])
    }

    /// The configuration as TOML, e.g. to write a project file.
    /// Checks a configuration changed in code (command-line overrides);
    /// errors name `origin` where they would name a file.
    pub fn check(&self, origin: &str) -> Result<(), ConfigError> {
        self.validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                file: PathBuf::from(origin),
                key,
                message,
            })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialise: {e}\n"))
    }

    /// Merges layers in order; each is checked as soon as it is applied, so an
    /// error is reported against the file that introduced it.
    fn from_layers(layers: Vec<Layer>) -> Result<Config, ConfigError> {
        let mut merged = toml::Table::new();
        let mut config = None;
        let mut origins: Vec<(PathBuf, toml::Table)> = Vec::new();
        for layer in layers {
            merge(&mut merged, &layer.table);
            let value = toml::Value::Table(merged.clone());
            let parsed: Config =
                serde_path_to_error::deserialize(value).map_err(|e| ConfigError::Invalid {
                    file: layer.origin.clone(),
                    key: key_name(e.path()),
                    message: e.into_inner().message().trim().to_string(),
                })?;
            origins.push((layer.origin, layer.table));
            config = Some(parsed);
        }
        let config = config.ok_or_else(|| ConfigError::Syntax {
            file: PathBuf::from("<none>"),
            message: "no configuration given".into(),
        })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                file: origin_of(&origins, &key),
                key,
                message,
            })?;
        Ok(config)
    }
}

/// The user's own defaults, laid over every preset:
/// `$XDG_CONFIG_HOME/nextslice/config.toml` (usually `~/.config/nextslice/`).
pub fn user_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "nextslice").map(|d| d.config_dir().join("config.toml"))
}

/// Where new projects keep their slice stores, shared by every project on
/// the same data and settings: `$NEXTSLICE_STORE_ROOT`, else the user's
/// data dir (`~/.local/share/nextslice/stores` on Linux).
pub fn shared_store_root() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("NEXTSLICE_STORE_ROOT").filter(|r| !r.is_empty()) {
        let root = PathBuf::from(root);
        return Some(if root.is_absolute() {
            root
        } else {
            std::env::current_dir().ok()?.join(root)
        });
    }
    directories::ProjectDirs::from("", "", "nextslice").map(|d| d.data_dir().join("stores"))
}

fn preset_layer(preset: Preset) -> Layer {
    let origin = PathBuf::from(format!("<preset {}>", preset.name()));
    parse_layer(origin, preset.text())
        .unwrap_or_else(|e| panic!("built-in preset {} does not parse: {e}", preset.name()))
}

fn read_layer(file: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse_layer(file.to_path_buf(), &text)
}

fn parse_layer(origin: PathBuf, text: &str) -> Result<Layer, ConfigError> {
    let table = text
        .parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            file: origin.clone(),
            message: e.to_string().trim().to_string(),
        })?;
    Ok(Layer { origin, table })
}

/// Deep merge: tables merge key by key; anything else is replaced.
fn merge(base: &mut toml::Table, overlay: &toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn key_name(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." {
        "(top level)".into()
    } else {
        text
    }
}

/// The last layer that set `key` (or its nearest parent table).
fn origin_of(layers: &[(PathBuf, toml::Table)], key: &str) -> PathBuf {
    let parts: Vec<&str> = key.split('.').collect();
    for depth in (1..=parts.len()).rev() {
        for (origin, table) in layers.iter().rev() {
            if lookup(table, &parts[..depth]) {
                return origin.clone();
            }
        }
    }
    layers.last().map(|(o, _)| o.clone()).unwrap_or_default()
}

fn lookup(table: &toml::Table, parts: &[&str]) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return true;
    };
    let name = first.split('[').next().unwrap_or(first);
    match table.get(name) {
        Some(toml::Value::Table(t)) if !rest.is_empty() => lookup(t, rest),
        Some(_) => rest.is_empty() || first.contains('['),
        None => false,
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
