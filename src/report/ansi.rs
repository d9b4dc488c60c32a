//! A log's terminal output as HTML: ANSI SGR colours and weights become `<span class=…>`, every other
//! escape sequence is dropped, and no escape byte ever reaches the page.
//!
//! What is rendered: SGR (`ESC [ … m`) reset (`0`, empty), bold (`1`), dim (`2`), italic (`3`),
//! underline (`4`), their ends (`21`/`22`, `23`, `24`), the 8 colours and their bright forms for the
//! foreground (`30`–`37`, `90`–`97`) and the background (`40`–`47`, `100`–`107`), 256 colours
//! (`38;5;n`, `48;5;n`) and true colour (`38;2;r;g;b`, `48;2;r;g;b`), and the defaults (`39`, `49`).
//! Anything else — other SGR codes, other CSI sequences (cursor moves, erasing), OSC (titles, OSC 8
//! links), DCS/SOS/PM/APC strings, two- and three-byte escapes, their 8-bit C1 forms, and every other
//! control character but tab — is removed. A sequence cut off at the end of a line is removed too.
//! The sequences are recognised by [`crate::describe::escapes`], the scanner the terminal filter
//! shares, so the report and a terminal keep the same things.
//!
//! A line redrawn with carriage returns (a progress bar) shows its last state, as on a terminal.
//! Styles carry over from one line to the next (as on a terminal), but every line's spans are closed
//! at its end, so a page cut anywhere is well formed.

use std::fmt::Write;

use super::html::escape_into;
use crate::describe::escapes::{Param, Scanner, Token};

/// A colour: one of the 16 named ones (a class), or an exact one (an inline style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colour {
    Named(u8),
    Rgb(u8, u8, u8),
}

/// The graphic rendition in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Style {
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    fg: Option<Colour>,
    bg: Option<Colour>,
}

impl Style {
    fn is_plain(&self) -> bool {
        *self == Style::default()
    }

    /// The opening tag of a span in this style (only for a style that is not plain).
    fn open(&self, out: &mut String) {
        out.push_str("<span");
        let mut first = true;
        let mut class = |out: &mut String, name: &str, n: Option<u8>| {
            out.push_str(if first { " class=\"" } else { " " });
            first = false;
            out.push_str(name);
            if let Some(n) = n {
                let _ = write!(out, "{n}");
            }
        };
        for (on, name) in [
            (self.bold, "bold"),
            (self.dim, "dim"),
            (self.italic, "italic"),
            (self.underline, "uline"),
        ] {
            if on {
                class(out, name, None);
            }
        }
        for (colour, name) in [(self.fg, "fg"), (self.bg, "bg")] {
            if let Some(Colour::Named(n)) = colour {
                class(out, name, Some(n));
            }
        }
        if !first {
            out.push('"');
        }
        let mut css = false;
        for (colour, property) in [(self.fg, "color"), (self.bg, "background")] {
            if let Some(Colour::Rgb(r, g, b)) = colour {
                out.push_str(if css { "" } else { " style=\"" });
                css = true;
                let _ = write!(out, "{property}:#{r:02x}{g:02x}{b:02x};");
            }
        }
        if css {
            out.push('"');
        }
        out.push('>');
    }

