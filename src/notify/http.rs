//! One webhook POST with minreq: a timeout per attempt, one retry after a 429, no redirects, and a
//! failure described without the URL's path or token.
//!
//! Nothing the endpoint sends back is ever written anywhere: a failure is described by the status code
//! and phantom_ci's own words for it (not the server's reason phrase, headers or body, which may echo
//! the token), or by phantom_ci's own words for a connection error. The body is read only to learn a
//! 429's `retry_after`.

use std::io::Read;
use std::time::Duration;

use crate::config::secrets::WebhookUrl;

/// The longest phantom_ci waits before retrying a 429, whatever the service asks.
pub const RETRY_CAP: Duration = Duration::from_secs(10);
/// The wait before the retry when a 429 says nothing about it.
const RETRY_DEFAULT: Duration = Duration::from_secs(1);
/// How much of a 429's body is read (to learn `retry_after`), and the most header bytes accepted.
const BODY_LIMIT: u64 = 16 * 1024;

/// A post to make: which webhook, where, and what.
pub struct Post<'a> {
    pub name: &'static str,
    pub url: &'a WebhookUrl,
    pub body: Vec<u8>,
}

/// How one attempt ended.
#[derive(Debug, PartialEq)]
enum Answer {
    Accepted,
    TooManyRequests(Duration),
    Refused(String),
}

/// Posts `post`; on failure returns the note for stderr, which shows the URL as scheme and host only.
pub fn send(post: &Post, timeout: Duration) -> Result<(), String> {
    let mut answer = attempt(post, timeout);
    if let Ok(Answer::TooManyRequests(wait)) = answer {
        std::thread::sleep(wait.min(RETRY_CAP));
        answer = attempt(post, timeout);
    }
    let outcome = match answer {
        Ok(Answer::Accepted) => Ok(()),
        // Only the retry's answer can still be a 429 here.
        Ok(Answer::TooManyRequests(_)) => {
            Err("rate limited (HTTP 429), again after one retry".to_string())
        }
        Ok(Answer::Refused(why)) | Err(why) => Err(why),
    };
    outcome.map_err(|why| {
        format!(
            "webhook `{}` ({}) failed: {}",
            post.name,
            post.url,
            crate::describe::terminal(&post.url.redact(&why))
        )
    })
}

fn attempt(post: &Post, timeout: Duration) -> Result<Answer, String> {
    // minreq counts whole seconds; the deadline covers name lookup, connecting, sending and the answer.
    let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    let request = minreq::post(post.url.expose())
        .with_header("Content-Type", "application/json")
        .with_header(
            "User-Agent",
            concat!("phantom_ci/", env!("CARGO_PKG_VERSION")),
        )
        .with_body(post.body.clone())
        .with_timeout(seconds.max(1))
        .with_follow_redirects(false)
        .with_max_headers_size(BODY_LIMIT as usize)
        .with_max_status_line_length(1024);
    let mut response = request
        .send_lazy()
        .map_err(|e| describe(&e, Duration::from_secs(seconds.max(1))))?;
    let status = response.status_code;
    if (200..300).contains(&status) {
        return Ok(Answer::Accepted);
    }
    if status == 429 {
        let mut body = Vec::new();
        // What arrived before an error or the limit is enough to find `retry_after`.
        let _ = (&mut response).take(BODY_LIMIT).read_to_end(&mut body);
        let body = String::from_utf8_lossy(&body);
        let header = response
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
            .map(|(_, value)| value.as_str());
        return Ok(Answer::TooManyRequests(
            retry_after(header, &body).unwrap_or(RETRY_DEFAULT),
        ));
    }
    Ok(Answer::Refused(refusal(status)))
}

/// A refused post in phantom_ci's words: the status code, its standard name for the common ones, and
/// what to do. Never anything the server sent with it (reason phrase, headers, body).
fn refusal(status: u16) -> String {
    let name = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    };
    let hint = match status {
        300..=399 => " (redirects are not followed; use the URL it points to)",
        401 | 403 | 404 | 410 => " (check the webhook URL in .env)",
        _ => "",
    };
    let mut text = format!("HTTP {status}");
    if !name.is_empty() {
        text.push(' ');
        text.push_str(name);
    }
    text.push_str(hint);
    text
}

