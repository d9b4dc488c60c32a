//! Notifications: Discord, Slack and generic webhooks after a run, against a server on 127.0.0.1 that
//! the test starts (issue #5).

use serde_json::{Value, json};

use crate::support::http::{Reply, Server, refusing_url};
use crate::support::{TestEnv, TestRepo};

const DISCORD: &str = "/api/webhooks/123456789/DiscordT0ken-xyz";
const SLACK: &str = "/services/T0001/B0002/SlackT0kenQ";
const GENERIC: &str = "/generic/GenericT0ken?key=QueryT0ken9";
/// What must never show: every secret part of the three URLs.
const SECRETS: &[&str] = &[
    "DiscordT0ken",
    "123456789",
    "SlackT0ken",
    "T0001",
    "B0002",
    "GenericT0ken",
    "QueryT0ken",
    "/api/webhooks",
    "/services/",
    "/generic",
];

const FAILING: &str = "[0]\nrun = \"echo building\"\n[1]\nname = \"test\"\nrun = \"sh -c 'echo FAILED-HERE; exit 3'\"\n";
const PASSING: &str = "[0]\nrun = \"echo fine\"\n";

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(env: &TestEnv, repo: &str) -> Output {
    let output = env.phantom().args(["run", repo]).output().unwrap();
    Output {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn project<'a>(env: &'a TestEnv, workflow: &str, extra: &str) -> TestRepo<'a> {
    let (repo, _) = env.app(workflow, extra);
    repo
}

fn dotenv(env: &TestEnv, lines: &[String]) {
    std::fs::write(env.config.join(".env"), lines.join("\n") + "\n").unwrap();
}

fn all_hooks(env: &TestEnv, server: &Server) {
    dotenv(
        env,
        &[
            "# the three webhooks".into(),
            format!("DISCORD_WEBHOOK_URL={}", server.url(DISCORD)),
            format!("SLACK_WEBHOOK_URL='{}'", server.url(SLACK)),
            format!("WEBHOOK_URL=\"{}\"", server.url(GENERIC)),
            "WEBHOOK_TIMEOUT=2s".into(),
        ],
    );
}

fn last_line(env: &TestEnv, run: u64) -> String {
    env.log("app", run).lines().last().unwrap().to_string()
}

fn content(request: &crate::support::http::Request) -> String {
    request.json()["content"].as_str().unwrap().to_string()
}

