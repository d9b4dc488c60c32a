//! What a claim request does to a claim (SPEC §7): the pure decision of the central host, and the
//! words of its answers. [`super::apply`] makes it happen on the files.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A claim, as kept in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub repo: String,
    pub branch: String,
    pub commit: String,
    /// The pool whose claim it is (absent from a runner that does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The host that holds it: the `--host` of the forced command its request came through.
    pub host: String,
    /// When this host claimed it (or took it over), in seconds since the epoch.
    pub claimed_at: u64,
    pub renewed_at: u64,
    /// The holder's `claim_ttl`, in seconds: not renewed for that long, it may be taken over.
    pub ttl_secs: u64,
    /// The host it was taken over from, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_from: Option<String>,
    /// The run's result, once `done` arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<u64>,
}

impl Claim {
    /// A new claim of `key` by `host` at `now`, renewed within `ttl_secs`.
    pub fn new(key: Key, host: &str, now: u64, ttl_secs: u64) -> Claim {
        Claim {
            repo: key.repo.into(),
            branch: key.branch.into(),
            commit: key.commit.into(),
            pool: key.pool.map(str::to_string),
            host: host.into(),
            claimed_at: now,
            renewed_at: now,
            ttl_secs,
            taken_from: None,
            result: None,
            done_at: None,
        }
    }

    /// Whether it was not renewed for its TTL at `now` (and may be taken over).
    pub fn expired(&self, now: u64) -> bool {
        now >= self.renewed_at.saturating_add(self.ttl_secs)
    }

    /// Done, or expired: no run goes on under it.
    pub fn settled(&self, now: u64) -> bool {
        self.result.is_some() || self.expired(now)
    }
}

/// What a claim is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    pub repo: &'a str,
    pub branch: &'a str,
    pub commit: &'a str,
    /// The runner pool that claims (SPEC §7): each pool of a central repository runs each commit
    /// once. `None` from a runner that does not say it.
    pub pool: Option<&'a str>,
}

/// What a host asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Claim the commit before running it; the host renews within `ttl_secs`.
    Claim { ttl_secs: u64 },
    /// The run goes on.
    Renew,
    /// The run ended with `result`.
    Done { result: String },
}

/// The answer, one line on the wire ([`std::fmt::Display`]) and an exit status ([`Outcome::code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Claimed: run it.
    Granted,
    /// Claimed again by its holder (a reply that was lost): run it.
    Again,
    /// It was not renewed for its TTL: now this host's. Run it.
    TakenOver {
        from: String,
        idle_secs: u64,
    },
    Renewed,
    DoneRecorded,
    /// `done` said again by the host that said it (its reply was lost): answered as the first, but
    /// nothing is recorded twice (no second note line).
    DoneAgain,
    /// Another host holds it and renews it: do not run it now (ask again later).
    Held {
        host: String,
        since: u64,
        renewed_ago: u64,
    },
    /// Another host took it over: this host's run of it is void.
    LostTo {
        host: String,
        at: u64,
    },
    /// It ran: nothing to do.
    Done {
        host: String,
        result: String,
        at: u64,
    },
    /// This host holds no claim of it (renew or done without a claim).
    NotClaimed,
}

/// The exit status of an answer that grants or records.
pub const CODE_OK: u8 = 0;
/// The exit status of an answer that refuses because another host holds or took the claim (or none
/// is held): the commit is not this host's to run now.
pub const CODE_HELD: u8 = 3;
/// The exit status of an answer that refuses because the commit is done.
pub const CODE_DONE: u8 = 4;

