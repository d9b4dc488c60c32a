//! `phantom_ci report <DIR>` and the refresh after each run with `PHANTOM_CI_REPORT_DIR` (SPEC §5).

use std::path::{Path, PathBuf};

use crate::support::{TestEnv, stdout_of, wait_for};

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
        let start = index
            .find(&format!("<tr><td><a href=\"app/{n}.html\">"))
            .unwrap();
        index[start..].split("</tr>").next().unwrap().to_string()
    };
    assert!(row(1).contains(">failure<"), "{}", row(1));
    assert!(row(2).contains(">success<"), "{}", row(2));
    assert!(row(2).contains(">master<") && row(2).contains(">manual<"));
    assert!(
        index.find("<tr><td><a href=\"app/2.html\">").unwrap()
            < index.find("<tr><td><a href=\"app/1.html\">").unwrap(),
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
            ".phantom_ci-files",
            "app/1.html",
            "app/2.html",
            "app/notes.txt",
            "badge/app/master.svg",
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
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; <span class=\"fg1\">red</span>"),
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

/// While a run goes on, its page in the live report shows each step once it has ended.
fn a_running_runs_page_shows_each_step_as_it_ends() {
    let env = TestEnv::new();
    let site = env.root().join("www");
    std::fs::write(
        env.config.join(".env"),
        format!("PHANTOM_CI_REPORT_DIR={}\n", site.display()),
    )
    .unwrap();
    let root = env.root().display().to_string();
    // The first step ends more than a second after the run started (refreshes are a second apart at
    // most); the second waits for the test.
    env.app(
        &format!(
            "[0]\nname = \"warm-up\"\nrun = \"sleep 1.2\"\n[1]\nname = \"held\"\nrun = \"sh -c 'touch {root}/holding; {}'\"\n",
            wait_for_release(&root).trim_end().replace('\n', " ")
        ),
        "",
    );
    let mut run = env.spawn_run("app");
    wait_for("the second step", || env.root().join("holding").exists());
    let page = site.join("app/1.html");
    wait_for("the first step on the running run's page", || {
        std::fs::read_to_string(&page).is_ok_and(|p| p.contains("warm-up"))
    });
    let during = read(&page);
    assert!(during.contains("http-equiv=\"refresh\""), "{during}");
    assert!(
        !during.contains("held</td>"),
        "the second step has not ended: {during}"
    );
    std::fs::write(env.root().join("release"), "").unwrap();
    assert!(run.wait().unwrap().success());
    let after = read(&page);
    assert!(
        after.contains("held") && !after.contains("http-equiv=\"refresh\""),
        "{after}"
    );
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

/// The step of `ci.sh` runs as `sh ci.sh`, so each run's script is a file of the commit.
const SCRIPTED: &str = "[0]\nname = \"build\"\nrun = \"sh ci.sh\"\n";

/// Commits `script` as `ci.sh` (and `workflow` as the master workflow) with `subject`.
fn commit_script(repo: &crate::support::TestRepo, workflow: &str, script: &str, subject: &str) {
    repo.workflow("master", workflow);
    repo.write("ci.sh", script);
    repo.commit_and_push(subject);
}

/// Every HTML file of `site`, with its text.
fn pages(site: &Path) -> Vec<(PathBuf, String)> {
    files(site)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .map(|p| {
            let text = read(&p);
            (p, text)
        })
        .collect()
}

/// What no page may hold: a script, an escape byte, a resource from elsewhere.
fn assert_inert(site: &Path) {
    for (path, text) in pages(site) {
        let shown = path.display();
        assert!(!text.contains("<script"), "{shown}: {text}");
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{shown}: a control character"
        );
        assert!(!text.contains("evil.example"), "{shown}: {text}");
        for attribute in ["src=\"", "href=\""] {
            for value in text.split(attribute).skip(1) {
                let value = value.split('"').next().unwrap();
                assert!(
                    !value.contains(':') && !value.starts_with("//"),
                    "{shown}: {attribute}{value}\" leads elsewhere"
                );
            }
        }
        assert!(
            text.contains(
                "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"
            ),
            "{shown}: its CSP"
        );
    }
}

