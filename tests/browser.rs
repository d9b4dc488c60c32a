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

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::{TestEnv, find_on_path};

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
    assert!(page.contains("class=\"timeline\""));
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

/// A loopback listener that answers every request with 204 and remembers its path: what a script in
/// an artifact would reach if it ran.
struct Detector {
    port: u16,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Detector {
    fn start() -> Detector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&paths);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                    let mut line = String::new();
                    if BufReader::new(&stream).read_line(&mut line).is_ok() {
                        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                        seen.lock().unwrap().push(percent_decode(&path));
                    }
                    let _ = (&stream)
                        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
                });
            }
        });
        Detector { port, paths }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every byte but `A-Z a-z 0-9 - . _ ~` of each `/`-separated part as `%XX`.
fn percent_encode_path(path: &str) -> String {
    path.split('/')
        .map(|part| {
            part.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The report's folder served by Python's `http.server`, which types files by `/etc/mime.types` as
/// Apache and lighttpd do. Its access log is kept, to tell which files Chromium fetched.
struct Served {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl Served {
    fn start(env: &TestEnv, python: &Path, site: &Path) -> Served {
        let log = env.root().join("http.server.log");
        let mut child = Command::new(python)
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(site)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41235 (http://127.0.0.1:41235/) ..."
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {first:?}"));
        Served { child, port, log }
    }

    /// The paths fetched so far, decoded.
    fn fetched(&self) -> BTreeSet<String> {
        let log = std::fs::read(&self.log).unwrap();
        String::from_utf8_lossy(&log)
            .lines()
            .filter_map(|l| l.split("\"GET ").nth(1))
            .filter_map(|l| l.split(" HTTP/").next())
            .map(percent_decode)
            .collect()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium loads `url` (a page of the served folder) and ends; a run past a generous deadline is
/// killed and fails the test rather than hanging it. Each start has a profile of its own.
fn open_in_chromium(env: &TestEnv, url: &str) {
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut child = Command::new(chromium())
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
        .arg(format!(
            "--user-data-dir={}",
            env.root()
                .join(format!("chromium-profile-{start}"))
                .display()
        ))
        .arg("--dump-dom")
        .arg(url)
        .env_clear()
        .envs(crate::support::fixed_env(&env.home))
        // An open stdin keeps a headless Chromium that downloaded something waiting.
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed on {url}: {status}");
            return;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish loading {url} in 10 minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Every file below `dir`, as paths relative to `base` with `/`.
fn files_below(base: &Path, dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            files_below(base, &entry.path(), found);
        } else {
            let relative = entry.path().strip_prefix(base).unwrap().to_path_buf();
            found.push(relative.to_str().unwrap().to_string());
        }
    }
}

/// Issue 18: a step names its artifacts, and a web server that types files by their names
/// (`/etc/mime.types`: Apache, lighttpd, Python's `http.server`) would serve `a.xhtm` as XHTML and
/// Chromium would run its script on the report's origin. Here a step keeps a script payload under every
/// extension of this machine's `/etc/mime.types`, phantom_ci's list of inert types and a few hostile
/// shapes; the report is served by `http.server` and Chromium opens every stored artifact: no script
/// runs. Control files — the same payload saved by the test under active names (`.html`, `.xhtm`,
/// `.svg`, `.xml`) — are opened on every page and must run, so the detector is shown to work; the
/// server's log shows that every stored artifact was fetched.
fn no_stored_artifact_runs_a_script_when_the_report_is_served_by_name() {
    chromium();
    let python = find_on_path("python3")
        .unwrap_or_else(|| crate::skip!("needs python3 (apt-get install python3)"));
    let mime_types = std::fs::read_to_string("/etc/mime.types")
        .unwrap_or_else(|_| crate::skip!("needs /etc/mime.types (apt-get install media-types)"));
    let detector = Detector::start();
    let payload = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>new Image().src=\
         \"http://127.0.0.1:{}/ran\"+location.pathname</script></svg>\n",
        detector.port
    );
    let mut names: BTreeSet<String> = mime_types
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace().skip(1))
        .map(|ext| format!("a.{ext}"))
        .collect();
    assert!(names.contains("a.xhtm"), "the issue's case is in the list");
    names.extend(
        phantom_ci::report::artifacts::INERT
            .iter()
            .map(|ext| format!("a.{ext}")),
    );
    for hostile in [
        "README",
        ".htaccess",
        "a.XHTM",
        "a.Svg",
        "a.html.gz",
        "a.gz.html",
        "a..html",
        "a.txt.",
        "a.txt.php",
        "index.html.txt",
    ] {
        names.insert(hostile.to_string());
    }
    let names: Vec<String> = names.into_iter().collect();

    // The runs: a step writes the payload under each name (the report copies 1,000 per run).
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    repo.workflow("master", "[0]\nname = \"keep\"\nrun = \"sh keep.sh\"\n");
    repo.write(
        "keep.sh",
        "p=$(cat payload)\nwhile IFS= read -r n; do printf '%s\\n' \"$p\" > \"$PHANTOM_CI_ARTIFACTS/$n\"; done < names\n",
    );
    let chunks: Vec<&[String]> = names.chunks(900).collect();
    for chunk in &chunks {
        repo.write("payload", &payload);
        repo.write("names", &(chunk.join("\n") + "\n"));
        repo.commit_and_push("More artifacts");
        env.phantom().args(["run", "app"]).assert().success();
    }
    let site = env.root().join("site");
    env.phantom().arg("report").arg(&site).assert().success();
    let mut stored = Vec::new();
    for run in 1..=chunks.len() {
        let dir = site.join(format!("app/{run}/artifacts"));
        let before = stored.len();
        files_below(&site, &dir, &mut stored);
        assert_eq!(stored.len() - before, chunks[run - 1].len(), "run {run}");
    }
    assert!(
        stored.iter().any(|p| p.ends_with("/a_xhtm.txt")),
        "the issue's `a.xhtm` is stored as `a_xhtm.txt`"
    );

    // The controls, saved by the test under the names the report refuses.
    let controls: Vec<String> = ["a.html", "a.xhtm", "a.svg", "a.xml"]
        .iter()
        .map(|n| format!("control/{n}"))
        .collect();
    std::fs::create_dir_all(site.join("control")).unwrap();
    for control in &controls {
        std::fs::write(site.join(control), &payload).unwrap();
    }

    // Pages of 400 frames, each of which runs scripts as a page of the site would
    // (`allow-scripts allow-same-origin`) but cannot start a download: a headless Chromium that
    // downloads may never end.
    let served = Served::start(&env, &python, &site);
    for (i, batch) in stored.chunks(400).enumerate() {
        let mut html = String::from("<!DOCTYPE html><html><body>\n");
        for path in controls.iter().chain(batch) {
            html.push_str(&format!(
                "<iframe sandbox=\"allow-scripts allow-same-origin\" src=\"{}\" width=\"8\" \
                 height=\"8\"></iframe>\n",
                percent_encode_path(path)
            ));
        }
        html.push_str("</body></html>\n");
        let name = format!("probe-{i}.html");
        std::fs::write(site.join(&name), html).unwrap();
        open_in_chromium(&env, &format!("http://127.0.0.1:{}/{name}", served.port));
    }

    let fetched = served.fetched();
    let never_opened: Vec<&String> = stored
        .iter()
        .filter(|p| !fetched.contains(&format!("/{p}")))
        .collect();
    assert_eq!(
        never_opened,
        Vec::<&String>::new(),
        "every artifact is opened"
    );
    let ran = detector.paths();
    let pages = stored.chunks(400).count();
    for control in &controls {
        let seen = ran
            .iter()
            .filter(|p| **p == format!("/ran/{control}"))
            .count();
        assert!(
            seen >= pages,
            "the payload runs as `{control}` on each of the {pages} pages, and the detector sees \
             it: {ran:?}"
        );
    }
    let artifacts_ran: Vec<&String> = ran
        .iter()
        .filter(|p| !p.starts_with("/ran/control/"))
        .collect();
    assert_eq!(
        artifacts_ran,
        Vec::<&String>::new(),
        "a stored artifact ran a script"
    );
}

crate::tests! {
    the_report_shows_in_a_browser_what_it_should_and_fetches_nothing,
    no_stored_artifact_runs_a_script_when_the_report_is_served_by_name,
}
