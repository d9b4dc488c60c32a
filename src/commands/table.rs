//! Plain text tables for `list` and `status`: columns padded to their widest cell.

/// `headers` and `rows` as lines, columns separated by two spaces, the last column not padded.
pub fn render<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < N {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up() {
        let rows = [
            ["app".to_string(), "master".to_string(), "x".to_string()],
            ["a-long-name".to_string(), "-".to_string(), "y".to_string()],
        ];
        assert_eq!(
            super::render(&["REPO", "BRANCH", "PATH"], &rows),
            "REPO         BRANCH  PATH\napp          master  x\na-long-name  -       y\n"
        );
    }
}
