//! The enrollment (claim) token file `DATA/enroll.token`: 32 random bytes as hex, mode 0600,
//! created once and reused on every start so a first edge can join with no other step.

use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the token in the data dir.
pub const TOKEN_FILE: &str = "enroll.token";

/// Path of the token file.
pub fn token_path(data: &Path) -> PathBuf {
    data.join(TOKEN_FILE)
}

/// Reads the token, if the file exists and holds one.
pub fn read_token(data: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(token_path(data)) {
        Ok(s) => {
            let t = s.trim().to_owned();
            Ok((!t.is_empty()).then_some(t))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The existing token, or a new one written with mode 0600 (atomically).
pub fn load_or_create(data: &Path) -> anyhow::Result<String> {
    if let Some(t) = read_token(data)? {
        return Ok(t);
    }
    let token = crate::enroll::random_hex(32)?;
    let path = token_path(data);
    let tmp = path.with_extension("token.tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        writeln!(f, "{token}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create(dir.path()).expect("created");
        assert_eq!(a.len(), 64);
        assert_eq!(load_or_create(dir.path()).expect("reused"), a);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(token_path(dir.path()))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
