//! Renewing a pooled run's claim in the background while the run goes on.

use std::time::Duration;

use crate::config::Repo;
use crate::config::pool::Pool;

use super::{Answer, Ask, ask};

/// A claim renewed in the background while its run goes on ([`Renewal::start`]): every
/// [`Pool::renew_every`], one `renew`. When the central host answers that another host took the claim
/// over, the run is asked to stop (as `phantom_ci cancel` asks: a request file in the run's directory
/// and a SIGUSR1 to this process), and [`Renewal::finish`] says so, with the answer that names the
/// other host.
pub struct Renewal {
    shared: std::sync::Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: std::sync::Mutex<RenewalState>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct RenewalState {
    stop: bool,
    /// The central host's answer when another host took the claim over.
    lost: Option<String>,
    /// The run's directory, once its record exists.
    run: Option<crate::state::records::RunDir>,
    /// Renewals that failed (the central host unreachable, …), for the run's notes.
    notes: Vec<String>,
}

/// At most this many failed renewals are kept as notes.
const MAX_RENEWAL_NOTES: usize = 3;

impl Renewal {
    /// Starts renewing `repo`'s claim of `commit` of `branch` (the repo is in a pool).
    pub fn start(repo: &Repo, branch: &str, commit: &str) -> Renewal {
        let shared = std::sync::Arc::new(Shared::default());
        let every = repo
            .pool
            .as_ref()
            .map_or(Duration::from_secs(60), Pool::renew_every);
        let (repo, branch, commit) = (repo.clone(), branch.to_string(), commit.to_string());
        let worker = shared.clone();
        let thread = std::thread::spawn(move || {
            loop {
                {
                    let state = worker.state.lock().unwrap_or_else(|e| e.into_inner());
                    let (state, _) = worker
                        .wake
                        .wait_timeout_while(state, every, |s| !s.stop)
                        .unwrap_or_else(|e| e.into_inner());
                    if state.stop {
                        return;
                    }
                }
                let answer = ask(&repo, &branch, &commit, Ask::Renew);
                let mut state = worker.state.lock().unwrap_or_else(|e| e.into_inner());
                match answer {
                    Answer::Granted(_) => {}
                    Answer::Refused(line) | Answer::Done(line) => {
                        if let Some(run) = &state.run {
                            stop_run(run, &line);
                        }
                        state.lost = Some(line);
                        return;
                    }
                    Answer::Failed(why) => {
                        if state.notes.len() < MAX_RENEWAL_NOTES {
                            state
                                .notes
                                .push(format!("a renewal of the claim failed: {why}"));
                        }
                    }
                }
            }
        });
        Renewal {
            shared,
            thread: Some(thread),
        }
    }

    /// The run's record exists: from now on a lost claim stops it (at once if it is lost already).
    pub fn started(&self, run: crate::state::records::RunDir) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(line) = &state.lost {
            stop_run(&run, line);
        }
        state.run = Some(run);
    }

    /// Stops renewing. Returns the central host's answer if another host took the claim over, and
    /// the notes of failed renewals.
    pub fn finish(mut self) -> (Option<String>, Vec<String>) {
        self.stop();
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.lost.take(), std::mem::take(&mut state.notes))
    }

    fn stop(&mut self) {
        {
            let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            state.stop = true;
        }
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asks this process's run in `run` to stop, as `phantom_ci cancel` does, and to end `aborted`,
/// saying which host took it over (`answer`, the central host's words).
fn stop_run(run: &crate::state::records::RunDir, answer: &str) {
    let _ = run.request_abort(&format!(
        "another host of the runner pool took this commit over on the central host (`{answer}`): \
         this host's claim had not been renewed within `claim_ttl`, and the other host's run is the \
         one that counts"
    ));
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGUSR1);
}
