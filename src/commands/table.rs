//! Plain text tables for `list` and `status`: columns padded to their widest cell.

/// `headers` and `rows` as lines, columns separated by two spaces, the last column not padded.
pub fn render<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    render_styled(headers, rows, |_, _| None)
}

/// The same, with the cell in row `r`, column `c` (of `rows`, from 0) in `style(r, c)` if that is
/// `Some`: padded by its text alone, so the columns line up with or without colour.
pub fn render_styled<const N: usize>(
    headers: &[&str; N],
    rows: &[[String; N]],
    style: impl Fn(usize, usize) -> Option<anstyle::Style>,
) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>, row: Option<usize>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            match row.and_then(|r| style(r, i)) {
                Some(style) => text.push_str(&crate::describe::paint(cell, style)),
                None => text.push_str(cell),
            }
            if i + 1 < N {
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied(), None);
    for (r, row) in rows.iter().enumerate() {
        line(&mut row.iter().map(String::as_str), Some(r));
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

    #[test]
    fn styled_cells_are_padded_by_their_text() {
        let rows = [
            ["app".to_string(), "ok".to_string(), "x".to_string()],
            ["a-long-name".to_string(), "-".to_string(), "y".to_string()],
        ];
        let green = anstyle::Style::new().fg_color(Some(anstyle::AnsiColor::Green.into()));
        let styled = super::render_styled(&["REPO", "R", "PATH"], &rows, |r, c| {
            ((r, c) == (0, 1)).then_some(green)
        });
        assert_eq!(
            styled,
            "REPO         R   PATH\napp          \x1b[32mok\x1b[0m  x\na-long-name  -   y\n"
        );
    }
}
