//! `phantom_ci report <DIR>` and the refresh after each run with `PHANTOM_CI_REPORT_DIR` (SPEC §5).

use std::path::{Path, PathBuf};

use crate::support::{TestEnv, stdout_of};

const FAILING: &str = "[0]\nrun = \"echo building\"\n[1]\nname = \"test\"\nrun = \"sh -c 'echo FAILED-HERE; exit 3'\"\n";
const PASSING: &str = "[0]\nname = \"greet\"\nrun = \"echo ALL-FINE\"\n";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// A failing run #1, then a passing run #2, of repo `app`.
fn failing_then_passing(env: &TestEnv) {
    let (repo, _) = env.app(FAILING, "");
    env.phantom().args(["run", "app"]).assert().code(1);
    repo.workflow("master", PASSING);
    repo.commit_and_push("fixed");
    env.phantom().args(["run", "app"]).assert().success();
}

fn the_report_lists_every_run_with_its_page_log_and_badge() {
    let env = TestEnv::new();
    failing_then_passing(&env);
    let idle = env.repo("idle");
    let toml = read(&env.config.join("Repo.toml")) + &env.section("idle", &idle, "");
    env.write_repo_toml(&toml);
    let site = env.root().join("site");
    std::fs::create_dir_all(site.join("app")).unwrap();
    std::fs::write(site.join("robots.txt"), "mine\n").unwrap();
    std::fs::write(site.join("app/notes.txt"), "mine too\n").unwrap();

    let out = env.phantom().arg("report").arg(&site).assert().success();
    assert_eq!(
        stdout_of(&out),
        format!("{}\n", site.join("index.html").display())
    );

    let index = read(&site.join("index.html"));
    assert!(index.contains("<a href=\"app/1.html\">#1</a>"), "{index}");
    assert!(index.contains("<a href=\"app/2.html\">#2</a>"), "{index}");
    let row = |n: u64| {
        let start = index.find(&format!("app/{n}.html")).unwrap();
        index[start..].split("</tr>").next().unwrap().to_string()
    };
    assert!(row(1).contains(">failure<"), "{}", row(1));
    assert!(row(2).contains(">success<"), "{}", row(2));
    assert!(row(2).contains(">master<") && row(2).contains(">manual<"));
    assert!(
        index.find("app/2.html").unwrap() < index.find("app/1.html").unwrap(),
        "newest first"
    );
    assert!(index.contains("idle") && index.contains("No runs yet"));
    assert!(!index.contains("<script"));

    let failed = read(&site.join("app/1.html"));
    assert!(failed.contains("FAILED-HERE"), "the log: {failed}");
    assert!(failed.contains("echo building"));
    assert!(
        failed.contains("<td>test</td>"),
        "the step's name: {failed}"
    );
    assert!(failed.contains("<td>3</td>"), "the exit code: {failed}");
    assert!(failed.contains("exited with status 3"), "the message");
    let passed = read(&site.join("app/2.html"));
    assert!(passed.contains("ALL-FINE") && passed.contains("<td>greet</td>"));
    assert!(
        passed.contains(
            &env.run_json("app", 2)["commit"]
                .as_str()
                .unwrap()
                .to_string()
        )
    );

    let badge = read(&site.join("badge/app.svg"));
    assert!(badge.starts_with("<svg") && badge.contains(">success</text>"));
    assert!(read(&site.join("badge/idle.svg")).contains(">none</text>"));

    assert_eq!(read(&site.join("robots.txt")), "mine\n");
    assert_eq!(read(&site.join("app/notes.txt")), "mine too\n");
    let names: Vec<String> = files(&site)
        .iter()
        .map(|p| p.strip_prefix(&site).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "app/1.html",
            "app/2.html",
            "app/notes.txt",
            "badge/app.svg",
            "badge/idle.svg",
            "index.html",
            "robots.txt",
            "summary.json"
        ],
        "no temporary file is left"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(site.join("index.html"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o444, 0o444, "a web server can read it");
}

fn untrusted_names_and_output_are_escaped() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.write(
        "workflow.toml",
        "[0]\nname = \"<script>alert('step')</script>\"\nrun = \"echo <script>alert(1)</script> \\u001b[31mred\"\n",
    );
    repo.commit("hostile");
    let branch = "x<script>alert(2)</script>";
    let push = repo.push(branch);
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    env.write_repo_toml(&env.section("app", &repo, &format!("target_branch = '{branch}'")));
    env.phantom().args(["run", "app"]).assert().success();
    assert!(env.log("app", 1).contains("<script>alert(1)</script>"));

    let site = env.root().join("site");
    env.phantom().arg("report").arg(&site).assert().success();
    for path in files(&site) {
        let text = read(&path);
        assert!(!text.contains("<script"), "{}: {text}", path.display());
        assert!(!text.contains('\x1b'), "{}: {text}", path.display());
    }
    let page = read(&site.join("app/1.html"));
    assert!(
        page.contains("x&lt;script&gt;alert(2)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("&lt;script&gt;alert(&#39;step&#39;)&lt;/script&gt;"));
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; red"),
        "{page}"
    );
    assert!(read(&site.join("index.html")).contains("x&lt;script&gt;alert(2)"));
}

fn with_report_dir_in_env_every_run_refreshes_the_report() {
    let env = TestEnv::new();
    let site = env.root().join("www");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("other.html"), "<p>not ours</p>\n").unwrap();
    std::fs::write(
        env.config.join(".env"),
        format!("PHANTOM_CI_REPORT_DIR={}\n", site.display()),
    )
    .unwrap();
    let (repo, _) = env.app(PASSING, "");

    let out = env.phantom().args(["run", "app"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("report"), "{stderr}");
    assert!(read(&site.join("index.html")).contains("app/1.html"));
    assert!(read(&site.join("app/1.html")).contains("ALL-FINE"));
    assert!(read(&site.join("badge/app.svg")).contains(">success</text>"));

    repo.workflow("master", FAILING);
    repo.commit_and_push("broken");
    env.phantom().args(["run", "app"]).assert().code(1);
    let index = read(&site.join("index.html"));
    assert!(index.contains("app/2.html") && index.contains("app/1.html"));
    assert!(read(&site.join("app/2.html")).contains("FAILED-HERE"));
    assert!(read(&site.join("badge/app.svg")).contains(">failure</text>"));
    assert_eq!(read(&site.join("other.html")), "<p>not ours</p>\n");
}

fn a_report_that_cannot_be_written_is_an_error_but_never_changes_a_run() {
    let env = TestEnv::new();
    env.app(PASSING, "");
    let file = env.root().join("a-file");
    std::fs::write(&file, "").unwrap();
    let site = file.join("site");

    let out = env.phantom().arg("report").arg(&site).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot create the report directory") && stderr.contains("a-file/site"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    std::fs::write(
        env.config.join(".env"),
        format!("PHANTOM_CI_REPORT_DIR={}\n", site.display()),
    )
    .unwrap();
    let out = env.phantom().args(["run", "app"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("was not refreshed"), "{stderr}");
    assert_eq!(env.run_json("app", 1)["result"], "success");
}

crate::tests! {
    the_report_lists_every_run_with_its_page_log_and_badge,
    untrusted_names_and_output_are_escaped,
    with_report_dir_in_env_every_run_refreshes_the_report,
    a_report_that_cannot_be_written_is_an_error_but_never_changes_a_run,
}
