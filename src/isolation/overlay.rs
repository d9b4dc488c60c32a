//! A run's workspace as a copy-on-write layer (issue 23): an overlay file system whose lower
//! directory is the branch's kept base tree ([`crate::git::base`]), read-only, and whose upper
//! directory takes whatever the steps write — mounted in a **mount namespace of the run's own**, never
//! in the machine's. Every step of the run joins that namespace in its child before it drops its
//! privileges ([`crate::isolation::boundary`], invariant 11), so the steps, and only they, see the
//! workspace; everyone else sees an empty directory at its path.
//!
//! The namespace is made by a short-lived helper: a child that unshares its mount namespace, makes
//! every mount in it private (nothing propagates to the machine), mounts the overlay, and `exec`s
//! `cat`, which waits on a pipe. phantom_ci opens `/proc/<child>/ns/mnt` and closes the pipe: the
//! child ends, and the descriptor alone keeps the namespace — and the mount — alive. When phantom_ci
//! closes it (or dies, however it dies) and the run's processes are gone, the kernel unmounts the
//! layer: nothing is left mounted anywhere, and recovery has only files to remove.
//!
//! The mount needs `CAP_SYS_ADMIN` (phantom_ci as root); where the kernel or the file system
//! refuses it, [`Layer::mount`] says why and the run makes a full checkout instead.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::isolation::{SYSTEM_PATH, reaper, sys};

/// An overlay mounted on a workspace in a mount namespace of its own, alive while this lives.
#[derive(Debug)]
pub struct Layer {
    /// `/proc/<helper>/ns/mnt`, opened while the helper lived.
    namespace: OwnedFd,
    /// Where the overlay is mounted (inside the namespace; an empty directory outside it).
    target: PathBuf,
}

impl Layer {
    /// Mounts an overlay of `lower` (read-only) under `upper` (where writes go; `work` is the
    /// overlay's scratch directory, on the same file system) on `target`, in a new mount namespace.
    /// The error says why in words: the caller falls back to a full checkout.
    /// The overlay writes as `writer` (uid, gid: the step user's), never with all of root's powers.
    pub fn mount(
        lower: &Path,
        upper: &Path,
        work: &Path,
        target: &Path,
        writer: (u32, u32),
    ) -> Result<Layer, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("phantom_ci is not root".into());
        }
        if !overlay_allowed() {
            return Err("`PHANTOM_CI_OVERLAY=0` in phantom_ci's environment".into());
        }
        // The option string separates with `,` and `:`; such paths are not escaped but refused.
        for path in [lower, upper, work] {
            let bytes = path.as_os_str().as_bytes();
            if bytes
                .iter()
                .any(|b| matches!(b, b',' | b':' | b'\\' | b'\n'))
            {
                return Err(format!(
                    "the path `{}` holds a `,`, `:` or `\\`, which overlay options cannot carry",
                    path.display()
                ));
            }
        }
        let options = |extra: &str| {
            let mut text = b"lowerdir=".to_vec();
            text.extend_from_slice(lower.as_os_str().as_bytes());
            text.extend_from_slice(b",upperdir=");
            text.extend_from_slice(upper.as_os_str().as_bytes());
            text.extend_from_slice(b",workdir=");
            text.extend_from_slice(work.as_os_str().as_bytes());
            text.extend_from_slice(extra.as_bytes());
            CString::new(text).map_err(|e| e.to_string())
        };
        // `redirect_dir=on`: a step may rename a directory of the commit, as in a plain checkout
        // (without it, EXDEV; only the overlay itself, with root's `trusted.` attributes, can write
        // a redirect). `volatile`: the upper directory is scratch (removed after the run, by
        // recovery after a crash), so the overlay need not sync it when it goes (Linux ≥ 5.10).
        let (with_volatile, plain) = (
            options(",redirect_dir=on,volatile")?,
            options(",redirect_dir=on")?,
        );
        let on = CString::new(target.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        let (wait, hold) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
        let mut helper = Command::new("cat");
        helper
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .stdin(Stdio::from(OwnedFd::from(wait)))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure runs in the child between fork and exec and makes only raw system
        // calls (`sys::overlay_namespace`) on strings made before the fork: no allocation, no lock.
        // A failure aborts the spawn with its errno.
        #[allow(unsafe_code)]
        unsafe {
            helper.pre_exec(move || {
                sys::overlay_namespace(&on, &with_volatile, &plain, writer)
                    .map_err(std::io::Error::from_raw_os_error)
            });
        }
        // Registered while it lives: the end of another run in this process leaves it alone.
        let mut child = reaper::spawn(&mut helper).map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ENOENT) => "`cat` is not installed (coreutils)".to_string(),
            _ => format!("the overlay was refused: {e}"),
        })?;
        let namespace = File::open(format!("/proc/{}/ns/mnt", child.id()));
        drop(hold);
        let _ = child.wait();
        reaper::finished(child.id());
        let namespace =
            namespace.map_err(|e| format!("cannot open the layer's mount namespace: {e}"))?;
        Ok(Layer {
            namespace: namespace.into(),
            target: target.to_path_buf(),
        })
    }

    /// The namespace every step of the run joins.
    pub fn namespace(&self) -> BorrowedFd<'_> {
        self.namespace.as_fd()
    }

    /// Copies what the steps see at the workspace into `to` (a new directory on the machine's side,
    /// outside the layer), as `cp -a` does: links stay links, owners and modes are kept. For a
    /// workspace kept after the run (`keep_failed`, `--keep`), which must outlive the layer.
    pub fn copy_out(&self, to: &Path) -> Result<(), String> {
        let ns = self.namespace.as_raw_fd();
        let cwd = CString::new(self.target.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        let mut from = self.target.clone().into_os_string();
        from.push("/.");
        let mut copy = Command::new("cp");
        copy.env_clear()
            .env("PATH", SYSTEM_PATH)
            .env("LC_ALL", "C")
            .arg("-a")
            .arg("--")
            .arg(&from)
            .arg(to)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec and makes raw system calls
        // only (`setns`, `chdir`) on a descriptor and a string made before the fork; the
        // descriptor is open in the child until `exec` (close-on-exec).
        #[allow(unsafe_code)]
        unsafe {
            copy.pre_exec(move || {
                sys::enter_mount_namespace(ns, &cwd).map_err(std::io::Error::from_raw_os_error)
            });
        }
        reaper::dies_with_phantom_ci(&mut copy);
        let ran = reaper::spawn(&mut copy)
            .and_then(|child| {
                let pid = child.id();
                let ran = child.wait_with_output();
                reaper::finished(pid);
                ran
            })
            .map_err(|e| format!("cannot run `cp` to copy the workspace out: {e}"))?;
        if ran.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&ran.stderr);
        Err(format!(
            "`cp -a` of the workspace failed ({}): {}",
            ran.status,
            crate::describe::one_line(&said, 300)
        ))
    }
}

/// Whether a layer may be tried: `PHANTOM_CI_OVERLAY=0` in phantom_ci's environment says not to (every
/// run then makes a full checkout; for diagnosis and the tests of the fallback).
fn overlay_allowed() -> bool {
    std::env::var_os("PHANTOM_CI_OVERLAY").is_none_or(|v| v != "0")
}
