//! Terminal escape sequences, recognised one character at a time: the one scanner under both the
//! report (which renders colours as HTML, `report::ansi`) and the terminal filter (which lets colours
//! reach a person's terminal and nothing else, [`TerminalFilter`]).
//!
//! The [`Scanner`] turns characters into [`Token`]s: text, lone control characters, and complete SGR
//! sequences (`ESC [ … m`, colours and weights) with their numeric parameters. Everything else — other
//! CSI sequences (cursor moves, erasing, private modes), OSC (titles, OSC 8 links, OSC 52 clipboard
//! writes), DCS/SOS/PM/APC strings, two- and three-byte escapes, and the 8-bit C1 forms of all of them
//! — is consumed and yields nothing. A control character inside a sequence ends it and counts as
//! itself (so a newline is never swallowed); any other character that cannot be in the sequence ends
//! it and goes with it. A string (OSC, DCS, …) ends at BEL, ST (`ESC \` or U+009C), or a line's end.
//!
//! Its state is bounded whatever it is fed: at most [`MAX_PARAMS`] parameters of at most
//! [`MAX_PARAMS`] numbers each are kept, numbers saturate, and string contents are never kept.

use std::io::Write;

/// The most parameters of one CSI sequence kept (and numbers of one parameter joined by `:`); the
/// rest are ignored, so a sequence of a million `;` costs no more than it is long.
pub const MAX_PARAMS: usize = 32;

/// One parameter of an SGR sequence: a number, or numbers joined by colons (`38:2::r:g:b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Plain(u32),
    Sub(Vec<u32>),
}

impl Param {
    /// The parameter's (first) number.
    pub fn value(&self) -> u32 {
        match self {
            Param::Plain(v) => *v,
            Param::Sub(subs) => subs.first().copied().unwrap_or(0),
        }
    }
}

/// What a character adds to the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A character that is not a control character.
    Text(char),
    /// A control character outside any sequence: tab, newline, carriage return, backspace, bell, NUL,
    /// DEL, a C1 control that starts no sequence, …
    Control(char),
    /// The end of a complete SGR sequence (7- or 8-bit) whose parameters are all numbers; an empty
    /// sequence (`ESC [ m`) has one parameter, 0.
    Sgr(Vec<Param>),
    /// The end of any other complete CSI sequence, or of a two- or three-byte escape (`ESC 7`,
    /// `ESC ( B`). Strings (OSC, DCS, …) and broken sequences end without a token.
    Escape,
}

/// Where the scanner is.
#[derive(Debug, Default)]
enum State {
    #[default]
    Ground,
    /// After ESC; `intermediates`: after bytes from space to `/` too.
    Escape {
        intermediates: bool,
    },
    Csi(Csi),
    /// Inside OSC, DCS, SOS, PM or APC: up to its terminator.
    Str,
    /// ESC inside a string: `\` completes ST.
    StrEscape,
}

/// The parameters of a CSI sequence so far.
#[derive(Debug, Default)]
struct Csi {
    /// Something other than digits, `;` and `:` came: not SGR.
    other: bool,
    params: Vec<Param>,
    /// The numbers of the current parameter before its last `:`.
    subs: Vec<u32>,
    number: u32,
    colon: bool,
}

impl Csi {
    fn end_param(&mut self) {
        if self.params.len() < MAX_PARAMS {
            let param = if self.colon {
                let mut subs = std::mem::take(&mut self.subs);
                if subs.len() < MAX_PARAMS {
                    subs.push(self.number);
                }
                Param::Sub(subs)
            } else {
                Param::Plain(self.number)
            };
            self.params.push(param);
        }
        self.subs.clear();
        self.number = 0;
        self.colon = false;
    }
}

/// What one character did to the scanner.
enum Step {
    Done(Option<Token>),
    /// The character ended a sequence without being part of it: look at it again from the ground.
    Again,
}

/// The most characters of a sequence a scanner that keeps them keeps ([`Scanner::keeping`]); a longer
/// sequence is not kept ([`Scanner::sequence`] is `None`).
pub const MAX_KEPT: usize = 256;

