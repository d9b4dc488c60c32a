//! Issue 18: the report's artifacts on a web server that types files by their names. A step keeps a
//! script payload under every extension of `/etc/mime.types`; Python's `http.server` serves the
//! report; headless Chromium opens every stored artifact, and a loopback listener this test owns would
//! see any script that ran.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use super::chromium;
use crate::support::{TestEnv, find_on_path};

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
pub(super) fn no_stored_artifact_runs_a_script_when_the_report_is_served_by_name() {
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