impl Outcome {
    pub fn code(&self) -> u8 {
        match self {
            Outcome::Granted
            | Outcome::Again
            | Outcome::TakenOver { .. }
            | Outcome::Renewed
            | Outcome::DoneRecorded
            | Outcome::DoneAgain => CODE_OK,
            Outcome::Held { .. } | Outcome::LostTo { .. } | Outcome::NotClaimed => CODE_HELD,
            Outcome::Done { .. } => CODE_DONE,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Granted => f.write_str("granted"),
            Outcome::Again => f.write_str("granted (this host held it already)"),
            Outcome::TakenOver { from, idle_secs } => {
                write!(f, "taken over from {from} (not renewed for {idle_secs}s)")
            }
            Outcome::Renewed => f.write_str("renewed"),
            Outcome::DoneRecorded | Outcome::DoneAgain => f.write_str("done recorded"),
            Outcome::Held {
                host,
                since,
                renewed_ago,
            } => write!(
                f,
                "refused: held by {host} since {} (renewed {renewed_ago}s ago)",
                time(*since)
            ),
            Outcome::LostTo { host, at } => {
                write!(f, "refused: taken over by {host} at {}", time(*at))
            }
            Outcome::Done { host, result, at } => {
                write!(f, "refused: done by {host} ({result}) at {}", time(*at))
            }
            Outcome::NotClaimed => f.write_str("refused: this host holds no claim of it"),
        }
    }
}

