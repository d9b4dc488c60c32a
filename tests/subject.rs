//! The commit's subject and author (issue 12, SPEC §6): in run.json verbatim, and shown — escaped,
//! shortened — by `status`, `logs`, the report and the chat posts.

use crate::support::TestEnv;
use crate::support::http::Server;

/// A subject an attacker who can push might write: HTML, a terminal escape, a Slack mention.
const SUBJECT: &str = "Fix <b>bold</b> \x1b[31mred\x1b]0;pwned\x07 <!channel> & more";

fn hostile_commit(env: &TestEnv) -> String {
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    let commit = repo.commit(&format!("{SUBJECT}\n\nthe body is not the subject\n"));
    let out = repo.push("master");
    assert!(out.status.success());
    env.write_repo_toml(&env.section("app", &repo, ""));
    commit
}

/// run.json keeps the subject and author as they are; `status`, `logs` and the live header show them
/// with no terminal escape left.
fn the_subject_is_recorded_verbatim_and_shown_without_escapes() {
    let env = TestEnv::new();
    let commit = hostile_commit(&env);
    let out = env.phantom().args(["run", "app"]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    assert!(
        stdout.contains("==> Fix <b>bold</b> ?[31mred?]0;pwned? <!channel> & more (Test Author <author@example.org>)\n"),
        "{stdout}"
    );

    let record = env.run_json("app", 1);
    assert_eq!(record["commit"], commit.as_str());
    assert_eq!(record["subject"], SUBJECT);
    assert_eq!(record["author"], "Test Author <author@example.org>");

    let status = env.phantom().args(["status", "--long"]).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(!status.contains('\x1b'), "{status:?}");
    assert!(
        status.contains(&format!(
            "{} Fix <b>bold</b> ?[31mred?]0;pwned? <!ch…",
            &commit[..7]
        )),
        "{status}"
    );
    let json = env.phantom().args(["status", "--json"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json[0]["last_run"]["subject"], SUBJECT);

    let logs = env.phantom().args(["logs", "app", "1"]).output().unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(!logs.contains('\x1b'), "{logs:?}");
    assert!(logs.contains("\n==> Fix <b>bold</b> ?[31mred"), "{logs}");
}

/// The attack on the report: the subject's `<b>` stays text, never markup.
fn the_subject_is_escaped_in_the_report() {
    let env = TestEnv::new();
    hostile_commit(&env);
    env.phantom().args(["run", "app"]).assert().success();
    let site = env.root().join("site");
    env.phantom().arg("report").arg(&site).assert().success();
    let escaped = "Fix &lt;b&gt;bold&lt;/b&gt; ?[31mred?]0;pwned? &lt;!channel&gt; &amp; more";
    for page in ["index.html", "app/1.html"] {
        let html = std::fs::read_to_string(site.join(page)).unwrap();
        assert!(html.contains(escaped), "{page}: {html}");
        assert!(
            !html.contains("<b>") && !html.contains('\x1b'),
            "{page}: {html}"
        );
    }
    let run_page = std::fs::read_to_string(site.join("app/1.html")).unwrap();
    assert!(
        run_page.contains("<th>author</th><td>Test Author &lt;author@example.org&gt;</td>"),
        "{run_page}"
    );
}

/// The attack on chat: the subject reaches Slack escaped (no `<!channel>` mention) and Discord in a
/// code span with mentions off.
fn the_subject_is_escaped_in_chat_posts() {
    let env = TestEnv::new();
    hostile_commit(&env);
    let server = Server::accepting();
    std::fs::write(
        env.config.join(".env"),
        format!(
            "SLACK_WEBHOOK_URL={}\nDISCORD_WEBHOOK_URL={}\nWEBHOOK_TIMEOUT=5s\n",
            server.url("/slack"),
            server.url("/discord")
        ),
    )
    .unwrap();
    env.phantom().args(["run", "app"]).assert().success();

    let slack = server.requests_to("/slack");
    assert_eq!(slack.len(), 1);
    let text = slack[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains(
            "\n`Fix &lt;b&gt;bold&lt;/b&gt;  [31mred ]0;pwned  &lt;!channel&gt; &amp; more`"
        ),
        "{text}"
    );
    assert!(!text.contains("<!") && !text.contains('\x1b'), "{text}");

    let discord = server.requests_to("/discord");
    assert_eq!(discord.len(), 1);
    let body = discord[0].json();
    let content = body["content"].as_str().unwrap();
    assert!(
        content.contains("\n`Fix <b>bold</b>  [31mred ]0;pwned  <!channel> & more`"),
        "{content}"
    );
    assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
}

crate::tests! {
    the_subject_is_recorded_verbatim_and_shown_without_escapes,
    the_subject_is_escaped_in_the_report,
    the_subject_is_escaped_in_chat_posts,
}
