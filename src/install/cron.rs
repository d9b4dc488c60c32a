//! `configure cron`: what the systemd timer does, for a machine without systemd (containers, small
//! VMs): one crontab line that runs `tick` every interval, never twice at once.
//!
//! The timer's service is a oneshot, so systemd never starts a tick while the last one still runs;
//! cron would. The line therefore holds a lock with `flock -n` (util-linux) on the data directory
//! itself — which only phantom_ci's user may open (0711 or 0700: a step's user cannot take the lock
//! and so hold every tick back), and which needs no file of its own — and a tick that finds it held
//! does nothing. Cron has no path unit: a
//! pusher's spool note waits for the next tick.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::dirs::Dirs;

/// The comment line before phantom_ci's line, by which `configure cron` finds it again.
pub const MARKER: &str =
    "# phantom_ci: written by `phantom_ci configure cron`; run it again to change the next line";

/// The system crontab phantom_ci writes for `--system`.
pub const SYSTEM_FILE: &str = "/etc/cron.d/phantom_ci";

/// The five time fields for `every`: a whole number of minutes that divides an hour, or of hours
/// that divides a day (what cron can say with one line).
pub fn schedule(every: Duration) -> Result<String, String> {
    let secs = every.as_secs();
    let minutes = secs / 60;
    let refuse = || {
        Err(format!(
            "cron cannot run something every {}: choose a number of minutes that divides an hour \
             (1m, 2m, 5m, 10m, 15m, 30m…) or of hours that divides a day (1h, 2h, 6h, 12h, 24h)",
            humantime::format_duration(every)
        ))
    };
    if !secs.is_multiple_of(60) || minutes == 0 {
        return refuse();
    }
    match minutes {
        1 => Ok("* * * * *".into()),
        m if m < 60 && 60u64.is_multiple_of(m) => Ok(format!("*/{m} * * * *")),
        m if m.is_multiple_of(60) && 24u64.is_multiple_of(m / 60) => match m / 60 {
            1 => Ok("0 * * * *".into()),
            24 => Ok("0 0 * * *".into()),
            h => Ok(format!("0 */{h} * * *")),
        },
        _ => refuse(),
    }
}

/// The lock the line holds while `tick` runs: the data directory.
pub fn lock(dirs: &Dirs) -> PathBuf {
    dirs.data.clone()
}

/// phantom_ci's entry: the marker line and the crontab line. `user` is the user field of a system
/// crontab (`/etc/cron.d`), `None` in a user's own crontab. The command's stdout (the runs' output,
/// which the records have) is dropped; its stderr is what cron mails, as the journal would show it.
pub fn entry(
    binary: &Path,
    dirs: &Dirs,
    every: Duration,
    user: Option<&str>,
) -> Result<String, String> {
    let words = [
        "flock".into(),
        "-n".into(),
        lock(dirs).to_string_lossy().into_owned(),
        binary.to_string_lossy().into_owned(),
        "--config-dir".into(),
        dirs.config.to_string_lossy().into_owned(),
        "--data-dir".into(),
        dirs.data.to_string_lossy().into_owned(),
        "tick".into(),
    ];
    let command: Vec<String> = words
        .iter()
        .map(|w| shell_words::quote(w).replace('%', "\\%"))
        .collect();
    let user = user.map_or(String::new(), |u| format!(" {u}"));
    Ok(format!(
        "{MARKER}\n{}{user} {} >/dev/null\n",
        schedule(every)?,
        command.join(" ")
    ))
}

/// `crontab` with phantom_ci's entry replaced by `entry` (or appended): every other line as it was.
pub fn replace_entry(crontab: &str, entry: &str) -> String {
    let mut out = String::new();
    let mut lines = crontab.lines();
    while let Some(line) = lines.next() {
        if line == MARKER {
            lines.next();
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(entry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_cron_can_say_and_those_it_cannot() {
        let s = |secs| schedule(Duration::from_secs(secs));
        assert_eq!(s(300).unwrap(), "*/5 * * * *");
        assert_eq!(s(60).unwrap(), "* * * * *");
        assert_eq!(s(3600).unwrap(), "0 * * * *");
        assert_eq!(s(6 * 3600).unwrap(), "0 */6 * * *");
        assert_eq!(s(86400).unwrap(), "0 0 * * *");
        for bad in [0, 30, 90, 7 * 60, 5 * 3600, 2 * 86400] {
            assert!(s(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_entry_is_one_line_with_the_lock_and_percent_signs_escaped() {
        let dirs = Dirs {
            config: "/etc/phantom ci".into(),
            data: "/var/lib/100%".into(),
        };
        let entry = entry(
            Path::new("/usr/bin/phantom_ci"),
            &dirs,
            Duration::from_secs(300),
            Some("root"),
        )
        .unwrap();
        let lines: Vec<&str> = entry.lines().collect();
        assert_eq!(lines[0], MARKER);
        assert_eq!(
            lines[1],
            "*/5 * * * * root flock -n '/var/lib/100\\%' /usr/bin/phantom_ci \
             --config-dir '/etc/phantom ci' --data-dir '/var/lib/100\\%' tick >/dev/null"
        );
    }

    #[test]
    fn replacing_keeps_every_other_line_and_leaves_one_entry() {
        let entry = format!("{MARKER}\n*/5 * * * * new\n");
        let before = format!("MAILTO=ops\n{MARKER}\n*/10 * * * * old\n0 1 * * * backup\n");
        let after = replace_entry(&before, &entry);
        assert_eq!(after, format!("MAILTO=ops\n0 1 * * * backup\n{entry}"));
        assert_eq!(replace_entry(&after, &entry), after);
    }
}
