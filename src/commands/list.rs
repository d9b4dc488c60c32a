//! `phantom_ci list [--json]`: the configured repos and their settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::commands::Context;
use crate::config::{Config, KeepWorkspace, Limits, Notify, Repo, Sandbox};
use crate::describe::terminal;
use crate::error::{Error, ExitStatus};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print one JSON array: `{"repo", "path", "branch", "branches", …every other setting}` per repo
    #[arg(long)]
    pub json: bool,
}

/// A repo as `list --json` prints it: durations as humantime strings, sizes in bytes.
#[derive(Serialize)]
struct RepoJson<'a> {
    repo: &'a str,
    path: String,
    /// `target_branch` as one string (`main, release/*`); `branches` has its entries.
    branch: String,
    branches: &'a [String],
    run_as: Option<&'a str>,
    sandbox: Sandbox,
    network: bool,
    timeout: String,
    env: BTreeMap<&'a str, &'a str>,
    pass_env: &'a [String],
    keep_workspace: KeepWorkspace,
    /// `keep_failed` as a duration (`30m`), or `"0"` when off.
    keep_failed: String,
    keep_runs: u32,
    notify: Notify,
    require_signed: bool,
    allowed_signers: Option<&'a PathBuf>,
    workflow: Option<&'a PathBuf>,
    sandbox_root: Option<&'a PathBuf>,
    limits: Limits,
    log_limit: u64,
    checkout_limit: u64,
    cache: bool,
    cache_limit: u64,
    /// A pooled repo's `pool`, `claim`, `claim_ttl`, `claim_key` (absent for a repo in no pool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    claim_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    claim_key: Option<&'a PathBuf>,
    artifact_files: u64,
    /// `parallel_steps`; null: one per CPU.
    parallel_steps: Option<usize>,
    /// `notes = true`: results in `refs/notes/ci` (SPEC §9).
    notes: bool,
    base_tree: bool,
    /// Why the repo does not run (its `path` or `run_as` user does not exist); empty when it runs.
    problems: Vec<String>,
}

impl<'a> From<&'a Repo> for RepoJson<'a> {
    fn from(repo: &'a Repo) -> Self {
        RepoJson {
            repo: &repo.name,
            path: repo.location.to_string(),
            branch: repo.branches.to_string(),
            branches: repo.branches.entries(),
            run_as: repo.run_as.as_deref(),
            sandbox: repo.sandbox,
            network: repo.network,
            timeout: humantime::format_duration(repo.timeout).to_string(),
            env: repo
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            pass_env: &repo.pass_env,
            keep_workspace: repo.keep_workspace,
            keep_failed: repo.keep_failed.map_or_else(
                || "0".to_string(),
                |d| humantime::format_duration(d).to_string(),
            ),
            keep_runs: repo.keep_runs,
            notify: repo.notify,
            require_signed: repo.require_signed,
            allowed_signers: repo.allowed_signers.as_ref(),
            workflow: repo.workflow.as_ref(),
            sandbox_root: repo.sandbox_root.as_ref(),
            limits: repo.limits,
            log_limit: repo.log_limit,
            checkout_limit: repo.checkout_limit,
            cache: repo.cache,
            cache_limit: repo.cache_limit,
            pool: repo.pool.as_ref().map(|p| p.name.as_str()),
            claim: repo.pool.as_ref().map(|p| p.claim.to_string()),
            claim_ttl: repo
                .pool
                .as_ref()
                .map(|p| humantime::format_duration(p.ttl).to_string()),
            claim_key: repo.pool.as_ref().and_then(|p| p.key.as_ref()),
            artifact_files: repo.artifact_files,
            parallel_steps: repo.parallel_steps,
            notes: repo.notes,
            base_tree: repo.base_tree,
            problems: repo.problems.iter().map(ToString::to_string).collect(),
        }
    }
}

pub fn run(args: ListArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let file = ctx.dirs.repo_toml();
    let config = Config::load(&file)?;
    if args.json {
        let repos: Vec<RepoJson> = config.repos.iter().map(RepoJson::from).collect();
        let json = serde_json::to_string_pretty(&repos)
            .map_err(|e| Error::Other(format!("cannot serialise the list: {e}")))?;
        println!("{json}");
        return Ok(ExitStatus::Success);
    }
    if config.repos.is_empty() {
        eprintln!(
            "{}",
            ctx.no_repos(
                ctx.suggest(&["add"])
                    .placeholder("<PATH|URL>")
                    .placeholder("[BRANCH]"),
                &["list"]
            )
        );
        return Ok(ExitStatus::Success);
    }
    let rows: Vec<[String; 4]> = config
        .repos
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                terminal(&r.branches.to_string()),
                r.run_as.as_deref().map_or_else(|| "-".into(), terminal),
                terminal(&r.location.to_string()),
            ]
        })
        .collect();
    print!(
        "{}",
        super::table::render(&["REPO", "BRANCH", "RUN AS", "PATH"], &rows)
    );
    for problem in config.broken().flat_map(|r| &r.problems) {
        eprintln!("phantom_ci: {problem}");
    }
    Ok(ExitStatus::Success)
}
