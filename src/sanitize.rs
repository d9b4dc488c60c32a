//! Untrusted text (branch names, step names, commands, commit subjects) on its way to a terminal.

/// Replaces control characters (escape sequences, carriage returns, bells, …) with `?`, so that a branch
/// or step name cannot move the cursor, rewrite earlier lines or change the terminal's title.
pub fn terminal(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_newlines_are_neutralised() {
        assert_eq!(terminal("ok\x1b[2J\r\nx\u{9b}y"), "ok?[2J??x?y");
        assert_eq!(terminal("feature/π"), "feature/π");
    }
}
