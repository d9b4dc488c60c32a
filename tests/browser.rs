//! The report in a real browser (issue 13): headless Chromium loads the index and a run page from disk,
//! and the DOM it built holds what a person sees — the commit's subject, a coloured log span, the
//! history bars, the artifact link — while nothing was fetched from the network.
//!
//! "Nothing fetched" is shown two ways. Chromium runs with `--proxy-server` pointing at a loopback
//! listener this test owns, so every request a page makes (http, https, fonts, images, styles) reaches
//! the listener instead of the network; the listener answers 404 and notes the host. Chromium itself
//! calls a few Google services at start (updates, accounts) through the same proxy whatever the page:
//! those hosts are Chromium's, and are the only ones allowed. A control page that does reference other
//! hosts is loaded first, to show the listener sees such requests; the same page under the report's
//! Content-Security-Policy then fetches nothing. Second, the dumped DOM has no `src`/`href` with a
//! scheme or a `//` — nothing that could lead off the disk.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::{TestEnv, find_on_path};

mod artifacts;

/// The hosts Chromium calls by itself (component updates, sign-in, time), never a page's.
fn chromiums_own(host: &str) -> bool {
    [".google.com", ".googleapis.com", ".gstatic.com"]
        .iter()
        .any(|suffix| host.ends_with(suffix))
}

/// A loopback HTTP proxy that answers every request with 404 and remembers its host.
struct Proxy {
    port: u16,
    hosts: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&hosts);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || answer(stream, &seen));
            }
        });
        Proxy { port, hosts }
    }

    /// The hosts asked for so far, but Chromium's own.
    fn page_hosts(&self) -> Vec<String> {
        let hosts = self.hosts.lock().unwrap();
        hosts
            .iter()
            .filter(|h| !chromiums_own(h))
            .cloned()
            .collect()
    }
}

