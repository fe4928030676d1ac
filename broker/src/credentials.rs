//! [`CredentialStore`]: who may connect to the broker.
//!
//! Holds `username -> (salted SHA-256 of the password, role)` ([`PasswordHash`], [`Role`]) and
//! decides every login ([`CredentialStore::authenticate`], which also says who the client is):
//! - user [`ENROLL_USERNAME`] with a client id `enroll-<session>`: the password is a claim token,
//!   accepted by the claim validator hook if one is set, else by the SHA-256 hashes of the claim
//!   tokens loaded into the store; the identity is confined to that session;
//! - any other user: the password must hash to the stored hash; its role says whether it is the
//!   manager (every namespace) or an edge of one tenant (its own namespace, user name = edge id).
//!
//! The store is filled in-process by the fleet manager, or loaded from a credentials file
//! ([`CredentialsFile`], TOML) that the manager writes atomically and the standalone broker
//! reloads when it changes ([`watch_file`]). Passwords and tokens never appear in it, only hashes.
//! Clones share one store.
//!
//! It also holds the revocation list (edge ids): a revoked edge is refused whatever it presents
//! (password or certificate), and [`CredentialStore::revocations`] wakes the gate's connections
//! so a revoked edge's open connections close at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::BrokerError;
use crate::acl::Identity;

/// Why a login is refused (never holds the password).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("no user name")]
    NoCredentials,
    #[error("wrong user name or password")]
    BadPassword,
    #[error("an enrolling client's id must be enroll-<session>")]
    BadEnrollClientId,
    #[error("the user's edge id or tenant is not a valid topic level")]
    BadIdentity,
    #[error("edge revoked")]
    Revoked,
}

/// The user name an enrolling client connects with (its password is the claim token).
pub const ENROLL_USERNAME: &str = "enroll";
/// The client id prefix an enrolling client must use.
pub const ENROLL_CLIENT_PREFIX: &str = "enroll-";

/// A salted SHA-256 of a password: `sha256(salt || password)`. Text form
/// `sha256:<salt hex>:<hash hex>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    salt: [u8; 16],
    hash: [u8; 32],
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &str) -> Result<Self, BrokerError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| BrokerError::Random(e.to_string()))?;
        Ok(Self::with_salt(salt, password))
    }

    /// Hashes `password` with the given salt.
    pub fn with_salt(salt: [u8; 16], password: &str) -> Self {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(password.as_bytes());
        PasswordHash {
            salt,
            hash: h.finalize().into(),
        }
    }

    /// Whether `password` hashes to this hash (constant time in the hash comparison).
    pub fn verify(&self, password: &str) -> bool {
        let other = Self::with_salt(self.salt, password);
        ct_eq(&self.hash, &other.hash)
    }
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sha256:{}:{}",
            hex::encode(self.salt),
            hex::encode(self.hash)
        )
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

impl FromStr for PasswordHash {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<Self, BrokerError> {
        let bad = || BrokerError::Credentials("a password hash is sha256:<32 hex>:<64 hex>".into());
        let mut parts = s.split(':');
        let (Some("sha256"), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let mut out = PasswordHash {
            salt: [0; 16],
            hash: [0; 32],
        };
        hex::decode_to_slice(salt, &mut out.salt).map_err(|_| bad())?;
        hex::decode_to_slice(hash, &mut out.hash).map_err(|_| bad())?;
        Ok(out)
    }
}

/// SHA-256 of a claim token, as kept in a credentials file (lowercase hex).
pub fn claim_token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A hook deciding whether a claim token is valid.
pub type ClaimValidator = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What a user is allowed to be once logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The fleet manager: every namespace.
    Manager,
    /// An edge of `tenant`; its user name is its edge id.
    Edge { tenant: String },
}

#[derive(Debug, Clone)]
struct User {
    hash: PasswordHash,
    role: Role,
}

#[derive(Default)]
struct Inner {
    users: HashMap<String, User>,
    claim_digests: HashSet<String>,
    claim_validator: Option<ClaimValidator>,
    /// Revoked edge ids.
    revoked: HashSet<String>,
}