/// The state machine; see the module's documentation.
#[derive(Debug, Default)]
pub struct Scanner {
    state: State,
    /// Keep the characters of the sequence in progress ([`Scanner::sequence`]).
    keep: bool,
    kept: String,
    too_long: bool,
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner::default()
    }

    /// A scanner that also keeps the characters of each sequence, up to [`MAX_KEPT`], for a caller
    /// that passes some sequences on as they came.
    pub fn keeping() -> Scanner {
        Scanner {
            keep: true,
            ..Scanner::default()
        }
    }

    /// After [`Token::Sgr`] or [`Token::Escape`] from a scanner that keeps them: the sequence's
    /// characters, if it was at most [`MAX_KEPT`] long.
    pub fn sequence(&self) -> Option<&str> {
        (self.keep && !self.too_long).then_some(self.kept.as_str())
    }

    /// Whether no sequence is in progress.
    pub fn in_ground(&self) -> bool {
        matches!(self.state, State::Ground)
    }

    /// Feeds one character; what it adds to the text, if anything.
    pub fn feed(&mut self, c: char) -> Option<Token> {
        loop {
            let in_sequence = !self.in_ground();
            match self.step(c) {
                Step::Done(token) => {
                    if self.keep && (in_sequence || !self.in_ground()) {
                        self.keep_char(c, in_sequence);
                    }
                    return token;
                }
                Step::Again => self.state = State::Ground,
            }
        }
    }

    fn keep_char(&mut self, c: char, in_sequence: bool) {
        if !in_sequence {
            self.kept.clear();
            self.too_long = false;
        }
        if self.kept.len() + c.len_utf8() > MAX_KEPT {
            self.too_long = true;
        } else if !self.too_long {
            self.kept.push(c);
        }
    }

    /// Forgets a sequence in progress: cut off here, it is dropped whole.
    pub fn reset(&mut self) {
        self.state = State::Ground;
    }

    fn step(&mut self, c: char) -> Step {
        match &mut self.state {
            State::Ground => Step::Done(self.ground(c)),
            State::Escape { intermediates } => {
                let after_esc = !*intermediates;
                self.state = match c {
                    '[' if after_esc => State::Csi(Csi::default()),
                    ']' | 'P' | 'X' | '^' | '_' if after_esc => State::Str,
                    ' '..='/' => State::Escape {
                        intermediates: true,
                    },
                    '0'..='~' => {
                        self.state = State::Ground;
                        return Step::Done(Some(Token::Escape));
                    }
                    _ => return Step::Again,
                };
                Step::Done(None)
            }
            State::Csi(csi) => match c {
                '0'..='9' => {
                    let digit = u32::from(c) - u32::from('0');
                    csi.number = csi.number.saturating_mul(10).saturating_add(digit);
                    Step::Done(None)
                }
                ':' => {
                    if csi.subs.len() < MAX_PARAMS {
                        csi.subs.push(csi.number);
                    }
                    csi.number = 0;
                    csi.colon = true;
                    Step::Done(None)
                }
                ';' => {
                    csi.end_param();
                    Step::Done(None)
                }
                ' '..='?' => {
                    csi.other = true;
                    Step::Done(None)
                }
                '@'..='~' => {
                    let token = if c == 'm' && !csi.other {
                        csi.end_param();
                        Token::Sgr(std::mem::take(&mut csi.params))
                    } else {
                        Token::Escape
                    };
                    self.state = State::Ground;
                    Step::Done(Some(token))
                }
                c if c.is_control() => Step::Again,
                // Anything else breaks the sequence and goes with it.
                _ => {
                    self.state = State::Ground;
                    Step::Done(None)
                }
            },
            State::Str => match c {
                '\x07' | '\u{9c}' => {
                    self.state = State::Ground;
                    Step::Done(None)
                }
                '\x1b' => {
                    self.state = State::StrEscape;
                    Step::Done(None)
                }
                '\n' | '\r' => Step::Again,
                _ => Step::Done(None),
            },
            State::StrEscape => {
                if c == '\\' {
                    self.state = State::Ground;
                    Step::Done(None)
                } else {
                    Step::Again
                }
            }
        }
    }

    fn ground(&mut self, c: char) -> Option<Token> {
        self.state = match c {
            '\x1b' => State::Escape {
                intermediates: false,
            },
            '\u{9b}' => State::Csi(Csi::default()),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => State::Str,
            c if c.is_control() => return Some(Token::Control(c)),
            c => return Some(Token::Text(c)),
        };
        None
    }
}

/// Step output made fit for a person's terminal, chunk by chunk, as `less -R` shows it: text, tab,
/// newline, carriage return, backspace and colours (SGR, written anew from their numbers) pass; every
/// other control character and escape sequence — OSC 52 (the clipboard), OSC 8 links, titles, cursor
/// moves, DCS, APC, PM, SOS, C1 controls raw or UTF-8 encoded — is dropped. Bytes that are not UTF-8
/// become U+FFFD, so nothing the terminal could read as an 8-bit control gets through. A sequence
/// split between two chunks is recognised all the same; the state kept between chunks is bounded.
///
/// [`TerminalFilter::for_pty`] is the filter of `debug`'s own terminal, where an editor or a pager
/// runs: there every CSI sequence, two- and three-byte escape and C0 control passes as it came, and
/// only strings (OSC, DCS, APC, PM, SOS) and C1 controls are dropped.
#[derive(Debug, Default)]
pub struct TerminalFilter {
    utf8: Utf8,
    scanner: Scanner,
    pty: bool,
    /// A colour (or hidden, blinking… text) is on since the last reset: it ends with its line, so a
    /// step's `ESC[8m` (hidden) cannot reach the run's own lines after it and hide the result.
    coloured: bool,
}

