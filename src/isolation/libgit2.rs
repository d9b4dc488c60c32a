//! libgit2's process-wide settings: which repositories it trusts and which configuration files it
//! reads. Set once, at start-up ([`configure`]).

/// libgit2 as phantom_ci needs it, set once:
/// - A configured repository is trusted whatever its owner: the operator named it (SPEC §2.1). Without
///   this, libgit2 refuses repositories owned by another user ("dubious ownership"), so a root `tick`
///   over repositories owned by `git` would fail.
/// - No system, global or XDG git configuration: what phantom_ci reads and writes with libgit2 (the
///   operator's repositories, workspaces) must not change with the config files of whoever runs it
///   (a `core.worktree` in `~/.gitconfig` would send a checkout elsewhere). The `git` commands it
///   starts ignore them too (`GIT_CONFIG_GLOBAL=/dev/null`, `GIT_CONFIG_NOSYSTEM`).
#[allow(unsafe_code)]
pub fn configure() -> Result<(), String> {
    let failed = |e: git2::Error| format!("cannot configure libgit2: {}", e.message());
    // SAFETY: libgit2's global options are not thread-safe; this runs once at start-up, before phantom_ci
    // starts any thread or opens any repository.
    unsafe { git2::opts::set_verify_owner_validation(false) }.map_err(failed)?;
    for level in [
        git2::ConfigLevel::System,
        git2::ConfigLevel::XDG,
        git2::ConfigLevel::Global,
    ] {
        // SAFETY: as above, once at start-up before any thread or repository.
        unsafe { git2::opts::set_search_path(level, "") }.map_err(failed)?;
    }
    Ok(())
}
