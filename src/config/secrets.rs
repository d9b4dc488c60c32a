//! `<config>/.env`: webhook URLs and global options, trusted and secret (SPEC §2, §4.2, §5).
//!
//! The file is parsed with dotenvy's iterator into this struct — never into phantom_ci's process
//! environment (no `dotenvy::dotenv()`, no `set_var`), so no step can inherit a secret. Nothing here
//! prints a value: the URLs' `Debug` and `Display` show only scheme and host, and a parse error names
//! the file and line but never quotes the line.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::quantities::HumanDuration;

pub const DISCORD_WEBHOOK_URL: &str = "DISCORD_WEBHOOK_URL";
pub const SLACK_WEBHOOK_URL: &str = "SLACK_WEBHOOK_URL";
pub const WEBHOOK_URL: &str = "WEBHOOK_URL";
pub const WEBHOOK_TIMEOUT: &str = "WEBHOOK_TIMEOUT";
pub const PHANTOM_CI_REPORT_DIR: &str = "PHANTOM_CI_REPORT_DIR";

/// How long one webhook post may take when `.env` does not say (`WEBHOOK_TIMEOUT`).
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Deliberately without the line's text: it may hold a secret.
    #[error("`{}` line {line}: not a `KEY=value` line (dotenv syntax: quote a value that contains spaces)", path.display())]
    Syntax { path: PathBuf, line: usize },
    #[error("`{}`: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// What `.env` holds, in memory only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    pub discord_webhook_url: Option<WebhookUrl>,
    pub slack_webhook_url: Option<WebhookUrl>,
    pub webhook_url: Option<WebhookUrl>,
    /// The longest one webhook post may take (connect, send and answer), per attempt.
    pub webhook_timeout: Duration,
    /// Where the static report is refreshed after every run, if set.
    pub report_dir: Option<PathBuf>,
}

impl Secrets {
    /// Reads `path`; a missing file means no secrets. Unknown keys are ignored.
    pub fn load(path: &Path) -> Result<Secrets, SecretsError> {
        let read_error = |source| SecretsError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Secrets::empty()),
            Err(e) => return Err(read_error(e)),
        };
        let mut reader = BufReader::new(file);
        // A byte order mark is not part of the first key (dotenvy strips it only when it loads).
        if reader.fill_buf().map_err(read_error)?.starts_with(BOM) {
            reader.consume(BOM.len());
        }
        let mut pairs = Vec::new();
        for item in dotenvy::Iter::new(reader) {
            match item {
                Ok(pair) => pairs.push(pair),
                Err(dotenvy::Error::LineParse(text, _)) => {
                    return Err(SecretsError::Syntax {
                        path: path.to_path_buf(),
                        line: line_of(path, &text),
                    });
                }
                Err(dotenvy::Error::Io(e)) => return Err(read_error(e)),
                Err(_) => {
                    return Err(SecretsError::Invalid {
                        path: path.to_path_buf(),
                        message: "cannot be parsed as dotenv".into(),
                    });
                }
            }
        }
        Secrets::from_pairs(pairs).map_err(|message| SecretsError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn empty() -> Secrets {
        Secrets {
            webhook_timeout: DEFAULT_WEBHOOK_TIMEOUT,
            ..Secrets::default()
        }
    }

    /// Builds the secrets from `KEY=value` pairs; a later pair wins. Errors name the key, never the value.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Secrets, String> {
        let mut secrets = Secrets::empty();
        for (key, value) in pairs {
            let value = value.trim();
            match key.as_str() {
                DISCORD_WEBHOOK_URL => {
                    secrets.discord_webhook_url = WebhookUrl::from_env(&key, value)?
                }
                SLACK_WEBHOOK_URL => secrets.slack_webhook_url = WebhookUrl::from_env(&key, value)?,
                WEBHOOK_URL => secrets.webhook_url = WebhookUrl::from_env(&key, value)?,
                WEBHOOK_TIMEOUT if !value.is_empty() => {
                    secrets.webhook_timeout = HumanDuration::parse(value)
                        .map_err(|_| {
                            format!(
                                "`{WEBHOOK_TIMEOUT}` is not a duration; write it like \"10s\" or \"1m\""
                            )
                        })?
                        .0;
                }
                PHANTOM_CI_REPORT_DIR if !value.is_empty() => {
                    let dir = PathBuf::from(value);
                    if !dir.is_absolute() {
                        return Err(format!(
                            "`{PHANTOM_CI_REPORT_DIR}` is a relative path; give an absolute directory"
                        ));
                    }
                    secrets.report_dir = Some(dir);
                }
                _ => {}
            }
        }
        Ok(secrets)
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The 1-based line where the entry that fails with `error_text` starts, found by parsing longer and longer
/// beginnings of the file until one fails with that same error (dotenvy does not count lines); 0 when
/// it cannot be told. Only on the error path, and `.env` files are short.
fn line_of(path: &Path, error_text: &str) -> usize {
    let Ok(bytes) = std::fs::read(path) else {
        return 0;
    };
    let bytes = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    let mut end = 0;
    for (number, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        end += line.len();
        let error = dotenvy::Iter::new(&bytes[..end]).find_map(Result::err);
        if matches!(error, Some(dotenvy::Error::LineParse(text, _)) if text == error_text) {
            // A quoted value may span lines: name the line where the entry starts.
            let spanned = error_text
                .strip_suffix('\n')
                .unwrap_or(error_text)
                .matches('\n');
            return number + 1 - spanned.count().min(number);
        }
    }
    0
}

/// A webhook URL: `http://` or `https://`. It is a secret (Discord and Slack put the token in the
/// path), so it shows itself only as scheme and host, and the full text is reachable only through
/// [`WebhookUrl::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: String,
    /// `scheme://host[:port]`, without any user or password.
    origin: String,
    /// Whether anything follows the host (path, query): shown as `/…`.
    has_rest: bool,
}

