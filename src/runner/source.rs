//! Where a run's commits and workflow come from: the repository (or its mirror), and the workflow file
//! in the commit's tree — or the operator's trusted workflow file.

use git2::{Oid, Repository};

use crate::config::dirs::Dirs;
use crate::config::workflow::{self, Workflow};
use crate::config::{Location, Repo};
use crate::describe;
use crate::git::{self, MAX_WORKFLOW_SIZE, TreeFile};

use crate::describe::short;

/// Opens the repository a repo's commits come from.
pub fn open_source(dirs: &Dirs, repo: &Repo) -> Result<Repository, String> {
    match &repo.location {
        Location::Local(path) => git::open(path).map_err(|e| e.to_string()),
        Location::Url(_) => {
            git::open(&crate::git::mirror::path(dirs, repo)).map_err(|e| e.to_string())
        }
    }
}

/// The most characters of a commit's subject and author a record keeps.
const SUBJECT_CHARS: usize = 1000;
const AUTHOR_CHARS: usize = 300;

/// The subject and author (`Name <email>`) of `commit`, as `run.json` keeps them (untrusted, cut at
/// a bound); empty strings when the commit cannot be read (the run then says why on its own).
pub fn commit_words(source: &Repository, commit: Oid) -> (String, String) {
    let Ok(commit) = source.find_commit(commit) else {
        return (String::new(), String::new());
    };
    let subject = commit
        .summary_bytes()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default();
    let author = commit.author();
    let author = format!(
        "{} <{}>",
        String::from_utf8_lossy(author.name_bytes()),
        String::from_utf8_lossy(author.email_bytes())
    );
    (
        subject.chars().take(SUBJECT_CHARS).collect(),
        author.chars().take(AUTHOR_CHARS).collect(),
    )
}

/// Reads the workflow for `branch` at `commit`: the repo's trusted `workflow` file if Repo.toml names
/// one, else `workflow/<branch>.toml`, else `workflow.toml`, from the commit's tree.
pub fn load_workflow(
    repo: &Repo,
    source: &Repository,
    commit: Oid,
    branch: &str,
) -> Result<Workflow, String> {
    if let Some(path) = &repo.workflow {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the trusted workflow `{}`: {e}", path.display()))?;
        return Workflow::parse(&path.to_string_lossy(), &bytes).map_err(|e| e.to_string());
    }
    for path in workflow::candidate_paths(branch) {
        match git::read_tree_file(source, commit, &path, MAX_WORKFLOW_SIZE)
            .map_err(|e| e.to_string())?
        {
            TreeFile::File(bytes) => {
                return Workflow::parse(&path, &bytes).map_err(|e| e.to_string());
            }
            TreeFile::Invalid(why) => return Err(format!("invalid workflow: {why}")),
            TreeFile::Missing => {}
        }
    }
    let [branch_file, root_file] = workflow::candidate_paths(branch);
    Err(format!(
        "commit {} has no workflow: neither `{}` nor `{root_file}` exists",
        short(&commit.to_string()),
        describe::terminal(&branch_file)
    ))
}
