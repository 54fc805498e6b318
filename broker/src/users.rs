//! Users as RabbitMQ keeps them: a name, a salted password hash in RabbitMQ's own format (so a
//! `password_hash` from a RabbitMQ definitions export logs in unchanged), tags, and per-vhost
//! permissions. A user may open a connection to a vhost only with a permission entry there.
//!
//! RabbitMQ's hash (`rabbit_password_hashing_sha256`, its default since 3.6, or `_sha512`):
//! base64 of a 4-byte random salt followed by SHA-256(salt ++ UTF-8 password).

use crate::core::access::Access;
use crate::net::same_secret;
use crate::store::definitions::{PermissionDef, TopicPermissionDef, UserDef};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256, Sha512};
use std::collections::HashMap;
use std::net::IpAddr;

/// The users RabbitMQ lets in from loopback addresses only (its `loopback_users` default).
const LOOPBACK_USERS: &[&str] = &["guest"];

/// What is wrong with a user's definition.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UserError {
    #[error("user '{user}': hashing_algorithm {algorithm} is not supported (use rabbit_password_hashing_sha256 or rabbit_password_hashing_sha512)")]
    Hashing { user: String, algorithm: String },
    #[error("user '{user}': password_hash is not a RabbitMQ password hash (base64 of a 4-byte salt and the digest)")]
    Hash { user: String },
    #[error("permissions of user '{user}' in vhost '{vhost}': not a regular expression")]
    Pattern {
        user: String,
        vhost: String,
        #[source]
        source: regex::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hashing {
    Sha256,
    Sha512,
}

impl Hashing {
    fn from_name(name: &str) -> Option<Hashing> {
        match name {
            "rabbit_password_hashing_sha256" | "" => Some(Hashing::Sha256),
            "rabbit_password_hashing_sha512" => Some(Hashing::Sha512),
            _ => None,
        }
    }

    fn digest(self, salt: &[u8], password: &str) -> Vec<u8> {
        match self {
            Hashing::Sha256 => Sha256::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            Hashing::Sha512 => Sha512::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
        }
    }

    fn len(self) -> usize {
        match self {
            Hashing::Sha256 => 32,
            Hashing::Sha512 => 64,
        }
    }
}

/// A salted password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswordHash {
    hashing: Hashing,
    salt: [u8; 4],
    digest: Vec<u8>,
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt (SHA-256, as RabbitMQ does by default).
    pub(crate) fn new(password: &str) -> PasswordHash {
        let salt: [u8; 4] = rand::random();
        PasswordHash {
            hashing: Hashing::Sha256,
            salt,
            digest: Hashing::Sha256.digest(&salt, password),
        }
    }

    /// A hash as a definitions file carries it (`password_hash` and `hashing_algorithm`).
    /// An empty hash is a user who cannot log in with a password (None).
    fn parse(user: &UserDef) -> Result<Option<PasswordHash>, UserError> {
        let hashing =
            Hashing::from_name(&user.hashing_algorithm).ok_or_else(|| UserError::Hashing {
                user: user.name.clone(),
                algorithm: user.hashing_algorithm.clone(),
            })?;
        if user.password_hash.is_empty() {
            return Ok(None);
        }
        let bad = || UserError::Hash {
            user: user.name.clone(),
        };
        let bytes = STANDARD.decode(&user.password_hash).map_err(|_| bad())?;
        if bytes.len() != 4 + hashing.len() {
            return Err(bad());
        }
        let (salt, digest) = bytes.split_at(4);
        Ok(Some(PasswordHash {
            hashing,
            salt: salt.try_into().map_err(|_| bad())?,
            digest: digest.to_vec(),
        }))
    }

    /// The hash as RabbitMQ writes it.
    pub(crate) fn encoded(&self) -> String {
        let mut bytes = self.salt.to_vec();
        bytes.extend_from_slice(&self.digest);
        STANDARD.encode(bytes)
    }

    pub(crate) fn algorithm(&self) -> &'static str {
        match self.hashing {
            Hashing::Sha256 => "rabbit_password_hashing_sha256",
            Hashing::Sha512 => "rabbit_password_hashing_sha512",
        }
    }

    /// Whether `password` is the one hashed (compared in constant time).
    pub(crate) fn verify(&self, password: &str) -> bool {
        same_secret(&self.hashing.digest(&self.salt, password), &self.digest)
    }
}

#[derive(Debug, Clone)]
struct Account {
    /// None: no password login.
    hash: Option<PasswordHash>,
    tags: Vec<String>,
}

/// Every user and permission of the broker: the definitions as given, and compiled for checks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Users {
    accounts: HashMap<String, Account>,
    /// (vhost, user) -> what the user may do there.
    permissions: HashMap<(String, String), Access>,
    pub(crate) defs: UserDefs,
}

/// Users and permissions in their definitions' shapes (what is stored and exported).
#[derive(Debug, Clone, Default)]
pub(crate) struct UserDefs {
    pub users: Vec<UserDef>,
    pub permissions: Vec<PermissionDef>,
    pub topics: Vec<TopicPermissionDef>,
}

