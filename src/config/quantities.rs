//! Human-written durations ("90s", "10m", "2h") and sizes ("64MiB", "10G") in configuration files.
//!
//! Both deserialize straight from TOML strings, so a bad value is reported by the TOML parser with the
//! file, line and column of the value.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// The longest duration accepted anywhere (timeouts, intervals): a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration written like `"90s"`, `"10m"`, `"1h 30m"` (humantime syntax), never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(text: &str) -> Result<HumanDuration, String> {
        let trimmed = text.trim();
        let shown = crate::describe::terminal(text);
        // A bare number: seconds to one reader, minutes to another (and milliseconds to humantime).
        if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(format!(
                "`{shown}` has no unit: write `{trimmed}s` or `{trimmed}min`"
            ));
        }
        let duration = humantime::parse_duration(trimmed).map_err(|_| {
            format!("`{shown}` is not a duration: write it like \"90s\", \"10m\" or \"2h\"")
        })?;
        if duration.is_zero() {
            return Err(format!("`{shown}` is zero: give a positive duration"));
        }
        if duration > MAX_DURATION {
            return Err(format!(
                "`{shown}` is longer than a year: give at most \"365d\""
            ));
        }
        Ok(HumanDuration(duration))
    }
}

/// A duration's value as written: its text; a bare number (`timeout = 15`) is read as the same
/// number written as text, which is then refused with the units to write — never "invalid type:
/// integer, expected a string".
fn duration_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct Text;
    impl de::Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration written like \"90s\", \"10m\" or \"2h\"")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
            Ok(text.to_string())
        }
        fn visit_i64<E: de::Error>(self, number: i64) -> Result<String, E> {
            Ok(number.to_string())
        }
        fn visit_u64<E: de::Error>(self, number: u64) -> Result<String, E> {
            Ok(number.to_string())
        }
        fn visit_f64<E: de::Error>(self, number: f64) -> Result<String, E> {
            Ok(number.to_string())
        }
    }
    deserializer.deserialize_any(Text)
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = duration_text(deserializer)?;
        HumanDuration::parse(&text).map_err(de::Error::custom)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A duration that may be `"0"` (off): `keep_failed`. `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepFor(pub Option<Duration>);

impl KeepFor {
    pub fn parse(text: &str) -> Result<KeepFor, String> {
        if text.trim() == "0" {
            return Ok(KeepFor(None));
        }
        HumanDuration::parse(text)
            .map(|d| KeepFor(Some(d.0)))
            .map_err(|e| format!("{e} (or \"0\" for off)"))
    }
}

impl<'de> Deserialize<'de> for KeepFor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = duration_text(deserializer)?;
        KeepFor::parse(&text).map_err(de::Error::custom)
    }
}

/// A size in bytes written like `"64MiB"`, `"10G"`, `"512k"` or a bare number of bytes.
/// `K`/`M`/`G`/`T` and `KiB`/`MiB`/… are both powers of 1024; `KB`/`MB`/… are powers of 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let bad = || format!("invalid size `{text}`; write it like \"64MiB\", \"10G\" or \"4096\"");
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => return Err(bad()),
        };
        number.checked_mul(multiplier).map(ByteSize).ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly (`100MiB`), else bytes (`1000B`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
        for (shift, unit) in units {
            if self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A whole number that is not negative (`keep_runs`, `nofile`, …), with messages in the user's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Count(pub u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number such as 100")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                u64::try_from(v)
                    .map(Count)
                    .map_err(|_| E::custom("the number cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            HumanDuration::parse("90s").unwrap().0,
            Duration::from_secs(90)
        );
        assert_eq!(
            HumanDuration::parse("1h 30m").unwrap().0,
            Duration::from_secs(5400)
        );
        assert!(HumanDuration::parse("0s").is_err());
        assert!(HumanDuration::parse("365d").is_ok());
        assert!(HumanDuration::parse("500000000000years").is_err());
        assert_eq!(
            HumanDuration::parse("soon").unwrap_err(),
            "`soon` is not a duration: write it like \"90s\", \"10m\" or \"2h\""
        );
        assert_eq!(
            HumanDuration::parse("10 parsecs").unwrap_err(),
            "`10 parsecs` is not a duration: write it like \"90s\", \"10m\" or \"2h\""
        );
        // One hint for a bare number, in units systemd reads the same way; never "ms".
        assert_eq!(
            HumanDuration::parse("15").unwrap_err(),
            "`15` has no unit: write `15s` or `15min`"
        );
        assert!(HumanDuration::parse("15min").is_ok());
        assert!(HumanDuration::parse("0s").unwrap_err().contains("is zero"));
    }

    #[test]
    fn a_bare_number_in_toml_gets_the_same_hint_as_a_bare_number_in_quotes() {
        #[derive(Debug, Deserialize)]
        struct Section {
            #[allow(dead_code)]
            timeout: HumanDuration,
        }
        for value in ["15", "\"15\""] {
            let e = toml::from_str::<Section>(&format!("timeout = {value}\n")).unwrap_err();
            assert!(
                e.message()
                    .contains("`15` has no unit: write `15s` or `15min`"),
                "{value}: {e}"
            );
        }
        let e = toml::from_str::<Section>("timeout = true\n").unwrap_err();
        assert!(
            e.message().contains("expected a duration written like"),
            "{e}"
        );
        assert!(toml::from_str::<Section>("timeout = \"15s\"\n").is_ok());
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64MiB").unwrap().0, 64 << 20);
        assert_eq!(ByteSize::parse("10G").unwrap().0, 10 << 30);
        assert_eq!(ByteSize::parse("1kb").unwrap().0, 1000);
        assert_eq!(ByteSize::parse("4096").unwrap().0, 4096);
        assert!(ByteSize::parse("64 parsecs").is_err());
        assert!(ByteSize::parse("99999999999T").is_err());
        assert_eq!(ByteSize(100 << 20).to_string(), "100MiB");
        assert_eq!(ByteSize(4 << 30).to_string(), "4GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(ByteSize(0).to_string(), "0B");
    }
}