/// Seconds since the epoch as RFC 3339.
pub fn time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Now, in seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What `request` from `host` does to the claim `existing` at `now`: the answer, and the claim to
/// write (`None`: nothing changes).
pub fn decide(
    existing: Option<&Claim>,
    key: Key,
    host: &str,
    request: &Request,
    now: u64,
) -> (Outcome, Option<Claim>) {
    let done = |c: &Claim| Outcome::Done {
        host: c.host.clone(),
        result: c.result.clone().unwrap_or_default(),
        at: c.done_at.unwrap_or(c.renewed_at),
    };
    match (request, existing) {
        (Request::Claim { ttl_secs }, None) => (
            Outcome::Granted,
            Some(Claim::new(key, host, now, *ttl_secs)),
        ),
        // A host that lost the claim hears who has it, before and after that host's `done`.
        (Request::Renew | Request::Done { .. }, Some(c)) if c.host != host => (
            Outcome::LostTo {
                host: c.host.clone(),
                at: c.claimed_at,
            },
            None,
        ),
        (_, Some(c)) if c.result.is_some() => match request {
            // `done` said again by the host that said it (its reply was lost): the same answer.
            Request::Done { result } if c.host == host && c.result.as_ref() == Some(result) => {
                (Outcome::DoneAgain, None)
            }
            _ => (done(c), None),
        },
        (Request::Claim { ttl_secs }, Some(c)) if c.host == host => (
            Outcome::Again,
            Some(Claim {
                renewed_at: now,
                ttl_secs: *ttl_secs,
                ..c.clone()
            }),
        ),
        (Request::Claim { .. }, Some(c)) if !c.expired(now) => (
            Outcome::Held {
                host: c.host.clone(),
                since: c.claimed_at,
                renewed_ago: now.saturating_sub(c.renewed_at),
            },
            None,
        ),
        (Request::Claim { ttl_secs }, Some(c)) => (
            Outcome::TakenOver {
                from: c.host.clone(),
                idle_secs: now.saturating_sub(c.renewed_at),
            },
            Some(Claim {
                host: host.into(),
                claimed_at: now,
                renewed_at: now,
                ttl_secs: *ttl_secs,
                taken_from: Some(c.host.clone()),
                ..c.clone()
            }),
        ),
        (Request::Renew | Request::Done { .. }, None) => (Outcome::NotClaimed, None),
        // Renewed even after its TTL: as long as no one took it over, it is still this host's.
        (Request::Renew, Some(c)) => (
            Outcome::Renewed,
            Some(Claim {
                renewed_at: now,
                ..c.clone()
            }),
        ),
        (Request::Done { result }, Some(c)) => (
            Outcome::DoneRecorded,
            Some(Claim {
                renewed_at: now,
                result: Some(result.clone()),
                done_at: Some(now),
                ..c.clone()
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::state::claims::test_support::{claim, done, key};

    #[test]
    fn one_host_claims_the_others_are_refused_until_the_ttl_passes() {
        let (granted, a) = decide(None, key(), "a", &claim(60), 100);
        assert_eq!(granted, Outcome::Granted);
        let a = a.unwrap();
        assert_eq!((a.host.as_str(), a.claimed_at, a.ttl_secs), ("a", 100, 60));
        // B, while A renews: refused, naming A.
        let (held, none) = decide(Some(&a), key(), "b", &claim(600), 159);
        assert_eq!(
            held,
            Outcome::Held {
                host: "a".into(),
                since: 100,
                renewed_ago: 59
            }
        );
        assert!(none.is_none());
        assert_eq!(held.code(), CODE_HELD);
        assert!(held.to_string().starts_with("refused: held by a since "));
        // A renews; the TTL counts from the renewal.
        let (renewed, a) = decide(Some(&a), key(), "a", &Request::Renew, 150);
        assert_eq!(renewed, Outcome::Renewed);
        let a = a.unwrap();
        assert!(matches!(
            decide(Some(&a), key(), "b", &claim(600), 209).0,
            Outcome::Held { .. }
        ));
        // Not renewed for A's TTL (not B's): B takes it over.
        let (taken, b) = decide(Some(&a), key(), "b", &claim(600), 210);
        assert_eq!(
            taken,
            Outcome::TakenOver {
                from: "a".into(),
                idle_secs: 60
            }
        );
        assert_eq!(taken.to_string(), "taken over from a (not renewed for 60s)");
        let b = b.unwrap();
        assert_eq!(b.host, "b");
        assert_eq!(b.taken_from.as_deref(), Some("a"));
        // A's renewal and late `done` are refused, naming B.
        for request in [Request::Renew, done("success")] {
            let (lost, none) = decide(Some(&b), key(), "a", &request, 211);
            assert_eq!(
                lost,
                Outcome::LostTo {
                    host: "b".into(),
                    at: 210
                }
            );
            assert!(none.is_none());
            assert!(lost.to_string().starts_with("refused: taken over by b at "));
        }
        // B ends it; from then on everyone learns it is done, B's repeated `done` included.
        let (recorded, b) = decide(Some(&b), key(), "b", &done("success"), 300);
        assert_eq!(recorded, Outcome::DoneRecorded);
        let b = b.unwrap();
        assert_eq!(b.result.as_deref(), Some("success"));
        assert_eq!(
            decide(Some(&b), key(), "b", &done("success"), 301),
            (Outcome::DoneAgain, None)
        );
        for (host, request) in [
            ("a", claim(60)),
            ("c", claim(60)),
            ("b", claim(60)),
            ("b", Request::Renew),
            ("b", done("failure")),
        ] {
            let (answer, none) = decide(Some(&b), key(), host, &request, 10_000);
            assert_eq!(
                answer,
                Outcome::Done {
                    host: "b".into(),
                    result: "success".into(),
                    at: 300
                },
                "{host} {request:?}"
            );
            assert_eq!(answer.code(), CODE_DONE);
            assert!(none.is_none());
        }
        // A's late `done`, after B's: still refused as taken over by B.
        assert_eq!(
            decide(Some(&b), key(), "a", &done("success"), 10_000).0,
            Outcome::LostTo {
                host: "b".into(),
                at: 210
            }
        );
    }

    #[test]
    fn claiming_again_from_the_same_host_is_harmless() {
        let (_, a) = decide(None, key(), "a", &claim(60), 100);
        let a = a.unwrap();
        let (again, a2) = decide(Some(&a), key(), "a", &claim(60), 130);
        assert_eq!(again, Outcome::Again);
        assert_eq!(again.code(), CODE_OK);
        let a2 = a2.unwrap();
        assert_eq!(
            (a2.host.as_str(), a2.claimed_at, a2.renewed_at),
            ("a", 100, 130)
        );
        // Expired but not taken over: still A's, to renew or to claim again.
        assert_eq!(
            decide(Some(&a), key(), "a", &claim(60), 500).0,
            Outcome::Again
        );
        assert_eq!(
            decide(Some(&a), key(), "a", &Request::Renew, 500).0,
            Outcome::Renewed
        );
        // Renew or done without a claim.
        assert_eq!(
            decide(None, key(), "a", &Request::Renew, 1).0,
            Outcome::NotClaimed
        );
        assert_eq!(
            decide(None, key(), "a", &done("success"), 1).0,
            Outcome::NotClaimed
        );
    }
}