impl WebhookUrl {
    pub fn parse(url: &str) -> Option<WebhookUrl> {
        let scheme_end = url.find("://")?;
        let scheme = url[..scheme_end].to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let host = authority.rsplit('@').next().unwrap_or_default();
        let valid = !host.is_empty()
            && !url.contains(char::is_whitespace)
            && !url.contains(char::is_control);
        valid.then(|| WebhookUrl {
            url: url.to_string(),
            origin: format!("{scheme}://{host}"),
            has_rest: authority_end < rest.len() || authority.contains('@'),
        })
    }

    /// An empty value is no webhook; anything else must be a URL.
    fn from_env(key: &str, value: &str) -> Result<Option<WebhookUrl>, String> {
        if value.is_empty() {
            return Ok(None);
        }
        WebhookUrl::parse(value).map(Some).ok_or_else(|| {
            format!(
                "`{key}` is not an http:// or https:// URL; paste the webhook URL the service gave"
            )
        })
    }

    /// The whole URL, token included: only for the HTTP request itself.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The parts of the URL that must never be shown, longest first, for scrubbing any text before it
    /// is written: everything after the host, any user and password, and every piece of the path and
    /// query of 4 characters or more, whatever its case (a token may be all lower-case, and a server
    /// may echo it in another case; [`WebhookUrl::redact`] ignores case).
    pub fn secret_parts(&self) -> Vec<&str> {
        let rest = self
            .url
            .find("://")
            .map_or(self.url.as_str(), |i| &self.url[i + 3..]);
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let after_host = &rest[authority_end..];
        let userinfo = rest[..authority_end].rsplit_once('@').map(|(u, _)| u);
        let mut parts: Vec<&str> = after_host
            .split(['/', '?', '&', '=', '#', ';'])
            .chain(userinfo.into_iter().flat_map(|u| u.split(':')))
            .filter(|p| p.len() >= 4)
            .chain([after_host])
            .chain(userinfo)
            .filter(|p| p.len() >= 2)
            .collect();
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        parts.dedup();
        parts
    }

    /// Replaces every secret part of this URL in `text` with `…`.
    pub fn redact(&self, text: &str) -> String {
        self.secret_parts()
            .into_iter()
            .fold(text.to_string(), |text, part| {
                replace_ignoring_case(&text, part)
            })
    }
}

