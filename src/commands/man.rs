//! `phantom_ci man [SUBCOMMAND…] [--dir DIR]`: the manual pages, in roff, from the same clap definitions
//! as `--help` (clap_mangen), with the sections the command line cannot know — FILES, ENVIRONMENT,
//! EXIT STATUS, SEE ALSO — written here. `phantom_ci man tick | man -l -` shows one page;
//! `--dir DIR` writes every page (`phantom_ci.1`, `phantom_ci-tick.1`, `phantom_ci-configure-cron.1`,
//! …), as a package installs them.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{Error, ExitStatus};

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print, e.g. `tick` or `configure cron` (default: phantom_ci's own)
    #[arg(value_name = "SUBCOMMAND")]
    pub path: Vec<String>,
    /// Write every page into DIR as `<name>.1` instead of printing one
    #[arg(long, value_name = "DIR", conflicts_with = "path")]
    pub dir: Option<PathBuf>,
}

/// `command` is phantom_ci's whole command line, as the faces define it.
pub fn run(args: ManArgs, command: clap::Command) -> Result<ExitStatus, Error> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    if let Some(dir) = &args.dir {
        return write_all(&command, dir);
    }
    let mut page = &command;
    for word in &args.path {
        page = page
            .get_subcommands()
            .find(|sub| sub.get_name() == word && !sub.is_hide_set())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "`{}` has no subcommand `{}`; `phantom_ci --help` lists them",
                    page.get_display_name().unwrap_or(page.get_name()),
                    crate::describe::terminal(word)
                ))
            })?;
    }
    let text = render(page)?;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`phantom_ci man | head`) is not an error worth reporting.
    let _ = stdout.write_all(&text).and_then(|()| stdout.flush());
    Ok(ExitStatus::Success)
}

/// Every page: the command's and each visible subcommand's, recursively.
fn write_all(command: &clap::Command, dir: &Path) -> Result<ExitStatus, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let mut pending = vec![command];
    while let Some(page) = pending.pop() {
        pending.extend(page.get_subcommands().filter(|s| !s.is_hide_set()));
        let path = dir.join(clap_mangen::Man::new(page.clone()).get_filename());
        std::fs::write(&path, render(page)?).map_err(|e| Error::io("cannot write", &path, e))?;
    }
    Ok(ExitStatus::Success)
}

/// One page: clap_mangen's sections, then the hand-written ones.
fn render(page: &clap::Command) -> Result<Vec<u8>, Error> {
    let failed = |e: std::io::Error| Error::Other(format!("cannot render the manual page: {e}"));
    let name = page.get_display_name().unwrap_or(page.get_name());
    let mut text = Vec::new();
    clap_mangen::Man::new(page.clone())
        .title(name)
        .source(format!("phantom_ci {}", env!("CARGO_PKG_VERSION")))
        .manual("phantom_ci")
        .render(&mut text)
        .map_err(failed)?;
    text.extend_from_slice(FILES.as_bytes());
    text.extend_from_slice(ENVIRONMENT.as_bytes());
    if name == "phantom_ci-poke" {
        text.extend_from_slice(POKE_ENVIRONMENT.as_bytes());
    }
    if name == "phantom_ci-hook" {
        text.extend_from_slice(HOOK_ENVIRONMENT.as_bytes());
    }
    text.extend_from_slice(EXIT_STATUS.as_bytes());
    if OUTPUT_ONLY.contains(&name) {
        text.extend_from_slice(EXIT_STATUS_PIPE.as_bytes());
    }
    text.extend_from_slice(see_also(page, name).as_bytes());
    Ok(text)
}

/// The pages that only print: a closed standard output ends them as it ends `git log`.
const OUTPUT_ONLY: &[&str] = &[
    "phantom_ci-list",
    "phantom_ci-status",
    "phantom_ci-logs",
    "phantom_ci-check",
    "phantom_ci-completions",
];

const FILES: &str = r#".SH FILES
.TP
\fI~/.config/phantom_ci/Repo.toml\fR, \fI~/.config/phantom_ci/.env\fR
The repos to run and their settings; webhooks and global options (dotenv syntax, never given to steps).
.TP
\fI~/.local/share/phantom_ci/\fR
Everything phantom_ci keeps: run records (\fIruns/<repo>/<run>/\fR: \fIrun.json\fR, \fIlog\fR, \fIartifacts/\fR), workspaces, queue, locks, mirrors, build caches.
.TP
\fI/etc/phantom_ci/\fR, \fI/var/lib/phantom_ci/\fR
The system installation: root's configuration and data directories once \fI/etc/phantom_ci/Repo.toml\fR exists.
.TP
\fIworkflow/<branch>.toml\fR, \fIworkflow.toml\fR
A repository's workflow, read from the commit being run.
"#;

const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
\fBPHANTOM_CI_CONFIG_DIR\fR, \fBPHANTOM_CI_DATA_DIR\fR
The configuration and data directories (\fB\-\-config\-dir\fR and \fB\-\-data\-dir\fR win over them).
.TP
\fBPHANTOM_CI_SPOOL_DIR\fR
The spool pushers drop notes into, for \fBhook\fR, \fBtick\fR and \fBconfigure\fR (default \fI<data>/spool\fR).
.TP
\fBNO_COLOR\fR, \fBCLICOLOR\fR=0, \fBTERM\fR=dumb, \fBCLICOLOR_FORCE\fR
No colour in phantom_ci's own words on a terminal; or (the last) colour even where standard output is not one.
"#;

const HOOK_ENVIRONMENT: &str = r#".TP
\fBGIT_DIR\fR
The repository whose post-receive hook this is, as git sets it.
"#;

const POKE_ENVIRONMENT: &str = r#".TP
\fBSSH_ORIGINAL_COMMAND\fR
The command the runner's ssh key was used with: only \fBpoke\fR \fIname\fR is accepted.
"#;

const EXIT_STATUS: &str = r#".SH EXIT STATUS
.TP
\fB0\fR
Success, or nothing to do.
.TP
\fB1\fR
At least one run did not succeed (for \fBcheck\fR: a workflow is invalid).
.TP
\fB2\fR
A usage or configuration error; nothing ran.
"#;

const EXIT_STATUS_PIPE: &str = r#".TP
\fB141\fR
Standard output was closed early (\fB| head\fR): the command ends as \fBgit\fR does, by SIGPIPE.
"#;

/// The other pages of the family: the top page names every subcommand's, a subcommand's page names
/// the top page and its own subcommands'.
fn see_also(page: &clap::Command, name: &str) -> String {
    let mut pages: Vec<String> = Vec::new();
    if name != "phantom_ci" {
        pages.push("phantom_ci".into());
    }
    pages.extend(
        page.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .filter_map(|s| s.get_display_name().map(str::to_string)),
    );
    pages.extend(["git".to_string(), "bwrap".into()]);
    let list: Vec<String> = pages
        .iter()
        .map(|p| format!("\\fB{}\\fR(1)", p.replace('-', "\\-")))
        .collect();
    format!(
        ".SH SEE ALSO\n{}\n.PP\nThe reference: \\fI/usr/share/doc/phantom-ci/docs/\\fR.\n",
        list.join(", ")
    )
}