/// Writes its file when dropped: a step waiting for it ends even when the test fails.
/// The runs a test started in the background, and the file their steps wait for. Dropped (the test
/// ended, however it ended), it writes the file and waits for the runs, before the test's directory
/// goes.
struct Release {
    file: PathBuf,
    runs: Vec<std::process::Child>,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.file, "");
        for run in &mut self.runs {
            let _ = run.wait();
        }
    }
}

/// A step that waits for `release` in `root` (or for `root` to be gone).
fn wait_for_release(root: &str) -> String {
    format!("while [ ! -e {root}/release ] && [ -d {root} ]; do sleep 0.05; done\n")
}

/// Seven runs of `app`, one per result — success, failure, timeout, error, rejected, cancelled and (the
/// last) running — each printing colours and escape sequences, the first with hostile artifact names
/// and a `<script>` in its subject and its log; the report written while the last one runs shows each
/// as it is, escaped, coloured, with its artifacts, and the page of the running run reloads itself.
fn every_result_is_shown_coloured_escaped_and_with_its_artifacts() {
    let env = TestEnv::new();
    let live = env.root().join("live");
    std::fs::write(
        env.config.join(".env"),
        format!("PHANTOM_CI_REPORT_DIR={}\n", live.display()),
    )
    .unwrap();
    let repo = env.repo("app");
    let section = env.section("app", &repo, "");
    env.write_repo_toml(&section);
    let root = env.root().display().to_string();
    // Runs 6 and 7 wait for `release`: made when the test ends, however it ends.
    let mut background = Release {
        file: env.root().join("release"),
        runs: Vec::new(),
    };

    // 1: success, with colours, a hyperlink, a title, a `<script>` line and artifacts.
    commit_script(
        &repo,
        SCRIPTED,
        r#"printf '\033[1;32mcompiled\033[0m <script>alert("log")</script>\n'
printf '\033]8;;http://evil.example/\033\\click here\033]8;;\033\\\n'
printf '\033[2J\033]0;a title\007\033[38;5;208morange\033[0m \033[48;2;0;0;139mnavy\033[0m\n'
printf '<script>alert(3)</script>' > "$PHANTOM_CI_ARTIFACTS/<script>alert(3)<"
echo '<script>alert(4)</script>' > "$PHANTOM_CI_ARTIFACTS/page.html"
mkdir "$PHANTOM_CI_ARTIFACTS/sub"
echo 'Options +ExecCGI' > "$PHANTOM_CI_ARTIFACTS/sub/.htaccess"
echo coverage > "$PHANTOM_CI_ARTIFACTS/sub/cover age.txt"
"#,
        "<script>alert('subject')</script> Speed up the parser",
    );
    env.phantom().args(["run", "app"]).assert().success();
    // 2: failure.
    commit_script(
        &repo,
        SCRIPTED,
        "printf '\\033[31merror: it broke\\033[0m\\n'\nexit 3\n",
        "Break it",
    );
    env.phantom().args(["run", "app"]).assert().code(1);
    // 3: timeout.
    commit_script(
        &repo,
        &format!("{SCRIPTED}timeout = \"1s\"\n"),
        "printf '\\033[33mwaiting\\033[0m\\n'\nexec sleep 600\n",
        "Wait forever",
    );
    env.phantom().args(["run", "app"]).assert().code(1);
    // 4: error (a step without a command).
    commit_script(&repo, "[0]\nrun = \"\"\n", "", "An empty step");
    env.phantom().args(["run", "app"]).assert().code(1);
    // 5: rejected (unsigned, signatures required).
    let signers = env.root().join("allowed_signers");
    std::fs::write(&signers, "").unwrap();
    commit_script(&repo, SCRIPTED, "echo never\n", "Unsigned");
    env.write_repo_toml(&format!(
        "{section}require_signed = true\nallowed_signers = \"{}\"\n",
        signers.display()
    ));
    env.phantom().args(["run", "app"]).assert().code(1);
    env.write_repo_toml(&section);
    // 6: cancelled, from another process while its step sleeps.
    commit_script(
        &repo,
        SCRIPTED,
        &format!(
            "printf '\\033[36mstarted\\033[0m\\n'\ntouch {root}/started-6\n{}",
            wait_for_release(&root)
        ),
        "Sleep",
    );
    background.runs.push(env.spawn_run("app"));
    wait_for("run 6's step", || env.root().join("started-6").exists());
    env.phantom().args(["cancel", "app"]).assert().success();
    background.runs.pop().unwrap().wait().unwrap();
    // 7: running until the test lets it end.
    commit_script(
        &repo,
        SCRIPTED,
        &format!(
            "printf '\\033[35mworking\\033[0m\\n'\ntouch {root}/started-7\n{}",
            wait_for_release(&root)
        ),
        "Still going",
    );
    background.runs.push(env.spawn_run("app"));
    wait_for("run 7's step", || env.root().join("started-7").exists());
    let results: Vec<String> = (1..=7)
        .map(|n| {
            env.run_json("app", n)["result"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        results,
        [
            "success",
            "failure",
            "timeout",
            "error",
            "rejected",
            "cancelled",
            "running"
        ]
    );
    // A link in the record, as if someone put it there: the report does not follow it.
    std::os::unix::fs::symlink("/etc/passwd", env.run_file("app", 1, "artifacts/passwd")).unwrap();
    std::os::unix::fs::symlink(&env.data, env.run_file("app", 1, "artifacts/data")).unwrap();

    // The live report already shows run 7 as going on: refreshed when it started.
    let live_page = read(&live.join("app/7.html"));
    assert!(
        live_page.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "{live_page}"
    );
    assert!(live_page.contains("<span class=\"result running\">running</span>"));
    assert!(read(&live.join("index.html")).contains("<meta http-equiv=\"refresh\""));

    let site = env.root().join("site");
    env.phantom().arg("report").arg(&site).assert().success();
    assert_inert(&site);
    let page = |n: u64| read(&site.join(format!("app/{n}.html")));
    for (n, result) in (1..).zip(&results) {
        let page = page(n);
        assert!(
            page.contains(&format!("<span class=\"result {result}\">{result}</span>")),
            "run {n}: {page}"
        );
        assert_eq!(
            page.contains("http-equiv=\"refresh\""),
            result == "running",
            "only a running run reloads: {n}"
        );
    }
    let first = page(1);
    assert!(
        first.contains(
            "<h1>&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt; Speed up the parser</h1>"
        ),
        "{first}"
    );
    assert!(
        first.contains("Test Author &lt;author@example.org&gt;"),
        "the author: {first}"
    );
    assert!(first.contains("<span class=\"bold fg2\">compiled</span> &lt;script&gt;alert(&quot;log&quot;)&lt;/script&gt;"), "{first}");
    assert!(
        first.contains("\nclick here\n"),
        "the hyperlink's text, not the link: {first}"
    );
    assert!(first.contains("<span style=\"color:#ff8700;\">orange</span> <span style=\"background:#00008b;\">navy</span>"), "{first}");
    assert!(!first.contains("a title"));
    // The steps' picture: side by side (records without times) or on lanes (graph runs, SPEC §8).
    assert!(first.contains("role=\"img\" aria-label=\"the steps"));
    // The artifacts: linked, encoded, escaped, copied; pages and server files defused; links left.
    assert!(
        first.contains("<a href=\"1/artifacts/%3Cscript%3Ealert%283%29%3C.txt\" download=\"&lt;script&gt;alert(3)&lt;\">&lt;script&gt;alert(3)&lt;</a>"),
        "{first}"
    );
    assert!(
        first
            .contains("<a href=\"1/artifacts/page_html.txt\" download=\"page.html\">page.html</a>"),
        "{first}"
    );
    assert!(
        first.contains(
            "<a href=\"1/artifacts/sub/_htaccess.txt\" download=\".htaccess\">sub/.htaccess</a>"
        ),
        "{first}"
    );
    assert!(
        first
            .contains("<a href=\"1/artifacts/sub/cover%20age.txt\" download>sub/cover age.txt</a>")
    );
    assert!(
        !first.contains("passwd") && !first.contains(">data<"),
        "{first}"
    );
    let copies = site.join("app/1/artifacts");
    assert_eq!(
        read(&copies.join("<script>alert(3)<.txt")),
        "<script>alert(3)</script>"
    );
    assert_eq!(
        read(&copies.join("page_html.txt")),
        "<script>alert(4)</script>\n"
    );
    assert_eq!(
        read(&copies.join("sub/_htaccess.txt")),
        "Options +ExecCGI\n"
    );
    let names: Vec<String> = files(&site)
        .iter()
        .map(|p| p.strip_prefix(&site).unwrap().display().to_string())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains("passwd") && !n.starts_with("app/1/artifacts/data")),
        "{names:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(copies.join("page_html.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o444, 0o444, "a web server can read it");

    assert!(page(2).contains("<span class=\"fg1\">error: it broke</span>"));
    assert!(page(2).contains("exited with status 3"));
    assert!(page(3).contains("<span class=\"fg3\">waiting</span>"));
    assert!(
        page(3).contains("<span class=\"timeout\" style=\""),
        "the timeline"
    );
    assert!(page(4).contains("<p>No step ran.</p>"));
    assert!(page(5).contains("is not signed"), "{}", page(5));
    assert!(page(6).contains("<span class=\"fg6\">started</span>"));
    assert!(
        page(7).contains("<span class=\"fg5\">working</span>"),
        "{}",
        page(7)
    );

    let index = read(&site.join("index.html"));
    assert!(
        index.contains("<meta http-equiv=\"refresh\" content=\"10\">"),
        "{index}"
    );
    assert!(
        index.contains("<span class=\"result running\">running</span> <a href=\"app/7.html\">#7</a> <span class=\"subject\">Still going</span>"),
        "{index}"
    );
    let bars: Vec<usize> = (1..=7)
        .map(|n| {
            index
                .find(&format!("<a href=\"app/{n}.html\"><rect"))
                .unwrap()
        })
        .collect();
    assert!(
        bars.windows(2).all(|w| w[0] < w[1]),
        "one bar per run, oldest first"
    );
    for result in &results {
        assert!(
            index.contains(&format!("<rect class=\"{result}\"")),
            "{result}: {index}"
        );
    }
    assert!(index.contains("&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt; Speed up"));

    // Run 7 ends: its live page stops reloading, and shows the end.
    std::fs::write(env.root().join("release"), "").unwrap();
    assert!(background.runs.pop().unwrap().wait().unwrap().success());
    let live_page = read(&live.join("app/7.html"));
    assert!(!live_page.contains("http-equiv=\"refresh\""), "{live_page}");
    assert!(live_page.contains("<span class=\"result success\">success</span>"));
    assert!(!read(&live.join("index.html")).contains("http-equiv=\"refresh\""));
    assert_inert(&live);
}