    /// Applies the parameters of one SGR sequence, left to right.
    fn apply(&mut self, params: &[Param]) {
        let mut i = 0;
        while i < params.len() {
            let code = params[i].value();
            i += 1;
            match code {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                21 | 22 => {
                    self.bold = false;
                    self.dim = false;
                }
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 => self.fg = Some(Colour::Named((code - 30) as u8)),
                90..=97 => self.fg = Some(Colour::Named((code - 90 + 8) as u8)),
                39 => self.fg = None,
                40..=47 => self.bg = Some(Colour::Named((code - 40) as u8)),
                100..=107 => self.bg = Some(Colour::Named((code - 100 + 8) as u8)),
                49 => self.bg = None,
                38 | 48 => {
                    // `38;5;n` / `38;2;r;g;b`, or the same with colons inside one parameter.
                    let (colour, used) = match &params[i - 1] {
                        Param::Sub(subs) => {
                            // `38:2:<colour space>:r:g:b`, the colour space often left empty.
                            let mut rest = subs[1..].to_vec();
                            if rest.first() == Some(&2) && rest.len() >= 5 {
                                rest.remove(1);
                            }
                            (extended(&rest), 0)
                        }
                        Param::Plain(_) => {
                            let rest: Vec<u32> = params[i..].iter().map(Param::value).collect();
                            let colour = extended(&rest);
                            let used = match rest.first() {
                                Some(5) => 2,
                                Some(2) => 4,
                                _ => rest.len(),
                            };
                            (colour, used)
                        }
                    };
                    i += used;
                    if let Some(colour) = colour {
                        if code == 38 {
                            self.fg = Some(colour);
                        } else {
                            self.bg = Some(colour);
                        }
                    }
                }
                // Everything else (blink, inverse, fonts, …) is not shown.
                _ => {}
            }
        }
    }
}

/// The colour of `5;n` or `2;r;g;b`; `None` when incomplete or out of range.
fn extended(params: &[u32]) -> Option<Colour> {
    let byte = |i: usize| params.get(i).and_then(|v| u8::try_from(*v).ok());
    match params.first()? {
        5 => {
            let n = byte(1)?;
            Some(if n < 16 {
                Colour::Named(n)
            } else {
                let (r, g, b) = palette(n);
                Colour::Rgb(r, g, b)
            })
        }
        2 => Some(Colour::Rgb(byte(1)?, byte(2)?, byte(3)?)),
        _ => None,
    }
}

/// xterm's colours 16–255: a 6×6×6 cube, then 24 greys.
fn palette(n: u8) -> (u8, u8, u8) {
    if n >= 232 {
        let grey = 8 + (n - 232) * 10;
        return (grey, grey, grey);
    }
    let n = n - 16;
    let level = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
    (level(n / 36), level((n / 6) % 6), level(n % 6))
}

/// Turns a log into HTML lines, carrying the style from one line to the next.
#[derive(Default)]
pub struct Renderer {
    style: Style,
}

impl Renderer {
    pub fn new() -> Renderer {
        Renderer::default()
    }

    /// Appends `text` (a whole log or a part ending at a line's end) to `out` as escaped HTML, one
    /// line per line, every span closed at the end of its line.
    pub fn push(&mut self, text: &str, out: &mut String) {
        let text = text.strip_suffix('\n').unwrap_or(text);
        for line in text.split('\n') {
            self.line(line, out);
            out.push('\n');
        }
    }

    /// One line (without its `\n`).
    fn line(&mut self, line: &str, out: &mut String) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        // A line redrawn with carriage returns shows its last state; the style set by the parts
        // drawn over still counts.
        let mut parts = line.split('\r').filter(|p| !p.is_empty()).peekable();
        let mut open = false;
        while let Some(part) = parts.next() {
            let shown = parts.peek().is_none();
            self.part(part, shown, &mut open, out);
        }
        if open {
            out.push_str("</span>");
        }
    }

    fn part(&mut self, part: &str, shown: bool, open: &mut bool, out: &mut String) {
        let mut text_start: Option<usize> = None;
        // Text is escaped in runs, between sequences.
        let flush =
            |from: Option<usize>, to: usize, style: &Style, open: &mut bool, out: &mut String| {
                if let Some(from) = from
                    && shown
                    && from < to
                {
                    if !*open && !style.is_plain() {
                        style.open(out);
                        *open = true;
                    }
                    escape_into(out, &part[from..to]);
                }
            };
        // A sequence cut off at the end of the part is dropped whole.
        let mut scanner = Scanner::new();
        for (at, c) in part.char_indices() {
            let params = match scanner.feed(c) {
                Some(Token::Text(_) | Token::Control('\t')) => {
                    text_start.get_or_insert(at);
                    continue;
                }
                Some(Token::Sgr(params)) => Some(params),
                Some(Token::Control(_) | Token::Escape) | None => None,
            };
            flush(text_start.take(), at, &self.style, open, out);
            if let Some(params) = params {
                let before = self.style;
                self.style.apply(&params);
                if self.style != before && *open {
                    out.push_str("</span>");
                    *open = false;
                }
            }
        }
        flush(text_start.take(), part.len(), &self.style, open, out);
    }
}