/// Replaces every occurrence of `part` in `text` with `…`, whatever the ASCII case of either (a server
/// may echo a path upper-cased).
fn replace_ignoring_case(text: &str, part: &str) -> String {
    if part.is_empty() {
        return text.to_string();
    }
    // ASCII lower-casing keeps every byte where it is, so offsets in `lower` are offsets in `text`.
    let (lower, needle) = (text.to_ascii_lowercase(), part.to_ascii_lowercase());
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    for (at, _) in lower.match_indices(&needle) {
        if at < rest {
            continue;
        }
        out.push_str(&text[rest..at]);
        out.push('…');
        rest = at + needle.len();
    }
    out.push_str(&text[rest..]);
    out
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if self.has_rest {
            f.write_str("/…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISCORD: &str = "https://discord.com/api/webhooks/123456/s3cr3t-t0ken";

    fn load(text: &str) -> (Result<Secrets, SecretsError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, text).unwrap();
        (Secrets::load(&path), dir)
    }

    #[test]
    fn redaction_ignores_case() {
        assert_eq!(
            replace_ignoring_case("upper /HOOKS/T0KEN-x done", "/hooks/t0ken-X"),
            "upper … done"
        );
        assert_eq!(replace_ignoring_case("aaa", "aa"), "…a");
        assert_eq!(replace_ignoring_case("é/Tok", "/tok"), "é…");
    }

    #[test]
    fn keys_are_read_into_memory_only() {
        let (secrets, _dir) = load(&format!(
            "# webhooks\nDISCORD_WEBHOOK_URL={DISCORD}\nexport SLACK_WEBHOOK_URL='https://hooks.slack.com/services/T/B/x'\nWEBHOOK_URL=\nOTHER=ignored\nWEBHOOK_TIMEOUT=2s\nPHANTOM_CI_REPORT_DIR=/srv/www/ci\n"
        ));
        let secrets = secrets.unwrap();
        assert_eq!(secrets.discord_webhook_url.unwrap().expose(), DISCORD);
        assert!(secrets.slack_webhook_url.is_some());
        assert_eq!(secrets.webhook_url, None);
        assert_eq!(secrets.webhook_timeout, Duration::from_secs(2));
        assert_eq!(secrets.report_dir, Some(PathBuf::from("/srv/www/ci")));
        assert!(std::env::var_os(DISCORD_WEBHOOK_URL).is_none());
        assert!(std::env::var_os("OTHER").is_none());
    }

    #[test]
    fn a_missing_file_is_no_secrets_and_a_bom_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::load(&dir.path().join(".env")).unwrap();
        assert_eq!(secrets, Secrets::empty());
        assert_eq!(secrets.webhook_timeout, DEFAULT_WEBHOOK_TIMEOUT);
        let (secrets, _dir) = load(&format!("\u{feff}WEBHOOK_URL={DISCORD}\n"));
        assert!(secrets.unwrap().webhook_url.is_some());
    }

    #[test]
    fn a_syntax_error_names_the_line_but_never_quotes_it() {
        let (secrets, _dir) = load(&format!(
            "# one\nWEBHOOK_TIMEOUT=3s\n\nDISCORD_WEBHOOK_URL={DISCORD} s3cr3t-spaces\n"
        ));
        let error = secrets.unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, SecretsError::Syntax { line: 4, .. }),
            "{text}"
        );
        assert!(text.contains(".env` line 4"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!format!("{error:?}").contains("s3cr3t"));
        for (text, line) in [
            ("A=\"two\nlines\"\nA=x y\n", 3),
            ("A=1\nB='unterminated\n\n", 2),
            ("ok=1\n=nokey\n", 2),
        ] {
            let (secrets, _dir) = load(text);
            assert!(
                matches!(secrets, Err(SecretsError::Syntax { line: l, .. }) if l == line),
                "{text:?}: {secrets:?}"
            );
        }
    }

    #[test]
    fn a_bad_value_names_the_key_but_never_the_value() {
        for text in [
            "SLACK_WEBHOOK_URL=ftp://s3cr3t\n",
            "WEBHOOK_URL=s3cr3t\n",
            "WEBHOOK_TIMEOUT=s3cr3t\n",
        ] {
            let (secrets, _dir) = load(text);
            let message = secrets.unwrap_err().to_string();
            let key = text.split('=').next().unwrap();
            assert!(message.contains(&format!("`{key}`")), "{message}");
            assert!(!message.contains("s3cr3t"), "{message}");
        }
    }

    #[test]
    fn a_url_shows_only_scheme_and_host() {
        let url = WebhookUrl::parse(DISCORD).unwrap();
        assert_eq!(url.to_string(), "https://discord.com/…");
        assert_eq!(format!("{url:?}"), "WebhookUrl(https://discord.com/…)");
        let url = WebhookUrl::parse("HTTP://user:pw1234@127.0.0.1:8080?token=abc123def").unwrap();
        assert_eq!(url.to_string(), "http://127.0.0.1:8080/…");
        assert_eq!(
            url.redact("echo user:pw1234 token=abc123def and PW1234"),
            "echo … …=… and …"
        );
        let lower =
            WebhookUrl::parse("https://hooks.example/hooks/alllowercasetoken?key=quietly").unwrap();
        assert_eq!(
            lower.redact("no such hook: /HOOKS/ALLLOWERCASETOKEN, key quietly"),
            "no such hook: /…/…, key …"
        );
        assert_eq!(
            WebhookUrl::parse("https://example.org")
                .unwrap()
                .to_string(),
            "https://example.org"
        );
        assert_eq!(WebhookUrl::parse("https://"), None);
        assert_eq!(WebhookUrl::parse("file:///etc/passwd"), None);
        let discord = WebhookUrl::parse(DISCORD).unwrap();
        assert_eq!(
            discord.redact("no such webhook /api/webhooks/123456/s3cr3t-t0ken"),
            "no such webhook …"
        );
    }
}
