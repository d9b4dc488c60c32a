//! Runner pools (SPEC §7): the repo keys `pool`, `claim`, `claim_ttl` and `claim_key`.
//!
//! Hosts whose sections name the same `pool` for the same central repository share its runs: before a
//! run, a pooled host claims the commit on the central host (`claim`), over ssh with its own key
//! (`claim_key`), and renews the claim while the run goes on; a claim not renewed for `claim_ttl` may be
//! taken over by another host of the pool.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use crate::config::ssh_url::SshTarget;

/// How long a claim holds without being renewed when `claim_ttl` is not set.
pub const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(600);
/// The shortest `claim_ttl` accepted: a host renews three times per `claim_ttl`, and an ssh round trip
/// takes a good part of a second.
pub const MIN_CLAIM_TTL: Duration = Duration::from_secs(2);

/// A repo's pool settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// `pool`: the pool's name (hosts of one pool share a central repository's runs).
    pub name: String,
    /// `claim`: the central host's account whose forced command is `phantom_ci claim --host NAME`.
    pub claim: SshTarget,
    /// `claim_ttl`: how long the central host keeps this host's claim without a renewal.
    pub ttl: Duration,
    /// `claim_key`: the private key ssh offers for claims (`-i KEY -o IdentitiesOnly=yes`); `None`:
    /// ssh's own choice (`~/.ssh/config`, the default keys).
    pub key: Option<PathBuf>,
}

impl Pool {
    /// How often a claim is renewed while its run goes on: three times per `claim_ttl`.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }
}

/// A pool name: `[A-Za-z0-9][A-Za-z0-9_-]*`, like a repo's.
pub fn validate_pool_name(name: &str) -> Result<(), String> {
    crate::config::validate_repo_name(name).map_err(|_| {
        format!(
            "invalid pool name `{}`: use letters, digits, `_` and `-`, starting with a letter or digit",
            crate::describe::terminal(name)
        )
    })
}

/// The `claim` value, checked as the TOML parser reads it (so the error has its line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimUrl(pub SshTarget);

impl<'de> Deserialize<'de> for ClaimUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SshTarget::parse_as(&text, "claim = ")
            .map(ClaimUrl)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_are_plain() {
        assert!(validate_pool_name("ci-x86_64").is_ok());
        for bad in ["", "-x", "a b", "a/b", "../x", "é"] {
            assert!(validate_pool_name(bad).is_err(), "{bad}");
        }
    }
}