/// The whole of `text` as HTML (see [`Renderer`]).
pub fn to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    Renderer::new().push(text, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(text: &str) -> String {
        to_html(text)
    }

    /// No escape or other control byte but `\n` and `\t` is left, in any form.
    fn clean(out: &str) -> bool {
        !out.chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    }

    #[test]
    fn colours_and_bold_become_spans() {
        assert_eq!(
            html("\x1b[31mred\x1b[0m plain\n"),
            "<span class=\"fg1\">red</span> plain\n"
        );
        assert_eq!(
            html("\x1b[1;92mok\x1b[m\n"),
            "<span class=\"bold fg10\">ok</span>\n"
        );
        assert_eq!(
            html("\x1b[44;97mx\x1b[49my\x1b[39mz"),
            "<span class=\"fg15 bg4\">x</span><span class=\"fg15\">y</span>z\n"
        );
        assert_eq!(
            html("\x1b[101mbg\x1b[0m"),
            "<span class=\"bg9\">bg</span>\n"
        );
        assert_eq!(
            html("\x1b[2;3;4mx\x1b[22;23;24my"),
            "<span class=\"dim italic uline\">x</span>y\n"
        );
        assert_eq!(
            html("\x1b[38;5;196mx"),
            "<span style=\"color:#ff0000;\">x</span>\n"
        );
        assert_eq!(html("\x1b[38;5;3mx"), "<span class=\"fg3\">x</span>\n");
        assert_eq!(
            html("\x1b[48;5;232mx"),
            "<span style=\"background:#080808;\">x</span>\n"
        );
        assert_eq!(
            html("\x1b[38;2;1;2;3mx"),
            "<span style=\"color:#010203;\">x</span>\n"
        );
        assert_eq!(
            html("\x1b[38:2::10:20:30mx"),
            "<span style=\"color:#0a141e;\">x</span>\n",
            "colon form, empty colour space"
        );
        assert_eq!(
            html("\x1b[38;2;1;2;3;1mx"),
            "<span class=\"bold\" style=\"color:#010203;\">x</span>\n",
            "the code after a colour counts"
        );
    }

    #[test]
    fn text_inside_spans_is_escaped() {
        assert_eq!(
            html("\x1b[31m<script>&amp;\"'</script>\x1b[0m"),
            "<span class=\"fg1\">&lt;script&gt;&amp;amp;&quot;&#39;&lt;/script&gt;</span>\n"
        );
        assert_eq!(html("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d\n");
    }

    #[test]
    fn resets_nest_and_repeat_without_empty_or_unclosed_spans() {
        assert_eq!(html("\x1b[0m\x1b[0m\x1b[mplain"), "plain\n");
        assert_eq!(
            html("\x1b[31m\x1b[0m\x1b[32mg\x1b[0m\x1b[0m"),
            "<span class=\"fg2\">g</span>\n"
        );
        assert_eq!(
            html("\x1b[1m\x1b[31mx\x1b[0;1my\x1b[0m"),
            "<span class=\"bold fg1\">x</span><span class=\"bold\">y</span>\n"
        );
        // A style that does not change keeps its span.
        assert_eq!(
            html("\x1b[31ma\x1b[31mb"),
            "<span class=\"fg1\">ab</span>\n"
        );
        // Every line closes its spans; the style goes on on the next one.
        assert_eq!(
            html("\x1b[33mone\ntwo\x1b[0m\nthree\n"),
            "<span class=\"fg3\">one</span>\n<span class=\"fg3\">two</span>\nthree\n"
        );
        let out = html("\x1b[1m\x1b[31m\x1b[42mx\n\x1b[0m\n");
        assert_eq!(out.matches("<span").count(), out.matches("</span>").count());
    }

    #[test]
    fn truncated_sequences_are_dropped_whole() {
        for input in [
            "ok\x1b",
            "ok\x1b[",
            "ok\x1b[31",
            "ok\x1b[38;5",
            "ok\x1b]8;;http://x",
            "ok\x1bP",
            "ok\u{9b}3",
        ] {
            let out = html(input);
            assert_eq!(out, "ok\n", "{input:?}");
        }
        assert_eq!(html("\x1b[38;5mx"), "x\n", "256 colours without the number");
        assert_eq!(html("\x1b[38;2;1;2mx"), "x\n", "true colour without blue");
        assert_eq!(html("\x1b[38mx"), "x\n");
        // A broken CSI ends at the first byte that cannot be in one, which goes with it.
        assert_eq!(html("a\x1b[3\u{e9}b"), "ab\n");
    }

    #[test]
    fn huge_and_many_parameters_cost_nothing_and_do_nothing() {
        assert_eq!(html("\x1b[99999999999999999999999999mx"), "x\n");
        assert_eq!(html("\x1b[38;5;99999999999mx"), "x\n");
        assert_eq!(html("\x1b[38;2;256;0;0mx"), "x\n");
        let many = format!("\x1b[{}31mx", ";".repeat(1_000_000));
        assert_eq!(
            html(&many),
            "x\n",
            "the 31 is past the parameters looked at"
        );
        let many = format!("\x1b[{}mx", "1;".repeat(100_000));
        assert_eq!(html(&many), "<span class=\"bold\">x</span>\n");
    }

    #[test]
    fn every_other_escape_sequence_is_removed() {
        let cases = [
            ("\x1b[2J\x1b[Hclear", "clear"),
            ("\x1b[?25lcursor\x1b[?25h", "cursor"),
            ("\x1b[?1;2mprivate", "private"),
            ("\x1b]0;title\x07text", "text"),
            ("\x1b]0;title\x1b\\text", "text"),
            (
                "\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\",
                "link",
            ),
            ("\x1b]8;;javascript:alert(1)\x07click\x1b]8;;\x07", "click"),
            ("\x1bPq#0;2;0;0;0\x1b\\sixel", "sixel"),
            ("\x1b_apc\x1b\\x", "x"),
            ("\x1b(Bcharset", "charset"),
            ("\x1b7saved\x1b8", "saved"),
            ("\x1bccreset", "creset"),
            ("\u{9b}31mc1", "c1"),
            ("\u{9d}0;t\u{9c}osc", "osc"),
            ("bell\x07 back\x08 null\0", "bell back null"),
            ("\x1b[31;1;4:3m", ""),
        ];
        for (input, expected) in cases {
            let out = html(input);
            assert!(clean(&out), "{input:?} -> {out:?}");
            let text: String = out
                .split('<')
                .map(|part| part.split_once('>').map_or(part, |(_, t)| t))
                .collect();
            assert_eq!(text, format!("{expected}\n"), "{input:?} -> {out:?}");
            assert!(!out.contains("evil") && !out.contains("javascript"));
        }
    }

    #[test]
    fn carriage_returns_show_the_last_state_and_keep_its_style() {
        assert_eq!(html("10%\r50%\r100%\n"), "100%\n");
        assert_eq!(
            html("\x1b[32mgreen\rdone\n"),
            "<span class=\"fg2\">done</span>\n"
        );
        assert_eq!(html("windows\r\n"), "windows\n");
        assert_eq!(html("a\tb"), "a\tb\n");
    }

    #[test]
    fn random_bytes_never_leave_a_control_character_or_raw_markup() {
        // A small deterministic generator: no crate for it.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let alphabet = [
            '\x1b', '[', ']', ';', ':', '3', '8', '5', '2', 'm', 'H', '\x07', '\\', '<', '&', '\r',
            '\n', 'a', '\u{9b}', '\u{9c}', '?', 'P',
        ];
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..40 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let out = html(&text);
            assert!(clean(&out), "{text:?} -> {out:?}");
            assert!(
                !out.contains("<a")
                    && !out
                        .replace("<span", "")
                        .replace("</span>", "")
                        .contains('<'),
                "{text:?} -> {out:?}"
            );
            assert_eq!(
                out.matches("<span").count(),
                out.matches("</span>").count(),
                "{text:?} -> {out:?}"
            );
        }
    }
}
