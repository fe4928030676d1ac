//! Storage targets: named OpenDAL operators built from the manager's TOML config.
//!
//! ```toml
//! [targets.cloud]
//! type = "fs"
//! root = "/var/lib/tapfleet/targets/cloud"
//! ```
//! Without a config, `cloud` is an fs target at `DATA/targets/cloud`. Adding a service (s3,
//! sftp, webdav, ...) is one [`TargetConfig`] variant and one arm in [`build_operator`].
//!
//! fs targets write atomically: OpenDAL writes into `atomic_write_dir` (a sibling of the root,
//! `.tmp-NAME`, on the same file system) and renames on close, so a half-written object is never
//! visible at its final path. Temp files left by a crash are removed at start ([`Targets::build`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use opendal::Operator;
use serde::Deserialize;

/// The name of the default target.
pub const DEFAULT_TARGET: &str = "cloud";

/// The manager's TOML config file (`--config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagerConfig {
    pub targets: BTreeMap<String, TargetConfig>,
}

/// One target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetConfig {
    /// A local directory.
    Fs { root: PathBuf },
}

/// Why a target could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target {name}: {source}")]
    Opendal {
        name: String,
        source: opendal::Error,
    },
    #[error("target {name}: {path}: {source}")]
    Io {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("target name {0:?} may only hold a-z, 0-9, '-' and '_'")]
    BadName(String),
}

/// Builds the operator of one target.
pub fn build_operator(name: &str, cfg: &TargetConfig) -> Result<Operator, TargetError> {
    let op_err = |source| TargetError::Opendal {
        name: name.to_owned(),
        source,
    };
    match cfg {
        TargetConfig::Fs { root } => {
            let tmp = fs_tmp_dir(root, name);
            clear_dir(name, &tmp)?;
            std::fs::create_dir_all(root).map_err(|source| TargetError::Io {
                name: name.to_owned(),
                path: root.clone(),
                source,
            })?;
            let builder = opendal::services::Fs::default()
                .root(&root.to_string_lossy())
                .atomic_write_dir(&tmp.to_string_lossy());
            Operator::new(builder).map_err(op_err)
        }
    }
}

fn fs_tmp_dir(root: &Path, name: &str) -> PathBuf {
    let parent = root.parent().unwrap_or(root);
    parent.join(format!(".tmp-{name}"))
}

fn clear_dir(name: &str, dir: &Path) -> Result<(), TargetError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(TargetError::Io {
                name: name.to_owned(),
                path: dir.to_owned(),
                source,
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| TargetError::Io {
        name: name.to_owned(),
        path: dir.to_owned(),
        source,
    })
}

/// The targets by name.
#[derive(Clone, Debug)]
pub struct Targets {
    ops: BTreeMap<String, Operator>,
}

impl Targets {
    /// Builds every configured target, adding `cloud` at `DATA/targets/cloud` if not configured.
    pub fn build(cfg: &ManagerConfig, data_dir: &Path) -> Result<Self, TargetError> {
        let mut all = cfg.targets.clone();
        all.entry(DEFAULT_TARGET.to_owned())
            .or_insert_with(|| TargetConfig::Fs {
                root: data_dir.join("targets").join(DEFAULT_TARGET),
            });
        let mut ops = BTreeMap::new();
        for (name, t) in &all {
            if tapfleet_schemas::topic::validate_id(name).is_err() {
                return Err(TargetError::BadName(name.clone()));
            }
            ops.insert(name.clone(), build_operator(name, t)?);
        }
        Ok(Targets { ops })
    }

    /// The operator of a target.
    pub fn get(&self, name: &str) -> Option<&Operator> {
        self.ops.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ops.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_default_cloud_is_added() {
        let cfg: ManagerConfig =
            toml::from_str("[targets.private]\ntype = \"fs\"\nroot = \"/tmp/x\"\n")
                .expect("parses");
        assert_eq!(
            cfg.targets.get("private"),
            Some(&TargetConfig::Fs {
                root: "/tmp/x".into()
            })
        );
        assert!(toml::from_str::<ManagerConfig>("[targets.x]\ntype = \"ftp\"\n").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Targets::build(&ManagerConfig::default(), dir.path()).expect("builds");
        assert_eq!(t.names().collect::<Vec<_>>(), vec!["cloud"]);
        assert!(dir.path().join("targets/cloud").is_dir());
    }
}