/// How long a 429 asks to wait: Discord's JSON `retry_after` (seconds, fractional), else the
/// `Retry-After` header (seconds). Not capped here.
fn retry_after(header: Option<&str>, body: &str) -> Option<Duration> {
    let from_body = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("retry_after").and_then(serde_json::Value::as_f64));
    let from_header = || header.and_then(|h| h.trim().parse::<f64>().ok());
    from_body
        .or_else(from_header)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

/// A failed connection in phantom_ci's words. Only the operating system's own text of an error may
/// show; whatever came from the other end (a TLS alert, a malformed answer) is named, not quoted.
fn describe(error: &minreq::Error, timeout: Duration) -> String {
    use std::io::ErrorKind;
    let minreq::Error::IoError(e) = error else {
        return match error {
            minreq::Error::AddressNotFound => "the host name cannot be resolved".into(),
            minreq::Error::HeadersOverflow | minreq::Error::StatusLineOverflow => {
                "the answer's headers are too large".into()
            }
            minreq::Error::RustlsCreateConnection(_) => "cannot set up TLS".into(),
            _ => "the answer is not valid HTTP".into(),
        };
    };
    match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => format!(
            "timed out after {} (set `WEBHOOK_TIMEOUT` in .env to wait longer)",
            humantime::format_duration(timeout)
        ),
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => "the connection was closed before an answer".into(),
        ErrorKind::InvalidData | ErrorKind::InvalidInput => {
            "the answer is not valid HTTP or TLS (a certificate that does not match, say)".into()
        }
        // An error of the operating system: its text is the system's, not the server's.
        _ if e.raw_os_error().is_some() => e.to_string(),
        _ if e.to_string().starts_with("failed to lookup address") => {
            "the host name cannot be resolved".into()
        }
        kind => format!("cannot post ({kind})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_comes_from_the_body_or_the_header() {
        let secs = Duration::from_secs_f64;
        assert_eq!(
            retry_after(None, r#"{"message":"rate limited","retry_after":0.25}"#),
            Some(secs(0.25))
        );
        assert_eq!(retry_after(Some(" 3 "), "not json"), Some(secs(3.0)));
        assert_eq!(
            retry_after(Some("3"), r#"{"retry_after":1}"#),
            Some(secs(1.0))
        );
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), ""), None);
        assert_eq!(retry_after(Some("-1"), ""), None);
        assert_eq!(
            retry_after(None, r#"{"retry_after":1e300}"#),
            Some(secs(3600.0))
        );
    }

    #[test]
    fn a_timeout_is_named_as_such() {
        let error = minreq::Error::IoError(std::io::ErrorKind::TimedOut.into());
        assert!(describe(&error, Duration::from_secs(2)).starts_with("timed out after 2s"));
    }

    #[test]
    fn nothing_from_the_other_end_is_quoted() {
        let echoed = "https://hooks.example/services/secret-token";
        for error in [
            minreq::Error::IoError(std::io::Error::new(std::io::ErrorKind::InvalidData, echoed)),
            minreq::Error::IoError(std::io::Error::other(echoed)),
            minreq::Error::InvalidUtf8InResponse,
        ] {
            let text = describe(&error, Duration::from_secs(1));
            assert!(!text.contains("secret"), "{text}");
        }
        let refused = minreq::Error::IoError(std::io::Error::from_raw_os_error(111));
        assert!(describe(&refused, Duration::from_secs(1)).contains("refused"));
        assert_eq!(
            refusal(404),
            "HTTP 404 Not Found (check the webhook URL in .env)"
        );
        assert_eq!(refusal(500), "HTTP 500 Internal Server Error");
        assert_eq!(refusal(418), "HTTP 418");
    }
}