fn repos_are_listed_most_recently_run_first() {
    let env = TestEnv::new();
    let first = env.repo("first");
    first.workflow("master", PASSING);
    first.commit_and_push("one");
    let second = env.repo("second");
    second.workflow("master", PASSING);
    second.commit_and_push("two");
    let idle = env.repo("idle");
    env.write_repo_toml(
        &(env.section("idle", &idle, "")
            + &env.section("first", &first, "")
            + &env.section("second", &second, "")),
    );
    env.phantom().args(["run", "second"]).assert().success();
    env.phantom().args(["run", "first"]).assert().success();
    let site = env.root().join("site");
    env.phantom().arg("report").arg(&site).assert().success();
    let index = read(&site.join("index.html"));
    let place = |name: &str| {
        index
            .find(&format!("<section class=\"repo\" id=\"{name}\">"))
            .unwrap()
    };
    assert!(
        place("first") < place("second"),
        "the most recent run first"
    );
    assert!(place("second") < place("idle"), "never run: last");
}

/// A step of a graph run's record, written by hand as the graph runner writes it (SPEC §8):
/// `[started, finished]` in seconds after 10:00.
fn graph_step(
    index: u64,
    instance: Option<u32>,
    matrix: serde_json::Value,
    name: &str,
    (started, finished): (u64, u64),
) -> serde_json::Value {
    let time = |s: u64| format!("2026-12-07T10:00:{s:02}.000Z");
    serde_json::json!({
        "index": index, "instance": instance, "matrix": matrix, "name": name,
        "run": format!("sh {name}.sh"), "needs": [], "result": "success", "exit_code": 0,
        "signal": null, "started_at": time(started), "finished_at": time(finished),
        "duration_ms": (finished - started) * 1000,
    })
}