/// Thread-safe, cheap to clone store of the credentials the broker accepts.
#[derive(Clone)]
pub struct CredentialStore {
    inner: Arc<RwLock<Inner>>,
    /// Bumped on every change of the revocation list.
    revocations: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for CredentialStore {
    fn default() -> Self {
        CredentialStore {
            inner: Arc::default(),
            revocations: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.read(|i| i.users.len());
        write!(f, "CredentialStore({n} users)")
    }
}

impl CredentialStore {
    /// An empty store: nobody can connect.
    pub fn new() -> Self {
        Self::default()
    }

    fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        let guard = self.inner.read().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }

    fn write<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Adds or replaces a user with a password (hashed here with a fresh salt) and a role.
    pub fn set_password(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<PasswordHash, BrokerError> {
        let hash = PasswordHash::new(password)?;
        self.insert_hash(username, hash.clone(), role);
        Ok(hash)
    }

    /// Adds or replaces a user with an already salted hash and a role.
    pub fn insert_hash(&self, username: &str, hash: PasswordHash, role: Role) {
        self.write(|i| i.users.insert(username.to_owned(), User { hash, role }));
    }

    /// Removes a user; its connections are refused from now on (open ones stay open).
    pub fn remove(&self, username: &str) {
        self.write(|i| i.users.remove(username));
    }

    /// Revokes an edge: refused from now on, and its open connections are closed.
    pub fn revoke(&self, edge: &str) {
        let new = self.write(|i| i.revoked.insert(edge.to_owned()));
        if new {
            self.revocations.send_modify(|n| *n += 1);
        }
    }

    /// Whether an edge is revoked.
    pub fn is_revoked(&self, edge: &str) -> bool {
        self.read(|i| i.revoked.contains(edge))
    }

    /// The revoked edge ids, sorted.
    pub fn revoked(&self) -> Vec<String> {
        let mut v: Vec<String> = self.read(|i| i.revoked.iter().cloned().collect());
        v.sort();
        v
    }

    /// Changes whenever the revocation list changes.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.read(|i| i.users.len())
    }

    /// Whether the store has no user.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Installs the hook that decides claim tokens (replaces the loaded token digests).
    pub fn set_claim_validator(&self, validator: impl Fn(&str) -> bool + Send + Sync + 'static) {
        self.write(|i| i.claim_validator = Some(Arc::new(validator)));
    }

    /// Adds a claim token (kept as its SHA-256 only).
    pub fn add_claim_token(&self, token: &str) {
        let d = claim_token_digest(token);
        self.write(|i| i.claim_digests.insert(d));
    }

    /// Whether a user/password pair is valid (not for the enroll user).
    pub fn verify(&self, username: &str, password: &str) -> bool {
        self.read(|i| {
            i.users
                .get(username)
                .is_some_and(|u| u.hash.verify(password))
        })
    }

    /// Whether a claim token is valid.
    pub fn verify_claim_token(&self, token: &str) -> bool {
        let (validator, digest_ok) = self.read(|i| {
            (
                i.claim_validator.clone(),
                i.claim_digests.contains(&claim_token_digest(token)),
            )
        });
        match validator {
            // Called outside the lock: the hook may take its own locks.
            Some(v) => v(token),
            None => digest_ok,
        }
    }

    /// The broker's login decision.
    pub fn check_login(&self, client_id: &str, username: &str, password: &str) -> bool {
        self.authenticate(client_id, username, password).is_ok()
    }

    /// Who a client is, from its client id, user name and password; or why it is refused.
    pub fn authenticate(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Result<Identity, LoginError> {
        if username.is_empty() {
            return Err(LoginError::NoCredentials);
        }
        if username == ENROLL_USERNAME {
            let session = client_id
                .strip_prefix(ENROLL_CLIENT_PREFIX)
                .filter(|s| tapfleet_schemas::topic::validate_id(s).is_ok())
                // Renewal sessions belong to the edges themselves (see `acl`).
                .filter(|s| !s.starts_with(crate::acl::RENEW_SESSION_PREFIX))
                .ok_or(LoginError::BadEnrollClientId)?;
            if password.is_empty() || !self.verify_claim_token(password) {
                return Err(LoginError::BadPassword);
            }
            return Ok(Identity::Enrolling {
                session: session.to_owned(),
            });
        }
        let role = self.read(|i| {
            i.users
                .get(username)
                .filter(|u| u.hash.verify(password))
                .map(|u| u.role.clone())
        });
        match role {
            None => Err(LoginError::BadPassword),
            Some(Role::Manager) => Ok(Identity::Manager {
                user: username.to_owned(),
            }),
            Some(Role::Edge { .. }) if self.is_revoked(username) => Err(LoginError::Revoked),
            Some(Role::Edge { tenant }) => {
                // The namespace must be expressible: both ids valid topic levels.
                tapfleet_schemas::Topic::edge(&tenant, username, tapfleet_schemas::Channel::State)
                    .map_err(|_| LoginError::BadIdentity)?;
                Ok(Identity::Edge {
                    tenant,
                    edge: username.to_owned(),
                })
            }
        }
    }

    /// A snapshot in file form.
    pub fn to_file(&self) -> CredentialsFile {
        self.read(|i| {
            let mut f = CredentialsFile {
                claim_tokens: i.claim_digests.iter().cloned().collect(),
                revoked: i.revoked.iter().cloned().collect(),
                ..CredentialsFile::default()
            };
            f.revoked.sort();
            for (name, u) in &i.users {
                f.users.insert(name.clone(), u.hash.to_string());
                match &u.role {
                    Role::Manager => f.managers.push(name.clone()),
                    Role::Edge { tenant } => {
                        f.tenants.insert(name.clone(), tenant.clone());
                    }
                }
            }
            f.managers.sort();
            f
        })
    }

    /// Replaces users and claim token digests with a file's (the validator hook stays). Every
    /// user must have a role: a tenant (an edge) or a place in `managers`.
    pub fn replace_from_file(&self, file: &CredentialsFile) -> Result<(), BrokerError> {
        let mut users = HashMap::with_capacity(file.users.len());
        for (u, h) in &file.users {
            let role = match (file.tenants.get(u), file.managers.contains(u)) {
                (Some(t), false) => Role::Edge { tenant: t.clone() },
                (None, true) => Role::Manager,
                _ => {
                    return Err(BrokerError::Credentials(format!(
                        "user {u:?} needs exactly one of a tenant or a place in managers"
                    )));
                }
            };
            users.insert(
                u.clone(),
                User {
                    hash: h.parse::<PasswordHash>()?,
                    role,
                },
            );
        }
        let mut digests = HashSet::with_capacity(file.claim_tokens.len());
        for d in &file.claim_tokens {
            let mut buf = [0u8; 32];
            hex::decode_to_slice(d, &mut buf).map_err(|_| {
                BrokerError::Credentials("a claim token digest is 64 hex digits".into())
            })?;
            digests.insert(d.to_ascii_lowercase());
        }
        let revoked: HashSet<String> = file.revoked.iter().cloned().collect();
        let changed = self.write(|i| {
            i.users = users;
            i.claim_digests = digests;
            let changed = i.revoked != revoked;
            i.revoked = revoked;
            changed
        });
        if changed {
            self.revocations.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    /// A store loaded from a credentials file.
    pub fn load(path: &Path) -> Result<Self, BrokerError> {
        let store = Self::new();
        store.replace_from_file(&CredentialsFile::read(path)?)?;
        Ok(store)
    }
}

/// The credentials file (TOML): claim token digests, `users.NAME = "sha256:salt:hash"`, and each
/// user's role: `tenants.EDGE = "TENANT"` for an edge, or its name in `managers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialsFile {
    /// SHA-256 (hex) of each valid claim token.
    pub claim_tokens: Vec<String>,
    /// Users with the manager's role (every namespace).
    pub managers: Vec<String>,
    pub users: BTreeMap<String, String>,
    /// Edge user (edge id) -> its tenant.
    pub tenants: BTreeMap<String, String>,
    /// Revoked edge ids (refused with a password or a certificate; open connections closed).
    pub revoked: Vec<String>,
}

impl CredentialsFile {
    pub fn read(path: &Path) -> Result<Self, BrokerError> {
        let text = std::fs::read_to_string(path).map_err(|e| BrokerError::Io {
            path: path.to_owned(),
            source: e,
        })?;
        toml::from_str(&text)
            .map_err(|e| BrokerError::Credentials(format!("{}: {e}", path.display())))
    }

    /// Writes the file atomically (temp file in the same directory, fsync, rename), mode 0600.
    pub fn write_atomic(&self, path: &Path) -> Result<(), BrokerError> {
        let mut sorted = self.clone();
        sorted.claim_tokens.sort();
        let text = toml::to_string(&sorted).map_err(|e| BrokerError::Credentials(e.to_string()))?;
        let text = format!("# written by tapfleet-manager: hashes only, do not edit\n{text}");
        let io = |e| BrokerError::Io {
            path: path.to_owned(),
            source: e,
        };
        let tmp = tmp_path(path);
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Polls `path` every `interval` and reloads `store` when the file's modification time or size
/// changes. A file that cannot be read or parsed is logged and the previous credentials stay.
pub fn watch_file(
    path: PathBuf,
    store: CredentialStore,
    interval: Duration,
) -> std::io::Result<thread::JoinHandle<()>> {
    let stamp = |p: &Path| -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    let mut last = stamp(&path);
    thread::Builder::new()
        .name("credentials-watch".into())
        .spawn(move || {
            loop {
                thread::sleep(interval);
                let now = stamp(&path);
                if now.is_none() || now == last {
                    continue;
                }
                last = now;
                match CredentialsFile::read(&path).and_then(|f| store.replace_from_file(&f)) {
                    Ok(()) => tracing::info!(path = %path.display(), users = store.len(), "credentials reloaded"),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "credentials not reloaded"),
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_secret() {
        let s = CredentialStore::new();
        let role = Role::Edge {
            tenant: "acme".into(),
        };
        s.set_password("edge-1", "s3cret", role).expect("random");
        assert!(s.check_login("edge-1", "edge-1", "s3cret"));
        assert_eq!(
            s.authenticate("any", "edge-1", "s3cret"),
            Ok(Identity::Edge {
                tenant: "acme".into(),
                edge: "edge-1".into()
            })
        );
        assert_eq!(
            s.authenticate("any", "edge-1", "bad"),
            Err(LoginError::BadPassword)
        );
        assert!(!s.check_login("edge-1", "edge-1", "s3cret "));
        assert!(!s.check_login("edge-1", "edge-2", "s3cret"));
        assert!(!s.check_login("x", "", ""));
    }

    #[test]
    fn claim_tokens_need_the_enroll_user_and_client_prefix() {
        let s = CredentialStore::new();
        s.add_claim_token("tok");
        assert!(s.check_login("enroll-abc", ENROLL_USERNAME, "tok"));
        assert_eq!(
            s.authenticate("enroll-abc", ENROLL_USERNAME, "tok"),
            Ok(Identity::Enrolling {
                session: "abc".into()
            })
        );
        assert!(!s.check_login("enroll-a/b", ENROLL_USERNAME, "tok"));
        assert!(!s.check_login("enroll-", ENROLL_USERNAME, "tok"));
        assert!(!s.check_login("abc", ENROLL_USERNAME, "tok"));
        assert!(!s.check_login("enroll-abc", ENROLL_USERNAME, "tok2"));
        assert!(!s.check_login("enroll-abc", "someone", "tok"));
        s.set_claim_validator(|t| t == "hook");
        assert!(s.check_login("enroll-1", ENROLL_USERNAME, "hook"));
        assert!(!s.check_login("enroll-1", ENROLL_USERNAME, "tok"));
    }

    #[test]
    fn hashes_round_trip_through_text_and_file() {
        let h = PasswordHash::new("pw").expect("random");
        let back: PasswordHash = h.to_string().parse().expect("parses");
        assert!(back.verify("pw"));
        assert!("sha256:zz:00".parse::<PasswordHash>().is_err());
        let s = CredentialStore::new();
        s.insert_hash("u", back, Role::Manager);
        s.set_password(
            "e",
            "pe",
            Role::Edge {
                tenant: "t1".into(),
            },
        )
        .expect("random");
        s.add_claim_token("t");
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("creds.toml");
        s.to_file().write_atomic(&p).expect("written");
        let loaded = CredentialStore::load(&p).expect("loaded");
        assert!(matches!(
            loaded.authenticate("c", "u", "pw"),
            Ok(Identity::Manager { .. })
        ));
        assert!(matches!(
            loaded.authenticate("c", "e", "pe"),
            Ok(Identity::Edge { tenant, .. }) if tenant == "t1"
        ));
        assert!(loaded.check_login("enroll-x", ENROLL_USERNAME, "t"));
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(!text.contains("pw\"") && !text.contains("\"t\""));
    }
}