fn a_failing_run_posts_once_to_each_configured_hook() {
    let env = TestEnv::new();
    let repo = project(&env, FAILING, "");
    let commit = env.git(&repo.work, &["rev-parse", "HEAD"]);
    let server = Server::accepting();
    all_hooks(&env, &server);

    let out = run(&env, "app");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!out.stderr.contains("webhook"), "{}", out.stderr);
    assert_eq!(server.requests().len(), 3, "{:?}", server.requests());
    let last = last_line(&env, 1);
    assert!(last.starts_with("==> app #1 failure in "), "{last}");

    let [discord] = &server.requests_to(DISCORD)[..] else {
        panic!("one post to Discord")
    };
    assert_eq!(discord.method, "POST");
    assert!(
        discord
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body = discord.json();
    let text = content(discord);
    for part in [
        "**app** #1",
        "**failure**",
        "branch `master`",
        &format!("commit `{}`", &commit[..7]),
        "failing step `[1] test`: `sh -c 'echo FAILED-HERE; exit 3'`",
        "```text\n",
        "\nFAILED-HERE\n",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    assert!(text.ends_with(&format!("\n{last}\n```")), "{text}");
    assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
    assert_eq!(body["embeds"][0]["title"], "app #1: failure");

    let [slack] = &server.requests_to(SLACK)[..] else {
        panic!("one post to Slack")
    };
    let text = slack.json()["text"].as_str().unwrap().to_string();
    for part in [
        "*app* #1",
        "*failure*",
        "branch `master`",
        &format!("commit `{}`", &commit[..7]),
        "failing step `[1] test`",
        "\nFAILED-HERE\n",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    let escaped_last = last.replace('>', "&gt;");
    assert!(text.ends_with(&format!("\n{escaped_last}\n```")), "{text}");

    let [generic] = &server.requests_to(GENERIC)[..] else {
        panic!("one post to the generic webhook")
    };
    assert!(
        generic
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(generic.json(), env.run_json("app", 1));
    assert_eq!(generic.json()["result"], "failure");
}

/// SPEC §8: a post names every failed step, not only the first (here a failing `always` step after
/// the failing step).
fn a_post_names_every_failed_step() {
    let env = TestEnv::new();
    project(
        &env,
        "[0]\nname = \"test\"\nrun = \"sh -c 'exit 3'\"\n[1]\nrun = \"true\"\n\
         [2]\nname = \"cleanup\"\nrun = \"sh -c 'exit 4'\"\nalways = true\n",
        "",
    );
    let server = Server::accepting();
    dotenv(
        &env,
        &[format!("DISCORD_WEBHOOK_URL={}", server.url(DISCORD))],
    );
    assert_eq!(run(&env, "app").code, 1);
    let [discord] = &server.requests_to(DISCORD)[..] else {
        panic!("one post to Discord")
    };
    let text = content(discord);
    assert!(
        text.contains(
            "\nfailing step `[0] test`: `sh -c 'exit 3'`\nfailing step `[2] cleanup`: `sh -c 'exit 4'`\n"
        ),
        "{text}"
    );
    assert!(!text.contains("[1]"), "{text}");
}

fn a_five_megabyte_log_still_fits_in_one_discord_message() {
    let env = TestEnv::new();
    project(
        &env,
        "[0]\nrun = '''sh -c \"yes 'some build output, line after line' | head -c 5000000; echo; echo the-end; exit 1\"'''\n",
        "",
    );
    let server = Server::accepting();
    dotenv(
        &env,
        &[format!("DISCORD_WEBHOOK_URL={}", server.url(DISCORD))],
    );

    let out = run(&env, "app");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(env.log("app", 1).len() > 5_000_000);
    let [discord] = &server.requests_to(DISCORD)[..] else {
        panic!("one post to Discord")
    };
    let text = content(discord);
    assert!(
        text.chars().count() <= 2000,
        "{} characters",
        text.chars().count()
    );
    assert!(text.encode_utf16().count() <= 2000);
    assert!(text.contains("\nthe-end\n"), "{text}");
    assert!(text.contains("\nsome build output, line after line\n"));
    assert!(
        text.ends_with(&format!("\n{}\n```", last_line(&env, 1))),
        "{text}"
    );
}

fn notify_failure_posts_nothing_for_a_success() {
    let env = TestEnv::new();
    let repo = project(&env, PASSING, "notify = \"failure\"");
    let server = Server::accepting();
    all_hooks(&env, &server);

    let out = run(&env, "app");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.run_json("app", 1)["result"], "success");
    assert_eq!(server.requests().len(), 0);

    repo.workflow("master", FAILING);
    repo.commit_and_push("now it fails");
    assert_eq!(run(&env, "app").code, 1);
    assert_eq!(
        server.requests().len(),
        3,
        "a failure is posted to each hook"
    );
}

fn notify_change_posts_only_when_the_result_differs_from_the_previous_run() {
    let env = TestEnv::new();
    let status = env.root().join("status");
    project(
        &env,
        &format!("[0]\nrun = \"sh -c 'exit $(cat {})'\"\n", status.display()),
        "notify = \"change\"",
    );
    let server = Server::accepting();
    dotenv(
        &env,
        &[format!("DISCORD_WEBHOOK_URL={}", server.url(DISCORD))],
    );

    // run:            1 (first)  2        3         4         5
    let statuses = ["0", "0", "1", "1", "0"];
    let posted_after = [1, 1, 2, 2, 3];
    for (i, (code, posted)) in statuses.iter().zip(posted_after).enumerate() {
        std::fs::write(&status, code).unwrap();
        let out = run(&env, "app");
        assert_eq!(out.code.to_string(), if *code == "0" { "0" } else { "1" });
        assert_eq!(
            server.requests().len(),
            posted,
            "after run {}: {:?}",
            i + 1,
            server.requests()
        );
    }
    let runs: Vec<String> = server
        .requests()
        .iter()
        .map(|r| content(r).split(" · ").next().unwrap().to_string())
        .collect();
    assert_eq!(runs, ["**app** #1", "**app** #3", "**app** #5"]);
}

fn a_429_is_retried_exactly_once_after_its_retry_after() {
    let env = TestEnv::new();
    project(&env, PASSING, "");
    let server = Server::scripted(|path, n| match (path, n) {
        (DISCORD, 0) => Reply::status(
            429,
            r#"{"message": "You are being rate limited.", "retry_after": 0.2, "global": false}"#,
        ),
        (SLACK, _) => Reply::Status {
            code: 429,
            headers: vec![("Retry-After", "0".into())],
            body: "rate_limited".into(),
        },
        _ => Reply::no_content(),
    });
    dotenv(
        &env,
        &[
            format!("DISCORD_WEBHOOK_URL={}", server.url(DISCORD)),
            format!("SLACK_WEBHOOK_URL={}", server.url(SLACK)),
        ],
    );

    let out = run(&env, "app");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let discord = server.requests_to(DISCORD);
    assert_eq!(discord.len(), 2, "one retry after the 429");
    assert_eq!(discord[0].body, discord[1].body, "the same message again");
    assert!(!out.stderr.contains("webhook `discord`"), "{}", out.stderr);
    assert_eq!(server.requests_to(SLACK).len(), 2, "exactly one retry");
    assert!(
        out.stderr.contains(&format!(
            "phantom_ci: webhook `slack` ({}/…) failed: rate limited (HTTP 429)",
            server.origin()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(env.run_json("app", 1)["result"], "success");
}

fn a_webhook_that_never_answers_costs_at_most_the_timeout() {
    let env = TestEnv::new();
    project(&env, PASSING, "");
    let server = Server::scripted(|_, _| Reply::Hang);
    dotenv(
        &env,
        &[
            format!("DISCORD_WEBHOOK_URL={}", server.url(DISCORD)),
            "WEBHOOK_TIMEOUT=1s".into(),
        ],
    );

    let out = run(&env, "app");
    assert_eq!(out.code, 0, "the run succeeded: {}", out.stderr);
    assert_eq!(
        server.requests_to(DISCORD).len(),
        1,
        "no retry after a timeout"
    );
    assert!(
        out.stderr.contains(&format!(
            "phantom_ci: webhook `discord` ({}/…) failed: timed out after 1s",
            server.origin()
        )),
        "{}",
        out.stderr
    );
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "success");
    assert_eq!(record["message"], Value::Null);
}

fn a_refused_connection_changes_neither_exit_status_nor_run_json() {
    let env = TestEnv::new();
    let repo = project(&env, PASSING, "");
    dotenv(
        &env,
        &[
            format!("DISCORD_WEBHOOK_URL={}", refusing_url(DISCORD)),
            format!("SLACK_WEBHOOK_URL={}", refusing_url(SLACK)),
            format!("WEBHOOK_URL={}", refusing_url(GENERIC)),
        ],
    );

    let out = run(&env, "app");
    assert_eq!(out.code, 0, "{}", out.stderr);
    for name in ["discord", "slack", "generic"] {
        assert!(
            out.stderr
                .contains(&format!("phantom_ci: webhook `{name}` (http://127.0.0.1:")),
            "{}",
            out.stderr
        );
    }
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "success");
    assert_eq!(record["message"], Value::Null);
    assert_eq!(record["steps"][0]["result"], "success");

    repo.workflow("master", FAILING);
    repo.commit_and_push("fails");
    let out = run(&env, "app");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(env.run_json("app", 2)["result"], "failure");
}

fn the_webhook_path_and_token_appear_nowhere() {
    let env = TestEnv::new();
    project(
        &env,
        "[0]\nrun = \"env\"\n[1]\nrun = \"sh -c 'exit 1'\"\n",
        // Had phantom_ci loaded .env into its environment, `pass_env` would hand it to the steps.
        "pass_env = [\"DISCORD_WEBHOOK_URL\", \"SLACK_WEBHOOK_URL\", \"WEBHOOK_URL\"]",
    );
    // Answers that echo the URL back must not bring it to stderr either.
    let server = Server::scripted(|path, _| match path {
        DISCORD => Reply::status(404, &format!(r#"{{"message": "Unknown Webhook {path}"}}"#)),
        SLACK => Reply::status(500, &format!("no such hook: {path}")),
        _ => Reply::no_content(),
    });
    all_hooks(&env, &server);

    let out = run(&env, "app");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout.contains("PHANTOM_CI=true"),
        "the step printed its environment"
    );
    assert_eq!(server.requests().len(), 3);
    let origin = server.origin();
    assert!(
        out.stderr.contains(&format!(
            "phantom_ci: webhook `discord` ({origin}/…) failed: HTTP 404 Not Found (check the \
             webhook URL in .env)\n"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "phantom_ci: webhook `slack` ({origin}/…) failed: HTTP 500 Internal Server Error\n"
        )),
        "{}",
        out.stderr
    );
    let run_json = std::fs::read_to_string(env.data.join("runs/app/1/run.json")).unwrap();
    let log = env.log("app", 1);
    for (what, text) in [
        ("stdout", &out.stdout),
        ("stderr", &out.stderr),
        ("log", &log),
        ("run.json", &run_json),
    ] {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
        }
    }
}

fn untrusted_text_cannot_ping_or_inject() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.write("msg.txt", "<!channel> @here <@U1> ``` done\n");
    repo.workflow(
        "@everyone",
        "[0]\nrun = \"cat msg.txt\"\n[1]\nrun = \"false\"\n",
    );
    repo.commit("workflow");
    assert!(repo.push("@everyone").status.success());
    env.write_repo_toml(&env.section("app", &repo, "target_branch = \"@everyone\""));
    let server = Server::accepting();
    all_hooks(&env, &server);

    assert_eq!(run(&env, "app").code, 1);
    let [discord] = &server.requests_to(DISCORD)[..] else {
        panic!("one post to Discord")
    };
    let body = discord.json();
    assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
    let text = content(discord);
    assert!(text.contains("branch `@everyone`"), "{text}");
    assert_eq!(
        text.matches("```").count(),
        2,
        "the log cannot close the block: {text}"
    );
    assert!(
        text.contains("<!channel> @here <@U1> `\u{200b}`\u{200b}` done"),
        "{text}"
    );

    let [slack] = &server.requests_to(SLACK)[..] else {
        panic!("one post to Slack")
    };
    let text = slack.json()["text"].as_str().unwrap().to_string();
    assert!(!text.contains("<!") && !text.contains("<@"), "{text}");
    assert!(
        text.contains("&lt;!channel&gt; @here &lt;@U1&gt;"),
        "{text}"
    );
    assert_eq!(text.matches("```").count(), 2, "{text}");
}

fn a_broken_env_file_is_reported_without_its_text_and_changes_nothing() {
    let env = TestEnv::new();
    project(&env, PASSING, "");
    let server = Server::accepting();
    dotenv(
        &env,
        &[
            "# comment".into(),
            format!(
                "DISCORD_WEBHOOK_URL={} and-s3cret-words",
                server.url(DISCORD)
            ),
        ],
    );

    let out = run(&env, "app");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(".env` line 2: "), "{}", out.stderr);
    assert!(
        out.stderr.contains("no webhook was posted"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("s3cret") && !out.stderr.contains("DiscordT0ken"));
    assert_eq!(server.requests().len(), 0);
    assert_eq!(env.run_json("app", 1)["result"], "success");
}

/// Issue 22: someone trying a repository out with `run <path>` (not in Repo.toml) does not post to the
/// team's chat; `--notify` asks for it.
fn an_ad_hoc_run_notifies_nobody_unless_asked() {
    let env = TestEnv::new();
    let repo = env.repo("tryout");
    repo.workflow("master", PASSING);
    repo.commit("one");
    let server = Server::accepting();
    all_hooks(&env, &server);
    let path = repo.work.to_str().unwrap();
    let me = crate::support::current_user();
    env.phantom()
        .args(["run", path, "--run-as", &me])
        .assert()
        .success();
    assert!(
        server.requests().is_empty(),
        "{:?}",
        server.requests().len()
    );
    env.phantom()
        .args(["run", path, "--run-as", &me, "--notify"])
        .assert()
        .success();
    assert_eq!(server.requests_to(DISCORD).len(), 1);
    assert_eq!(server.requests_to(GENERIC).len(), 1);
    assert_eq!(
        server.requests().len(),
        3,
        "one post to each of the three hooks"
    );
}

crate::tests! {
    an_ad_hoc_run_notifies_nobody_unless_asked,
    a_failing_run_posts_once_to_each_configured_hook,
    a_post_names_every_failed_step,
    a_five_megabyte_log_still_fits_in_one_discord_message,
    notify_failure_posts_nothing_for_a_success,
    notify_change_posts_only_when_the_result_differs_from_the_previous_run,
    a_429_is_retried_exactly_once_after_its_retry_after,
    a_webhook_that_never_answers_costs_at_most_the_timeout,
    a_refused_connection_changes_neither_exit_status_nor_run_json,
    the_webhook_path_and_token_appear_nowhere,
    untrusted_text_cannot_ping_or_inject,
    a_broken_env_file_is_reported_without_its_text_and_changes_nothing,
}
