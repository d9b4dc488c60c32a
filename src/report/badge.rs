//! `badge/<repo>.svg` and `badge/<repo>/<branch>.svg`: a small shields-style badge,
//! "phantom_ci | <result>", coloured by the result.

use crate::state::records::RunResult;

use super::html::escape;

const LABEL: &str = "phantom_ci";

/// What a badge says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// No run.
    None,
    /// The newest run's record cannot be read.
    Unreadable,
    Result(RunResult),
}

impl Value {
    pub fn svg(self) -> String {
        match self {
            Value::None => svg(None),
            Value::Unreadable => unreadable(),
            Value::Result(result) => svg(Some(result)),
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Value::None => "none",
            Value::Unreadable => "unreadable",
            Value::Result(result) => result.as_str(),
        }
    }
}

/// The file name (without `.svg`) of a branch's badge in `badge/<repo>/`, usable in a URL as it is:
/// a branch of letters, digits, `.`, `_`, `-` and `/` is written with each `/` as `~` (which no
/// branch name holds): `release/1.2` → `release~1.2`; any other branch as `~` and the SHA-1 of its
/// name (which no written name starts with: a branch never starts with `/`).
pub fn file_name(branch: &str) -> String {
    let plain = branch
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if plain && !branch.is_empty() && !branch.starts_with('/') && branch.len() <= 200 {
        return branch.replace('/', "~");
    }
    git2::Oid::hash_object(git2::ObjectType::Blob, branch.as_bytes())
        .map_or_else(|_| "~unnamed".to_string(), |id| format!("~{id}"))
}

/// The badge of a repo whose last run ended with `result` (`None`: it never ran).
pub fn svg(result: Option<RunResult>) -> String {
    draw(result.map_or("none", RunResult::as_str), color(result))
}

/// The badge of a repo whose newest run's record cannot be read.
pub fn unreadable() -> String {
    draw("unreadable", "#9f9f9f")
}

/// How wide the badge of `value` (a result, `none`, `unreadable`; `None`: `none`) is, in pixels.
pub fn width(value: Option<&str>) -> u32 {
    text_width(LABEL) + text_width(value.unwrap_or("none")) + 20
}

fn draw(value: &str, color: &str) -> String {
    let left = text_width(LABEL) + 10;
    let right = text_width(value) + 10;
    let width = left + right;
    let (label, value) = (escape(LABEL), escape(value));
    // Text is drawn at 10× and scaled down, as shields.io does, for crisp half-pixel positions.
    let (label_x, value_x) = (left * 5, left * 10 + right * 5);
    let (label_len, value_len) = ((left - 10) * 10, (right - 10) * 10);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="{label}: {value}">
<title>{label}: {value}</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{right}" height="20" fill="{color}"/><rect width="{width}" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110">
<text x="{label_x}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{label_len}">{label}</text>
<text x="{label_x}" y="140" transform="scale(.1)" textLength="{label_len}">{label}</text>
<text x="{value_x}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{value_len}">{value}</text>
<text x="{value_x}" y="140" transform="scale(.1)" textLength="{value_len}">{value}</text>
</g>
</svg>
"##
    )
}

/// The colour of a result: green for success, red for failure, and so on; grey when there is no run.
pub fn color(result: Option<RunResult>) -> &'static str {
    match result {
        Some(RunResult::Success) => "#4c1",
        Some(RunResult::Failure) => "#e05d44",
        Some(RunResult::Error) => "#fe7d37",
        Some(RunResult::Timeout) => "#dfb317",
        Some(RunResult::Rejected) => "#a4a61d",
        Some(RunResult::Running) => "#007ec6",
        Some(RunResult::Aborted | RunResult::Cancelled) | None => "#9f9f9f",
    }
}

/// Roughly how wide `text` is in 11px Verdana, in pixels.
fn text_width(text: &str) -> u32 {
    text.chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | '\'' | '|' => 3,
            'f' | 'r' | 't' | ' ' => 5,
            'm' | 'w' | 'M' | 'W' => 10,
            _ => 7,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_badge_names_the_result_in_its_colour() {
        let badge = svg(Some(RunResult::Success));
        assert!(badge.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(badge.trim_end().ends_with("</svg>"));
        assert!(badge.contains(">phantom_ci</text>"));
        assert!(badge.contains(">success</text>"));
        assert!(badge.contains("fill=\"#4c1\""));

        let badge = svg(Some(RunResult::Failure));
        assert!(badge.contains(">failure</text>") && badge.contains("fill=\"#e05d44\""));
        assert!(!badge.contains("#4c1"));

        let badge = svg(None);
        assert!(badge.contains(">none</text>") && badge.contains("fill=\"#9f9f9f\""));

        assert!(unreadable().contains(">unreadable</text>"));
    }

    #[test]
    fn branch_badges_have_names_a_url_takes_as_they_are() {
        assert_eq!(file_name("master"), "master");
        assert_eq!(file_name("release/1.2"), "release~1.2");
        assert_eq!(file_name("a/b/c_d-e"), "a~b~c_d-e");
        let odd = file_name("fix#3");
        assert!(odd.starts_with('~') && odd.len() == 41, "{odd}");
        assert_ne!(file_name("fix#3"), file_name("fix#4"));
        assert_ne!(file_name("π"), file_name("ü"));
        for branch in ["fix#3", "%2F", "a b", "x?y", "<b>"] {
            let name = file_name(branch);
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "~._-".contains(c)),
                "{name}"
            );
        }
    }

    #[test]
    fn the_badge_is_as_wide_as_its_text() {
        let width = |badge: &str| -> u32 {
            let start = badge.find("width=\"").unwrap() + 7;
            let end = start + badge[start..].find('"').unwrap();
            badge[start..end].parse().unwrap()
        };
        assert!(width(&svg(Some(RunResult::Success))) > width(&svg(None)));
        assert_eq!(
            width(&svg(Some(RunResult::Failure))),
            super::width(Some("failure"))
        );
        assert_eq!(width(&svg(None)), super::width(None));
        // Every result has a colour of its own but aborted, which is grey like "none".
        let results = [
            RunResult::Success,
            RunResult::Failure,
            RunResult::Error,
            RunResult::Timeout,
            RunResult::Rejected,
            RunResult::Running,
            RunResult::Aborted,
        ];
        let colors: std::collections::HashSet<_> =
            results.iter().map(|r| color(Some(*r))).collect();
        assert_eq!(colors.len(), results.len());
    }
}
