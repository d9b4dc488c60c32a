//! `ssh://[user@]host[:port]`: where phantom_ci opens an ssh connection to (SPEC §7).

/// An ssh destination written `ssh://[user@]host[:port]`: a runner to poke (`--notify-runner`), a
/// central host to claim on (`claim`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl SshTarget {
    /// Parses `ssh://[user@]host[:port]` (a trailing `/` allowed, nothing else): the user of
    /// `[A-Za-z0-9._-]`, the host a name of `[A-Za-z0-9.-]` or an IPv6 address in brackets, neither
    /// starting with `-` (ssh would take it for an option), the port 1–65535.
    ///
    /// Errors start with `` `{what}{text}`: `` and say what to write instead.
    pub fn parse_as(text: &str, what: &str) -> Result<SshTarget, String> {
        let refuse = |why: &str| {
            format!(
                "`{what}{}`: {why}; give `ssh://USER@HOST` or `ssh://USER@HOST:PORT`",
                crate::describe::terminal(text)
            )
        };
        let rest = text
            .strip_prefix("ssh://")
            .ok_or_else(|| refuse("only `ssh://` URLs are accepted"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(refuse(
                "an ssh destination here has no path (the command names the repository)",
            ));
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, rest),
        };
        if let Some(user) = user {
            let plain = !user.is_empty()
                && !user.starts_with('-')
                && user
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !plain {
                return Err(refuse(
                    "the user must be letters, digits, `.`, `_` and `-`, not starting with `-`",
                ));
            }
        }
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (inside, after) = bracketed
                .split_once(']')
                .ok_or_else(|| refuse("an IPv6 address needs its closing `]`"))?;
            if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                return Err(refuse("not an IPv6 address in brackets"));
            }
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| refuse("junk after `]`"))?,
                ),
            };
            (inside.to_string(), port)
        } else {
            let (host, port) = match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            };
            let plain = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
            if host.starts_with('-') {
                return Err(refuse("a host starting with `-` would be an option to ssh"));
            }
            if !plain {
                return Err(refuse(
                    "the host must be a name of letters, digits, `.` and `-`, or `[IPv6]`",
                ));
            }
            (host.to_string(), port)
        };
        let port = match port {
            None => None,
            Some(port) => Some(
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| refuse("the port must be a number from 1 to 65535"))?,
            ),
        };
        Ok(SshTarget {
            user: user.map(str::to_string),
            host,
            port,
        })
    }
}

impl SshTarget {
    /// The ssh options that name this destination: `[-p PORT] [-l USER] -- HOST`.
    pub fn ssh_args(&self) -> Vec<String> {
        let mut words = Vec::new();
        if let Some(port) = self.port {
            words.extend(["-p".to_string(), port.to_string()]);
        }
        if let Some(user) = &self.user {
            words.extend(["-l".to_string(), user.clone()]);
        }
        words.extend(["--".to_string(), self.host.clone()]);
        words
    }
}

impl std::fmt::Display for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ssh://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}