impl TerminalFilter {
    pub fn new() -> TerminalFilter {
        TerminalFilter::default()
    }

    /// The filter of a pseudo-terminal's output relayed to the operator's (`debug`).
    pub fn for_pty() -> TerminalFilter {
        TerminalFilter {
            scanner: Scanner::keeping(),
            pty: true,
            ..TerminalFilter::default()
        }
    }

    /// Appends what of `bytes` may reach the terminal to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.reserve(bytes.len());
        let TerminalFilter {
            utf8,
            scanner,
            pty,
            coloured,
        } = self;
        for &b in bytes {
            // Plain text, the bulk of any log, goes straight through.
            if (0x20..0x7f).contains(&b) && utf8.need == 0 && scanner.in_ground() {
                out.push(b);
                continue;
            }
            utf8.push(b, &mut |c| {
                let token = scanner.feed(c);
                if *pty {
                    shown_on_pty(token, scanner, out);
                    return;
                }
                match &token {
                    Some(Token::Control('\n')) if *coloured => {
                        out.extend_from_slice(b"\x1b[0m");
                        *coloured = false;
                    }
                    Some(Token::Sgr(params)) => {
                        *coloured = !matches!(params.as_slice(), [] | [Param::Plain(0)]);
                    }
                    _ => {}
                }
                shown(token, out);
            });
        }
    }
}

/// What a token puts on the operator's terminal from `debug`'s pty.
fn shown_on_pty(token: Option<Token>, scanner: &Scanner, out: &mut Vec<u8>) {
    match token {
        Some(Token::Control(c)) if c < '\u{80}' => out.push(c as u8),
        Some(Token::Sgr(_) | Token::Escape) => {
            // As it came, the 8-bit CSI made 7-bit; a sequence too long to keep is dropped.
            if let Some(sequence) = scanner.sequence() {
                match sequence.strip_prefix('\u{9b}') {
                    Some(rest) => {
                        out.extend_from_slice(b"\x1b[");
                        out.extend_from_slice(rest.as_bytes());
                    }
                    None => out.extend_from_slice(sequence.as_bytes()),
                }
            }
        }
        token => shown(token, out),
    }
}

