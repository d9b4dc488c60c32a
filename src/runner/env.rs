//! The environment a step starts with (SPEC §4.2): built from nothing, never inherited.

use std::path::Path;

use crate::config::workflow::Step;
use crate::config::{Repo, Sandbox};
use crate::isolation::privilege::StepUser;

pub use crate::isolation::{DEFAULT_PATH, SYSTEM_PATH};

/// What the run knows that steps get as `PHANTOM_CI_*`.
pub struct RunVars<'a> {
    pub run: u64,
    pub branch: &'a str,
    pub commit: &'a str,
    pub previous_commit: Option<&'a str>,
    pub workspace: &'a Path,
    pub artifacts: &'a Path,
    /// The repo's build cache (`cache = true`), given as `PHANTOM_CI_CACHE`.
    pub cache: Option<&'a Path>,
}

/// The full environment of every step of a run, in the order SPEC §4.2 gives; later entries win.
pub fn step_env(repo: &Repo, user: &StepUser, vars: &RunVars) -> Vec<(String, String)> {
    env_of(repo, user, vars, None)
}

/// The environment of `step` of a workflow whose `[env]` is `workflow_env` (SPEC §8), lowest to
/// highest: `[env]` < the step's `env` < its matrix values < the repo's `env` < `pass_env` <
/// `PHANTOM_CI_*` and `CI` (a workflow cannot set those: they are reserved), with `PHANTOM_CI_STEP`
/// and `PHANTOM_CI_STEP_NAME`.
pub fn for_step(
    repo: &Repo,
    user: &StepUser,
    vars: &RunVars,
    workflow_env: &[(String, String)],
    step: &Step,
) -> Vec<(String, String)> {
    env_of(repo, user, vars, Some((workflow_env, step)))
}

fn env_of(
    repo: &Repo,
    user: &StepUser,
    vars: &RunVars,
    step: Option<(&[(String, String)], &Step)>,
) -> Vec<(String, String)> {
    let own = |name: &str| std::env::var(name).ok();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: String| {
        env.retain(|(n, _)| n != name);
        env.push((name.to_string(), value));
    };
    // phantom_ci's own PATH only for a step that is phantom_ci's user outside the sandbox; the repo's
    // `env` or `pass_env` may still name one (they come later).
    let path = if user.switch || repo.sandbox != Sandbox::None {
        SYSTEM_PATH.to_string()
    } else {
        own("PATH").unwrap_or_else(|| DEFAULT_PATH.to_string())
    };
    set("PATH", path);
    set("HOME", user.home.to_string_lossy().into_owned());
    set("USER", user.name.clone());
    if let Some(lang) = own("LANG") {
        set("LANG", lang);
    }
    if let Some((workflow_env, step)) = step {
        let layers = workflow_env.iter().chain(&step.env).chain(&step.matrix);
        for (name, value) in layers {
            set(name, value.clone());
        }
    }
    // The operator's repo `env` and `pass_env` win over the workflow's; `CI` and `PHANTOM_CI_*`
    // win over everything (SPEC §8): recovery finds a run's processes by `PHANTOM_CI_WORKSPACE`.
    for (name, value) in &repo.env {
        set(name, value.clone());
    }
    for name in &repo.pass_env {
        if let Some(value) = own(name) {
            set(name, value);
        }
    }
    set("CI", "true".into());
    set("PHANTOM_CI", "true".into());
    set("PHANTOM_CI_REPO", repo.name.clone());
    set("PHANTOM_CI_BRANCH", vars.branch.to_string());
    set("PHANTOM_CI_COMMIT", vars.commit.to_string());
    if let Some(previous) = vars.previous_commit {
        set("PHANTOM_CI_PREVIOUS_COMMIT", previous.to_string());
    }
    set("PHANTOM_CI_RUN", vars.run.to_string());
    set(
        "PHANTOM_CI_WORKSPACE",
        vars.workspace.to_string_lossy().into_owned(),
    );
    set(
        "PHANTOM_CI_ARTIFACTS",
        vars.artifacts.to_string_lossy().into_owned(),
    );
    if let Some(cache) = vars.cache {
        set("PHANTOM_CI_CACHE", cache.to_string_lossy().into_owned());
    }
    if let Some((_, step)) = step {
        set("PHANTOM_CI_STEP", step.id());
        set(
            "PHANTOM_CI_STEP_NAME",
            step.name.clone().unwrap_or_default(),
        );
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repos_env_cannot_take_ci_or_phantom_ci_variables_from_the_steps() {
        let mut repo = Repo::ad_hoc("app".into(), "/srv/app.git".into(), "main".into());
        repo.env = vec![
            ("CI".into(), "no".into()),
            ("PHANTOM_CI_WORKSPACE".into(), "/elsewhere".into()),
            ("PATH".into(), "/opt/bin:/usr/bin".into()),
        ];
        let user = StepUser {
            name: "ci".into(),
            uid: nix::unistd::Uid::from_raw(1000),
            gid: nix::unistd::Gid::from_raw(1000),
            groups: Vec::new(),
            home: "/home/ci".into(),
            switch: true,
        };
        let vars = RunVars {
            run: 3,
            branch: "main",
            commit: "abc",
            previous_commit: None,
            workspace: Path::new("/data/work/app/3/workspace"),
            artifacts: Path::new("/data/work/app/3/artifacts"),
            cache: None,
        };
        let env = step_env(&repo, &user, &vars);
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("CI"), Some("true"));
        assert_eq!(
            get("PHANTOM_CI_WORKSPACE"),
            Some("/data/work/app/3/workspace")
        );
        // What the operator may set, it sets.
        assert_eq!(get("PATH"), Some("/opt/bin:/usr/bin"));
    }
}