impl Users {
    /// The users and permissions of a definitions store or file; refuses (naming it) a user
    /// whose hash it cannot check.
    pub(crate) fn from_defs(
        users: &[UserDef],
        permissions: &[PermissionDef],
        topics: &[TopicPermissionDef],
    ) -> Result<Users, UserError> {
        let mut accounts = HashMap::new();
        for user in users {
            let hash = PasswordHash::parse(user)?;
            let tags = user.tags.clone();
            accounts.insert(user.name.clone(), Account { hash, tags });
        }
        let mut granted = HashMap::new();
        for p in permissions {
            let pattern = |source| UserError::Pattern {
                user: p.user.clone(),
                vhost: p.vhost.clone(),
                source,
            };
            let mut access =
                Access::new(&p.user, &p.vhost, &p.configure, &p.write, &p.read).map_err(pattern)?;
            for t in topics
                .iter()
                .filter(|t| t.user == p.user && t.vhost == p.vhost)
            {
                access = access
                    .with_topic(&t.exchange, &t.write, &t.read)
                    .map_err(pattern)?;
            }
            granted.insert((p.vhost.clone(), p.user.clone()), access);
        }
        Ok(Users {
            accounts,
            permissions: granted,
            defs: UserDefs {
                users: users.to_vec(),
                permissions: permissions.to_vec(),
                topics: topics.to_vec(),
            },
        })
    }

    /// The same users with `change` applied to their definitions, checked and compiled.
    pub(crate) fn changed(&self, change: impl FnOnce(&mut UserDefs)) -> Result<Users, UserError> {
        let mut defs = self.defs.clone();
        change(&mut defs);
        Users::from_defs(&defs.users, &defs.permissions, &defs.topics)
    }

    /// A user's tags, if the user exists.
    pub(crate) fn tags(&self, user: &str) -> Option<&[String]> {
        self.accounts.get(user).map(|a| a.tags.as_slice())
    }

    /// RabbitMQ's default user on a fresh node: `guest`/`guest`, administrator, everything on
    /// vhost `/`, from loopback addresses only.
    pub(crate) fn default_definitions() -> (UserDef, PermissionDef) {
        let hash = PasswordHash::new("guest");
        (
            UserDef {
                name: "guest".into(),
                password_hash: hash.encoded(),
                hashing_algorithm: hash.algorithm().into(),
                tags: vec!["administrator".into()],
                limits: serde_json::Value::Object(Default::default()),
            },
            PermissionDef {
                user: "guest".into(),
                vhost: "/".into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            },
        )
    }

    /// Whether `user` logs in with `password` from `peer`. Says nothing of why not: an
    /// unknown user and a wrong password look the same to the client.
    pub(crate) fn authenticate(&self, user: &str, password: &str, peer: IpAddr) -> bool {
        let Some(account) = self.accounts.get(user) else {
            // As long as a real check, so that timing does not tell which users exist.
            let _ = PasswordHash::new(password);
            return false;
        };
        let matches = account.hash.as_ref().is_some_and(|h| h.verify(password));
        matches && (!LOOPBACK_USERS.contains(&user) || peer.is_loopback())
    }

    /// Whether `user` exists and may log in from `peer` without a password check (EXTERNAL:
    /// a verified client certificate named it).
    pub(crate) fn may_log_in(&self, user: &str, peer: IpAddr) -> bool {
        self.accounts.contains_key(user) && (!LOOPBACK_USERS.contains(&user) || peer.is_loopback())
    }

    /// What `user` may do in `vhost`; None: it may not open connections there.
    pub(crate) fn access(&self, user: &str, vhost: &str) -> Option<Access> {
        self.permissions
            .get(&(vhost.to_string(), user.to_string()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, hash: &str, algorithm: &str) -> UserDef {
        UserDef {
            name: name.into(),
            password_hash: hash.into(),
            hashing_algorithm: algorithm.into(),
            tags: Vec::new(),
            limits: Default::default(),
        }
    }

    fn loopback() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn a_hash_verifies_its_password_only_and_survives_encoding() {
        let hash = PasswordHash::new("s3cret");
        assert!(hash.verify("s3cret"));
        assert!(!hash.verify("s3cre"));
        let def = user("a", &hash.encoded(), hash.algorithm());
        let parsed = PasswordHash::parse(&def).unwrap().unwrap();
        assert_eq!(parsed, hash);
    }

    #[test]
    fn rabbitmqs_format_salt_then_sha256_of_salt_and_password() {
        // Built by hand the way rabbit_password_hashing_sha256 does it.
        let salt = [0x90u8, 0x8d, 0xc6, 0x0a];
        let mut bytes = salt.to_vec();
        bytes.extend(Sha256::digest([&salt[..], b"test12"].concat()));
        let def = user(
            "u",
            &STANDARD.encode(bytes),
            "rabbit_password_hashing_sha256",
        );
        let users = Users::from_defs(&[def], &[], &[]).unwrap();
        assert!(users.authenticate("u", "test12", loopback()));
        assert!(!users.authenticate("u", "test13", loopback()));
    }

    #[test]
    fn unsupported_algorithms_and_broken_hashes_are_named() {
        let md5 = user("old", "aGVsbG8=", "rabbit_password_hashing_md5");
        assert!(matches!(
            Users::from_defs(&[md5], &[], &[]),
            Err(UserError::Hashing { user, .. }) if user == "old"
        ));
        let broken = user("b", "not base64!", "rabbit_password_hashing_sha256");
        assert!(matches!(
            Users::from_defs(&[broken], &[], &[]),
            Err(UserError::Hash { user }) if user == "b"
        ));
    }

    #[test]
    fn guest_only_from_loopback_and_access_needs_a_permission() {
        let (guest, perm) = Users::default_definitions();
        let users = Users::from_defs(&[guest], &[perm], &[]).unwrap();
        assert!(users.authenticate("guest", "guest", loopback()));
        assert!(!users.authenticate("guest", "guest", IpAddr::from([10, 0, 0, 1])));
        assert!(!users.authenticate("nobody", "guest", loopback()));
        assert!(users.access("guest", "/").is_some());
        assert!(users.access("guest", "other").is_none());
    }

    #[test]
    fn a_user_without_a_hash_cannot_log_in_with_a_password() {
        let users = Users::from_defs(&[user("svc", "", "")], &[], &[]).unwrap();
        assert!(!users.authenticate("svc", "", loopback()));
    }
}