/// A run of `app` whose record and step logs are then made those of a graph run (written by hand,
/// as the graph runner writes them): `configure`, then `cross` for two targets and `lint` (allowed
/// to fail, and failing) beside each other, then `package`; `report` into the returned folder.
pub fn graph_run_report(env: &TestEnv) -> PathBuf {
    env.app(PASSING, "");
    env.phantom().args(["run", "app"]).assert().success();
    let mut record = env.run_json("app", 1);
    let mut lint = graph_step(2, None, serde_json::Value::Null, "lint", (2, 3));
    lint["result"] = "failure".into();
    lint["exit_code"] = 1.into();
    lint["allow_failure"] = true.into();
    record["steps"] = serde_json::json!([
        graph_step(0, None, serde_json::Value::Null, "configure", (0, 2)),
        lint,
        graph_step(
            1,
            Some(1),
            serde_json::json!({"TARGET": "<riscv64>"}),
            "cross",
            (2, 6)
        ),
        graph_step(
            1,
            Some(0),
            serde_json::json!({"TARGET": "arm64"}),
            "cross",
            (2, 8)
        ),
        graph_step(3, None, serde_json::Value::Null, "package", (8, 9)),
    ]);
    std::fs::write(
        env.run_file("app", 1, "run.json"),
        serde_json::to_string_pretty(&record).unwrap(),
    )
    .unwrap();
    let steps = env.run_file("app", 1, "steps");
    std::fs::create_dir_all(&steps).unwrap();
    for (id, log) in [
        ("0", "configured\n"),
        ("1.0", "\x1b[32mbuilt arm64\x1b[0m\n"),
        (
            "1.1",
            "<script>alert(1)</script>\x1b]0;title\x07 built riscv64\n",
        ),
        ("2", "lint: 3 warnings\n"),
        ("3", "packaged\n"),
    ] {
        std::fs::write(steps.join(format!("{id}.log")), log).unwrap();
    }
    let site = env.root().join("site");
    env.phantom().arg("report").arg(&site).assert().success();
    site
}