/// What a token puts on the terminal.
fn shown(token: Option<Token>, out: &mut Vec<u8>) {
    match token {
        Some(Token::Text(c)) => {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        Some(Token::Control(c @ ('\n' | '\r' | '\t' | '\x08'))) => out.push(c as u8),
        Some(Token::Sgr(params)) => {
            out.extend_from_slice(b"\x1b[");
            for (i, param) in params.iter().enumerate() {
                if i > 0 {
                    out.push(b';');
                }
                match param {
                    Param::Plain(v) => {
                        let _ = write!(out, "{v}");
                    }
                    Param::Sub(subs) => {
                        for (j, v) in subs.iter().enumerate() {
                            let _ = write!(out, "{}{v}", if j > 0 { ":" } else { "" });
                        }
                    }
                }
            }
            out.push(b'm');
        }
        Some(Token::Control(_) | Token::Escape) | None => {}
    }
}

/// A UTF-8 decoder fed byte by byte (WHATWG's): each invalid byte or cut-off sequence is U+FFFD.
#[derive(Debug, Default)]
struct Utf8 {
    code: u32,
    /// Continuation bytes still needed.
    need: u8,
    /// The range the next continuation byte must be in.
    lower: u8,
    upper: u8,
}

impl Utf8 {
    fn push(&mut self, b: u8, emit: &mut impl FnMut(char)) {
        if self.need == 0 {
            (self.lower, self.upper) = (0x80, 0xbf);
            match b {
                0x00..=0x7f => emit(char::from(b)),
                0xc2..=0xdf => (self.need, self.code) = (1, u32::from(b & 0x1f)),
                0xe0..=0xef => {
                    (self.need, self.code) = (2, u32::from(b & 0x0f));
                    match b {
                        0xe0 => self.lower = 0xa0,
                        0xed => self.upper = 0x9f,
                        _ => {}
                    }
                }
                0xf0..=0xf4 => {
                    (self.need, self.code) = (3, u32::from(b & 0x07));
                    match b {
                        0xf0 => self.lower = 0x90,
                        0xf4 => self.upper = 0x8f,
                        _ => {}
                    }
                }
                _ => emit(char::REPLACEMENT_CHARACTER),
            }
            return;
        }
        if b < self.lower || b > self.upper {
            // The sequence is cut off; this byte starts afresh.
            self.need = 0;
            emit(char::REPLACEMENT_CHARACTER);
            return self.push(b, emit);
        }
        (self.lower, self.upper) = (0x80, 0xbf);
        self.code = (self.code << 6) | u32::from(b & 0x3f);
        self.need -= 1;
        if self.need == 0 {
            emit(char::from_u32(self.code).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
    }
}

/// A writer that passes what it is given through a [`TerminalFilter`]: `logs` on a terminal.
pub struct FilteredWriter<W: Write> {
    inner: W,
    filter: TerminalFilter,
    buf: Vec<u8>,
}

impl<W: Write> FilteredWriter<W> {
    pub fn new(inner: W, filter: TerminalFilter) -> FilteredWriter<W> {
        FilteredWriter {
            inner,
            filter,
            buf: Vec::new(),
        }
    }
}

impl<W: Write> Write for FilteredWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.clear();
        self.filter.push(bytes, &mut self.buf);
        self.inner.write_all(&self.buf)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filtered(chunks: &[&[u8]]) -> Vec<u8> {
        let mut filter = TerminalFilter::new();
        let mut out = Vec::new();
        for chunk in chunks {
            filter.push(chunk, &mut out);
        }
        out
    }

    fn one(bytes: &[u8]) -> String {
        String::from_utf8(filtered(&[bytes])).unwrap()
    }

    #[test]
    fn colours_and_plain_controls_pass() {
        assert_eq!(one(b"\x1b[31mred\x1b[0m\n"), "\x1b[31mred\x1b[0m\n");
        assert_eq!(one(b"\x1b[mx"), "\x1b[0mx");
        assert_eq!(one(b"\x1b[38;2;1;2;3mx"), "\x1b[38;2;1;2;3mx");
        assert_eq!(one(b"\x1b[38:2::1:2:3mx"), "\x1b[38:2:0:1:2:3mx");
        assert_eq!(one(b"a\tb\rc\x08d\n"), "a\tb\rc\x08d\n");
        assert_eq!(one("π é ✓ 😀\n".as_bytes()), "π é ✓ 😀\n");
    }

    #[test]
    fn every_other_sequence_and_control_is_dropped() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x1b]52;c;aGVsbG8=\x07after", "after"),
            (b"\x1b]52;c;aGVsbG8=\x1b\\after", "after"),
            (b"\x1b]0;pwned title\x07x", "x"),
            (
                b"\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\",
                "link",
            ),
            (b"\x1b[2J\x1b[Hclear\x1b[1A\x1b[?25l", "clear"),
            (b"\x1b[?1;2mprivate", "private"),
            (b"\x1bPq#0;2\x1b\\dcs", "dcs"),
            (b"\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\x", "x"),
            (b"\x1b(B\x1b7\x1b8\x1bcesc", "esc"),
            (b"bell\x07 nul\0 del\x7f", "bell nul del"),
            // C1 controls, UTF-8 encoded: CSI, OSC with ST, NEL.
            (
                "\u{9b}2Jc1\u{9d}0;t\u{9c}osc\u{85}nel".as_bytes(),
                "c1oscnel",
            ),
            // Raw 8-bit C1 bytes are not UTF-8: each is made U+FFFD, never a control.
            (b"\x9b2J\x9d0;t\x07", "\u{fffd}2J\u{fffd}0;t"),
            // An overlong form of U+009B is no way round.
            (b"\xc2\x9b31m\xe0\x82\x9bx", "\u{fffd}\u{fffd}\u{fffd}x"),
        ];
        for (input, expected) in cases {
            let out = filtered(&[input]);
            let text = String::from_utf8(out).unwrap();
            let text = text.replace("\x1b[31m", "");
            assert_eq!(&text, expected, "{input:?}");
            assert!(
                !text.contains('\x1b') && !text.chars().any(|c| ('\u{80}'..'\u{a0}').contains(&c)),
                "{input:?}"
            );
        }
    }

    #[test]
    fn a_colour_ends_with_its_line() {
        // Hidden text (or black on black) cannot reach the next line, the run's result.
        assert_eq!(
            one(b"ok\n\x1b[8m\n==> app #1 failure\n"),
            "ok\n\x1b[8m\x1b[0m\n==> app #1 failure\n"
        );
        assert_eq!(one(b"\x1b[8;30;40mx\ny\n"), "\x1b[8;30;40mx\x1b[0m\ny\n");
        // A line that reset its colours itself gets nothing added.
        assert_eq!(
            one(b"\x1b[31mred\x1b[0m\nplain\n"),
            "\x1b[31mred\x1b[0m\nplain\n"
        );
        // `debug`'s terminal (an editor, a pager) keeps its colours across lines.
        let mut pty = TerminalFilter::for_pty();
        let mut out = Vec::new();
        pty.push(b"\x1b[7mx\ny", &mut out);
        assert_eq!(out, b"\x1b[7mx\ny");
    }

    #[test]
    fn an_8bit_sgr_is_written_as_a_7bit_one() {
        assert_eq!(one("\u{9b}32mok".as_bytes()), "\x1b[32mok");
    }

    #[test]
    fn sequences_split_between_chunks_are_recognised() {
        let input = "a\x1b]52;c;Zm9v\x07b\x1b[31mc\x1b]0;t\x1b\\d π\x1b[?25le\n".as_bytes();
        let whole = filtered(&[input]);
        assert_eq!(whole, "ab\x1b[31mcd πe\x1b[0m\n".as_bytes());
        for cut in 0..input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(filtered(&[a, b]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(filtered(&bytes), whole, "byte by byte");
    }

    #[test]
    fn a_newline_ends_every_sequence_and_stays() {
        assert_eq!(one(b"\x1b]0;never ends\nnext"), "\nnext");
        assert_eq!(one(b"\x1b[3\nnext"), "\nnext");
        assert_eq!(one(b"\x1b\nnext"), "\nnext");
        assert_eq!(one(b"\xe2\x82\nnext"), "\u{fffd}\nnext");
        // An escape inside a sequence starts a new one.
        assert_eq!(one(b"\x1b[3\x1b[32mx"), "\x1b[32mx");
    }

    #[test]
    fn a_pty_keeps_its_cursor_and_screen_sequences_but_no_string_or_c1() {
        let mut filter = TerminalFilter::for_pty();
        let mut out = Vec::new();
        let input = "\x1b[?1049h\x1b[H\x1b[2J\x1b7\x1b(B\x1b[31mvi\x1b[0m\x07\r\n\
                     \x1b]52;c;Zm9v\x07\x1b]0;title\x1b\\\x1bPdcs\x1b\\\u{9d}8;;x\u{9c}\u{85}\u{9b}1;2H";
        for chunk in input.as_bytes().chunks(3) {
            filter.push(chunk, &mut out);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\x1b[?1049h\x1b[H\x1b[2J\x1b7\x1b(B\x1b[31mvi\x1b[0m\x07\r\n\x1b[1;2H"
        );
        // A sequence longer than is kept is dropped whole.
        let mut out = Vec::new();
        filter.push(
            format!("\x1b[{}Hx", "1".repeat(MAX_KEPT)).as_bytes(),
            &mut out,
        );
        assert_eq!(out, b"x");
    }

    #[test]
    fn state_stays_bounded() {
        let mut filter = TerminalFilter::new();
        let mut out = Vec::new();
        let many = "1:".repeat(100_000);
        filter.push(
            format!("\x1b[{many};{}m", "2;".repeat(100_000)).as_bytes(),
            &mut out,
        );
        assert!(out.len() < 2 * MAX_PARAMS * MAX_PARAMS, "{}", out.len());
        let osc = vec![b'x'; 1 << 20];
        out.clear();
        filter.push(b"\x1b]0;", &mut out);
        filter.push(&osc, &mut out);
        filter.push(b"\x07after", &mut out);
        assert_eq!(out, b"after");
    }

    #[test]
    fn random_bytes_never_leave_an_escape_but_sgr() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet: &[u8] = b"\x1b[];:38m5H\x07\\\r\n?Pa\x9b\x9c\xc2\x9d_";
        for _ in 0..3000 {
            let mut input = Vec::new();
            for _ in 0..40 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let out = String::from_utf8(filtered(&[&input])).unwrap();
            // Take every SGR out: what is left has no escape and no control but \n \r.
            let mut rest = String::new();
            let mut parts = out.split("\x1b[");
            rest.push_str(parts.next().unwrap());
            for part in parts {
                let (params, after) = part.split_once('m').expect("an SGR");
                assert!(
                    params
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ';' || c == ':'),
                    "{input:?} -> {out:?}"
                );
                rest.push_str(after);
            }
            assert!(
                !rest
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\r'),
                "{input:?} -> {out:?}"
            );
        }
    }
}
