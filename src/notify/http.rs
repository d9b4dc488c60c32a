//! One webhook POST with minreq: a timeout per attempt, one retry after a 429, no redirects, and a
//! failure described without the URL's path or token.

use std::io::Read;
use std::time::Duration;

use crate::config::secrets::WebhookUrl;

/// The longest phantom_ci waits before retrying a 429, whatever the service asks.
pub const RETRY_CAP: Duration = Duration::from_secs(10);
/// The wait before the retry when a 429 says nothing about it.
const RETRY_DEFAULT: Duration = Duration::from_secs(1);
/// How much of an answer's body is read (to learn `retry_after` or show why a post failed).
const BODY_LIMIT: u64 = 16 * 1024;
/// How much of a failed answer's body a note shows.
const BODY_SHOWN: usize = 200;

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
    let mut body = Vec::new();
    // What arrived before an error or the limit is enough to explain the failure.
    let _ = (&mut response).take(BODY_LIMIT).read_to_end(&mut body);
    let body = String::from_utf8_lossy(&body);
    if status == 429 {
        let header = response
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
            .map(|(_, value)| value.as_str());
        return Ok(Answer::TooManyRequests(
            retry_after(header, &body).unwrap_or(RETRY_DEFAULT),
        ));
    }
    let mut why = format!(
        "HTTP {status} {}",
        super::text::one_line(&response.reason_phrase, 60)
    );
    if (300..400).contains(&status) {
        why.push_str(" (redirects are not followed; use the URL it points to)");
    }
    let body = super::text::one_line(body.trim(), BODY_SHOWN);
    if !body.is_empty() {
        why.push_str(": ");
        why.push_str(&body);
    }
    Ok(Answer::Refused(why))
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

fn describe(error: &minreq::Error, timeout: Duration) -> String {
    match error {
        minreq::Error::IoError(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            format!(
                "timed out after {} (set `WEBHOOK_TIMEOUT` in .env to wait longer)",
                humantime::format_duration(timeout)
            )
        }
        other => other.to_string(),
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
}