/// SPEC §8: a graph run's page shows overlapping steps on lanes, names each by its id, name and
/// matrix values, marks the allowed failure, and shows each step's own log, escaped.
fn a_graph_runs_page_has_lanes_and_each_steps_log() {
    let env = TestEnv::new();
    let site = graph_run_report(&env);
    let page = read(&site.join("app/1.html"));
    let lanes: Vec<&str> = page.split("<div class=\"lane\">").skip(1).collect();
    assert_eq!(lanes.len(), 3, "{page}");
    let ids = |lane: &str| -> Vec<String> {
        let lane = &lane[..lane.find("</div>").unwrap()];
        lane.split("<i>")
            .skip(1)
            .map(|bar| bar[..bar.find("</i>").unwrap()].to_string())
            .collect()
    };
    assert_eq!(ids(lanes[0]), ["0", "2", "3"]);
    assert_eq!(ids(lanes[1]), ["1.1"]);
    assert_eq!(ids(lanes[2]), ["1.0"]);
    assert!(
        page.contains("title=\"[1.1] cross (TARGET=&lt;riscv64&gt;) · success · 4.0s\""),
        "{page}"
    );
    assert!(
        page.contains("class=\"failure allowed\""),
        "the allowed failure: {page}"
    );
    assert!(
        page.contains("<tr><td>1.0</td><td>cross (TARGET=arm64)</td>"),
        "{page}"
    );
    let rows: Vec<&str> = page
        .split("<tr><td>")
        .skip(1)
        .map(|row| &row[..row.find('<').unwrap()])
        .filter(|cell| cell.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows, ["0", "1.0", "1.1", "2", "3"], "in step order: {page}");
    assert!(
        page.contains("<span class=\"result failure\">failure</span> <span class=\"note\">allowed to fail</span></td>"),
        "{page}"
    );
    // Each step's log, in step order, escaped and coloured; none open: nothing failed the run.
    let details: Vec<&str> = page
        .split("<details class=\"step-log\" id=\"step-")
        .skip(1)
        .collect();
    let order: Vec<&str> = details.iter().map(|d| &d[..d.find('"').unwrap()]).collect();
    assert_eq!(order, ["0", "1.0", "1.1", "2", "3"], "{page}");
    assert!(!page.contains(" open>"), "{page}");
    assert!(
        details[1].contains("<span class=\"fg2\">built arm64</span>"),
        "{page}"
    );
    assert!(
        details[2].contains("&lt;script&gt;alert(1)&lt;/script&gt; built riscv64"),
        "{page}"
    );
    assert!(details[3].contains("lint: 3 warnings"));
    assert_inert(&site);

    // A step that failed the run is shown open.
    let mut record = env.run_json("app", 1);
    record["steps"][4]["result"] = "failure".into();
    std::fs::write(
        env.run_file("app", 1, "run.json"),
        serde_json::to_string_pretty(&record).unwrap(),
    )
    .unwrap();
    env.phantom().arg("report").arg(&site).assert().success();
    let page = read(&site.join("app/1.html"));
    assert!(
        page.contains("<details class=\"step-log\" id=\"step-3\" open>"),
        "{page}"
    );
}