/// Reads one request (`GET http://host/… HTTP/1.1` or `CONNECT host:443 HTTP/1.1`), notes its host,
/// answers 404.
fn answer(stream: TcpStream, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let host = target
        .split("://")
        .last()
        .unwrap_or("")
        .split(['/', ':'])
        .next()
        .unwrap_or("")
        .to_string();
    seen.lock().unwrap().push(host);
    let _ = (&stream)
        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

/// Chromium, or the test ends as ignored.
fn chromium() -> PathBuf {
    find_on_path("chromium")
        .unwrap_or_else(|| crate::skip!("needs chromium (apt-get install chromium)"))
}

/// The DOM Chromium builds from the file `page`, every request sent to `proxy`.
fn dump_dom(env: &TestEnv, proxy: &Proxy, page: &Path) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--no-pings",
        ])
        .arg(format!("--proxy-server=http://127.0.0.1:{}", proxy.port))
        .arg(format!(
            "--user-data-dir={}",
            env.root().join("chromium-profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .env_clear()
        .envs(crate::support::fixed_env(&env.home))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The report's CSP as its pages carry it.
fn csp_meta(site: &Path) -> String {
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    index
        .lines()
        .find(|l| l.contains("Content-Security-Policy"))
        .unwrap()
        .to_string()
}

/// Every `src`/`href` value of `dom` that names a scheme or another host.
fn leads_elsewhere(dom: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\"", "src='", "href='", "url("] {
        for value in dom.split(attribute).skip(1) {
            let value: String = value
                .chars()
                .take_while(|c| !matches!(c, '"' | '\'' | ')' | '>'))
                .collect();
            if value.contains(':') || value.starts_with("//") {
                found.push(value);
            }
        }
    }
    found
}

/// Runs of `app`: #1 fails, #2 succeeds with colours and an artifact; then `report`.
fn report_with_runs(env: &TestEnv) -> PathBuf {
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    repo.workflow("master", "[0]\nname = \"build\"\nrun = \"sh ci.sh\"\n");
    repo.write("ci.sh", "printf '\\033[31mbroken\\033[0m\\n'\nexit 1\n");
    repo.commit_and_push("Break the build");
    env.phantom().args(["run", "app"]).assert().code(1);
    repo.write(
        "ci.sh",
        "printf '\\033[1;32mall tests passed\\033[0m\\n'\necho report > \"$PHANTOM_CI_ARTIFACTS/coverage <1>.txt\"\n",
    );
    repo.commit_and_push("Fix the <build> & speed it up");
    env.phantom().args(["run", "app"]).assert().success();
    let site = env.root().join("site");
    env.phantom().arg("report").arg(&site).assert().success();
    site
}

fn the_report_shows_in_a_browser_what_it_should_and_fetches_nothing() {
    chromium();
    let env = TestEnv::new();
    let site = report_with_runs(&env);
    let proxy = Proxy::start();

    // The control: a page with resources elsewhere makes requests the proxy sees…
    let control = env.root().join("control.html");
    let hostile = "<img src=\"http://img.probe.invalid/x.png\">\
                   <link rel=\"stylesheet\" href=\"https://css.probe.invalid/x.css\">\
                   <style>@import url(\"http://import.probe.invalid/y.css\");</style>";
    std::fs::write(
        &control,
        format!("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>{hostile}</body></html>"),
    )
    .unwrap();
    dump_dom(&env, &proxy, &control);
    let seen = proxy.page_hosts();
    assert!(
        seen.iter().any(|h| h == "img.probe.invalid")
            && seen.iter().any(|h| h == "css.probe.invalid"),
        "the proxy sees a page's requests: {seen:?}"
    );
    // …and the same page under the report's policy makes none.
    let proxy = Proxy::start();
    let guarded = env.root().join("guarded.html");
    std::fs::write(
        &guarded,
        format!("<!DOCTYPE html><html><head><meta charset=\"utf-8\">{}</head><body>{hostile}</body></html>", csp_meta(&site)),
    )
    .unwrap();
    dump_dom(&env, &proxy, &guarded);
    assert_eq!(
        proxy.page_hosts(),
        Vec::<String>::new(),
        "the CSP blocks them"
    );

    // The report itself.
    let proxy = Proxy::start();
    let index = dump_dom(&env, &proxy, &site.join("index.html"));
    assert!(
        index.contains("Fix the &lt;build&gt; &amp; speed it up"),
        "the subject: {index}"
    );
    assert!(
        index.contains("<rect class=\"success\""),
        "a history bar: {index}"
    );
    assert!(
        index.contains("<rect class=\"failure\""),
        "a history bar: {index}"
    );
    assert!(index.contains("<a href=\"app/2.html\">"), "{index}");
    assert!(index.contains("<img src=\"badge/app.svg\""), "{index}");
    assert!(!index.contains("<script"));
    assert_eq!(leads_elsewhere(&index), Vec::<String>::new());

    let page = dump_dom(&env, &proxy, &site.join("app/2.html"));
    assert!(
        page.contains("<h1>Fix the &lt;build&gt; &amp; speed it up</h1>"),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"bold fg2\">all tests passed</span>"),
        "a coloured span: {page}"
    );
    assert!(
        page.contains("<a href=\"2/artifacts/coverage%20%3C1%3E.txt\" download=\"\">coverage &lt;1&gt;.txt</a>"),
        "the artifact's link: {page}"
    );
    assert!(
        page.contains("class=\"timeline\"") || page.contains("class=\"lanes\""),
        "the steps' picture: {page}"
    );
    assert!(!page.contains("<script") && !page.contains('\u{1b}'));
    assert_eq!(leads_elsewhere(&page), Vec::<String>::new());
    let failed = dump_dom(&env, &proxy, &site.join("app/1.html"));
    assert!(
        failed.contains("<span class=\"fg1\">broken</span>"),
        "{failed}"
    );

    assert_eq!(
        proxy.page_hosts(),
        Vec::<String>::new(),
        "the report's pages fetched something from the network"
    );
    // The artifact the link leads to is on disk, beside the page.
    assert_eq!(
        std::fs::read_to_string(site.join("app/2/artifacts/coverage <1>.txt")).unwrap(),
        "report\n"
    );
}

/// SPEC §8: a graph run's page — lanes, each step's log in a `<details>` — as the browser builds it:
/// the lanes and the logs are there, the log's `<script>` is text, and nothing is fetched.
fn a_graph_runs_page_shows_in_a_browser_and_fetches_nothing() {
    chromium();
    let env = TestEnv::new();
    let site = crate::report::graph_run_report(&env);
    let proxy = Proxy::start();
    let page = dump_dom(&env, &proxy, &site.join("app/1.html"));
    assert_eq!(page.matches("<div class=\"lane\">").count(), 3, "{page}");
    assert!(page.contains("class=\"failure allowed\""), "{page}");
    assert_eq!(
        page.matches("<details class=\"step-log\"").count(),
        5,
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; built riscv64"),
        "{page}"
    );
    assert!(!page.contains("<script") && !page.contains('\u{1b}'));
    assert_eq!(leads_elsewhere(&page), Vec::<String>::new());
    assert_eq!(proxy.page_hosts(), Vec::<String>::new());
}

crate::tests! {
    a_graph_runs_page_shows_in_a_browser_and_fetches_nothing,
    the_report_shows_in_a_browser_what_it_should_and_fetches_nothing,
    artifacts::no_stored_artifact_runs_a_script_when_the_report_is_served_by_name,
}