/// SPEC §8: the page of a run going on draws the steps running now (from the `{"started": …}` lines
/// of its journal, written here as the graph runner writes them) on the time axis, and shows their
/// logs so far.
fn a_running_runs_page_shows_the_steps_running_now() {
    let env = TestEnv::new();
    let root = env.root().display().to_string();
    env.app(
        &format!(
            "[0]\nname = \"held\"\nrun = \"sh -c 'touch {root}/holding; {}'\"\n",
            wait_for_release(&root).trim_end().replace('\n', " ")
        ),
        "",
    );
    let run = env.spawn_run("app");
    let _release = Release {
        file: env.root().join("release"),
        runs: vec![run],
    };
    wait_for("the step", || env.root().join("holding").exists());
    let started = |index: u64, name: &str| {
        format!(
            "{{\"started\": {{\"index\": {index}, \"name\": \"{name}\", \"started_at\": \"{}\"}}}}\n",
            env.run_json("app", 1)["started_at"].as_str().unwrap()
        )
    };
    std::fs::write(
        env.run_file("app", 1, "steps.jsonl"),
        started(0, "held") + &started(1, "<beside>"),
    )
    .unwrap();
    let steps = env.run_file("app", 1, "steps");
    std::fs::create_dir_all(&steps).unwrap();
    std::fs::write(steps.join("1.log"), "half way <there>\n").unwrap();
    let site = env.root().join("site");
    env.phantom().arg("report").arg(&site).assert().success();
    let page = read(&site.join("app/1.html"));
    assert_eq!(page.matches("<div class=\"lane\">").count(), 2, "{page}");
    assert!(
        page.contains("title=\"[1] &lt;beside&gt; · running · "),
        "{page}"
    );
    assert!(page.contains("<span class=\"running\" style=\"left:0.000%;width:100.000%\""));
    assert!(page.contains("No step has ended yet"));
    assert!(
        page.contains(
            "<details class=\"step-log\" id=\"step-1\"><summary><code>[1] &lt;beside&gt;</code> \
             <span class=\"result running\">running</span>"
        ),
        "{page}"
    );
    assert!(page.contains("half way &lt;there&gt;"), "{page}");
    assert_inert(&site);
}

crate::tests! {
    a_running_runs_page_shows_the_steps_running_now,
    a_graph_runs_page_has_lanes_and_each_steps_log,
    a_running_runs_page_shows_each_step_as_it_ends,
    the_report_lists_every_run_with_its_page_log_and_badge,
    untrusted_names_and_output_are_escaped,
    with_report_dir_in_env_every_run_refreshes_the_report,
    a_report_that_cannot_be_written_is_an_error_but_never_changes_a_run,
    every_result_is_shown_coloured_escaped_and_with_its_artifacts,
    repos_are_listed_most_recently_run_first,
}
