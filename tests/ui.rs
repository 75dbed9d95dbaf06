//! The web UI (`verdict serve --ui-listen`) through the real daemon: in headless Chromium
//! (`tests/ui/browser.py`, Playwright driving the system's `chromium`), asserting on what a
//! person sees (the access matrix's cells and their rules' links; the playground's decision,
//! rule, reason, trace and PlanFilter SQL after filling the form; the diff page, file changes and
//! access changes, before and after a real reload of the policy directory), with the
//! screenshots kept in `target/ui-screenshots/`; and over plain HTTP, what a browser is not
//! needed for (escaping, read-only methods, files outside the set, headers, the Host check
//! against DNS rebinding, the listener off by default).
//!
//! The browser test needs `chromium` (Debian's package) and python3 with `playwright`
//! (.ci/requirements-tools.txt): CI installs them (.ci/run); elsewhere it is listed as ignored
//! (see `common::trial`).
use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::Value as Json;

pub fn trials() -> Vec<libtest_mimic::Trial> {
    let chromium = common::Tool::command(
        "chromium (apt-get install chromium)",
        &chromium(),
        &["--version"],
    );
    let playwright = common::Tool::command(
        "python3 with playwright (pip install -r .ci/requirements-tools.txt)",
        "python3",
        &["-c", "import playwright.sync_api"],
    );
    vec![
        common::trial(
            "ui::a_person_reads_the_matrix_decides_in_the_playground_and_sees_the_last_reload_in_chromium",
            &[chromium, playwright],
            a_person_reads_the_matrix_decides_in_the_playground_and_sees_the_last_reload_in_chromium,
        ),
        common::trial(
            "ui::pages_escape_policy_text_and_the_ui_is_read_only",
            &[],
            pages_escape_policy_text_and_the_ui_is_read_only,
        ),
        common::trial(
            "ui::the_ui_answers_only_requests_for_hosts_it_trusts",
            &[],
            the_ui_answers_only_requests_for_hosts_it_trusts,
        ),
        common::trial(
            "ui::the_access_changes_of_a_reload_are_computed_as_it_is_published",
            &[],
            the_access_changes_of_a_reload_are_computed_as_it_is_published,
        ),
        common::trial(
            "ui::the_ui_is_off_unless_asked_for",
            &[],
            the_ui_is_off_unless_asked_for,
        ),
    ]
}

fn chromium() -> String {
    std::env::var("VERDICT_CHROMIUM").unwrap_or_else(|_| "chromium".to_string())
}

/// Where the screenshots of a run are kept: `target/ui-screenshots/`.
fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("ui-screenshots")
}

/// A copy of the bundled clinic set in a temporary directory.
fn clinic_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = common::bundled_policies().join("clinic");
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// Widens the clinic copy in `dir`: nurses may also read, search and update invoices.
fn give_nurses_invoices(dir: &Path) {
    let roles = dir.join("roles.yaml");
    let text = std::fs::read_to_string(&roles).unwrap();
    let widened = text.replace(
        "      kinds: [Patient, Observation]\n",
        "      kinds: [Patient, Observation, Invoice]\n",
    );
    assert_ne!(text, widened);
    std::fs::write(&roles, widened).unwrap();
}

/// The daemon on a copy of the clinic with the UI on.
fn daemon(policies: &Path) -> (Daemon, String) {
    let daemon = Daemon::start(
        policies,
        &[
            "--ui-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--reload-debounce-ms",
            "20",
        ],
    );
    let url = format!(
        "http://{}",
        daemon.ui_addr.clone().expect("the UI announced")
    );
    (daemon, url)
}

/// Runs the browser script for `phase`; what it saw.
fn browse(url: &str, phase: &str) -> Json {
    let started = Instant::now();
    let mut child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/browser.py"))
        .args([url, screenshots().to_str().unwrap(), phase])
        .env("VERDICT_CHROMIUM", chromium_path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the browser script failed ({phase}):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the browser script printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    assert_eq!(seen["script_errors"], serde_json::json!([]), "{seen}");
    seen
}

/// The chromium executable's path (Playwright wants a path, not a command name).
fn chromium_path() -> String {
    let name = chromium();
    if name.contains('/') {
        return name;
    }
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .expect("sh runs");
    String::from_utf8_lossy(&found.stdout).trim().to_string()
}

fn a_person_reads_the_matrix_decides_in_the_playground_and_sees_the_last_reload_in_chromium() {
    let policies = clinic_copy();
    let (daemon, url) = daemon(policies.path());
    let version = daemon_version(&daemon);

    let seen = browse(&url, "start");
    // The matrix: every class x kind x action of the clinic, the cells as the analysis has them.
    let matrix = &seen["matrix"];
    println!(
        "matrix page load in chromium, ms (first, then twice cached): {}",
        matrix["load_ms"]
    );
    assert_eq!(matrix["version"], version.as_str());
    assert_eq!(
        matrix["kinds"],
        serde_json::json!([
            "Invoice",
            "MedicationRequest",
            "Note",
            "Observation",
            "Patient"
        ])
    );
    let m = verdict::analysis::matrix(&verdict::compile::PolicySet::load(policies.path()).unwrap());
    assert_eq!(matrix["classes"], m.classes.len(), "{seen}");
    assert_eq!(matrix["cells"], m.cells.len(), "{seen}");
    let physician = &matrix["physician_reads_patient"];
    assert_eq!(physician["access"], "conditional", "{seen}");
    assert_eq!(
        physician["condition"][0].as_str().unwrap(),
        m.cell("role:physician/scope:user", "Patient", "read")
            .unwrap()
            .side
            .condition
            .as_deref()
            .unwrap()
    );
    assert!(
        physician["condition"][0]
            .as_str()
            .unwrap()
            .contains("practice_id == P.attr.practice_id"),
        "{seen}"
    );
    assert!(
        physician["rules"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("physician/clinical-care")),
        "{seen}"
    );
    assert!(
        matrix["rule_target"]
            .as_str()
            .unwrap()
            .contains("- name: only-the-primary-physician"),
        "the first rule's link opens its line: {seen}"
    );
    assert_eq!(matrix["nurse_reads_invoice"]["access"], "never", "{seen}");
    assert_eq!(matrix["system_reads_invoice"]["access"], "always", "{seen}");
    assert_eq!(
        matrix["system_reads_invoice"]["rules"],
        serde_json::json!(["system/read-everything"])
    );
    assert_eq!(
        matrix["unscoped_physician_reads_patient"]["rules"],
        serde_json::json!(["smart-on-fhir/scope-gate"]),
        "{seen}"
    );
    assert_eq!(
        matrix["rows_shown_for_physician"], 4,
        "the class filter: {seen}"
    );

    let playground = &seen["playground"];
    assert_eq!(playground["version"], version.as_str(), "{seen}");
    // resource, action, effect, rule, reason: as the form built the request.
    let decision: Vec<&str> = playground["decision"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        decision[..4],
        [
            "Patient <img src=x onerror=alert(1)>",
            "read",
            "ALLOW",
            "physician/clinical-care"
        ],
        "{seen}"
    );
    assert!(decision[4].contains("clinical-care"), "{seen}");
    assert_eq!(
        playground["images_in_decisions"], 0,
        "typed markup stays text"
    );
    assert_eq!(playground["decided_version"], version.as_str());
    // The trace of the rules considered (explain): the deciding allow, linked to its line.
    let trace: Vec<&str> = playground["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        trace.contains(&"allow physician/clinical-care: held ← decided"),
        "{trace:?}"
    );
    assert!(
        trace
            .iter()
            .any(|s| s.starts_with("deny celebrity-patients/only-the-primary-physician: ")),
        "{trace:?}"
    );
    assert!(
        playground["trace_links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l.as_str().unwrap().starts_with("/source/")),
        "{seen}"
    );
    // The rule links to its line in roles.yaml.
    let link = playground["rule_link"].as_str().unwrap();
    assert!(link.starts_with("/source/roles.yaml#L"), "{link}");
    assert_eq!(playground["rule_page_title"], "roles.yaml");
    assert!(
        playground["rule_target"]
            .as_str()
            .unwrap()
            .contains("- name: clinical-care"),
        "{seen}"
    );
    // PlanFilter: the physician's Patient rows, as a filter and as PostgreSQL.
    let plan = &playground["plan"];
    assert_eq!(plan["kind"], "PLAN_KIND_CONDITIONAL", "{seen}");
    assert!(
        plan["filter"].as_str().unwrap().contains("practice_id"),
        "{seen}"
    );
    assert!(plan["sql"].as_str().unwrap().contains("$1"), "{seen}");
    assert!(plan["params"].as_str().unwrap().contains("\"7\""), "{seen}");
    // Errors are said, nothing breaks.
    assert!(
        playground["error_not_json"]
            .as_str()
            .unwrap()
            .starts_with("The request is not JSON"),
        "{seen}"
    );
    let refused = playground["error_refused"].as_str().unwrap();
    assert!(
        refused.starts_with("INVALID_ARGUMENT: ") && refused.contains("rank"),
        "{refused}"
    );
    // Before any reload, the diff page says there is nothing to compare.
    assert!(
        seen["diff"]["text"]
            .as_str()
            .unwrap()
            .contains("No previous version"),
        "{seen}"
    );

    // A real reload: nurses may now also read, search and update invoices.
    give_nurses_invoices(policies.path());
    let reloaded = wait_for_new_version(&daemon, &version);

    let seen = browse(&url, "reload");
    let diff = &seen["diff"];
    assert_eq!(diff["version"], reloaded.as_str(), "{seen}");
    let text = diff["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("From {version}")) && text.contains(&format!("to {reloaded}")),
        "{text}"
    );
    assert_eq!(diff["files"], serde_json::json!(["roles.yaml changed"]));
    // The access changes: nurses' Invoice access widened, each change with a request that flips.
    let summary = diff["summary"][0].as_str().unwrap();
    assert!(
        summary.contains("widened, 0 narrowed, 0 changed, 0 unproved, 0 undetermined"),
        "{summary}"
    );
    let changes = diff["changes"].as_array().unwrap();
    assert!(!changes.is_empty(), "{seen}");
    for change in changes {
        let cells = change["cells"].as_array().unwrap();
        assert_eq!(cells[0], "Invoice", "{change}");
        assert_eq!(cells[2], "widened", "{change}");
        assert!(cells[4].as_str().unwrap().starts_with("never"), "{change}");
        assert!(
            cells[5].as_str().unwrap().contains("nurse/chart-work"),
            "{change}"
        );
        assert!(
            change["classes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c.as_str().unwrap().starts_with("nurse")),
            "{change}"
        );
        let gained = change["gained"][0].as_str().unwrap();
        assert!(
            gained.contains("before deny → after allow (nurse/chart-work)"),
            "{gained}"
        );
    }
    let actions: std::collections::BTreeSet<&str> = changes
        .iter()
        .map(|c| c["cells"][1].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["read", "search", "update"].into_iter().collect(),
        "{seen}"
    );
    // The matrix of the new version shows the nurses' new access.
    let nurse = &seen["matrix"]["nurse_reads_invoice"];
    assert_eq!(seen["matrix"]["version"], reloaded.as_str());
    assert_eq!(nurse["access"], "conditional", "{seen}");
    assert_eq!(
        nurse["condition"],
        serde_json::json!(["practice_id == P.attr.practice_id"])
    );
    assert!(nurse["rules"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("nurse/chart-work")));
    assert_eq!(
        diff["added"],
        serde_json::json!(["      kinds: [Patient, Observation, Invoice]"])
    );
    assert_eq!(
        diff["removed"],
        serde_json::json!(["      kinds: [Patient, Observation]"])
    );
    println!("screenshots: {}", screenshots().display());
}

/// The active policy version, from `GET /v1/status`.
fn daemon_version(daemon: &Daemon) -> String {
    let url = format!("http://{}/v1/status", daemon.http_addr.as_ref().unwrap());
    let status: Json = ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    status["active_version"].as_str().unwrap().to_string()
}

/// Waits until the daemon publishes a version other than `old` (the reload the test caused).
fn wait_for_new_version(daemon: &Daemon, old: &str) -> String {
    let mut version = old.to_string();
    common::wait_for_blocking("the reload is published", || {
        version = daemon_version(daemon);
        version != old
    });
    version
}

/// `GET url`: status, headers of interest and body, whatever the status.
fn get(url: &str) -> (u16, String, String) {
    let mut response = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    let csp = response
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let status = response.status().as_u16();
    (status, csp, response.body_mut().read_to_string().unwrap())
}

fn pages_escape_policy_text_and_the_ui_is_read_only() {
    let policies = clinic_copy();
    // A description with markup in it: the source page shows it as text.
    let roles = policies.path().join("roles.yaml");
    let text = std::fs::read_to_string(&roles).unwrap().replace(
        "description: physicians run the clinical care of their practice",
        "description: \"<script>alert('x')</script> & co\"",
    );
    std::fs::write(&roles, text).unwrap();
    let (_daemon, url) = daemon(policies.path());

    let (status, csp, body) = get(&format!("{url}/source/roles.yaml"));
    assert_eq!(status, 200);
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        body.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"),
        "{body}"
    );
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(body.contains("<tr id=\"L5\""), "lines have anchors");

    // Only files of the loaded set: no path outside it, however spelled.
    for path in [
        "/source/../Cargo.toml",
        "/source/%2e%2e/%2e%2e/etc/passwd",
        "/source//etc/passwd",
        "/source/missing.yaml",
        "/source/clinic_test.yaml",
    ] {
        let (status, _, body) = get(&format!("{url}{path}"));
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("root:"), "{path}");
    }
    // Before a reload there is no previous version to show.
    let (status, _, _) = get(&format!("{url}/source/roles.yaml?rev=previous"));
    assert_eq!(status, 404);

    // Read-only: pages refuse other methods; the playground's API takes JSON only.
    for path in ["/playground", "/diff", "/sources", "/source/roles.yaml"] {
        let response = ureq::post(&format!("{url}{path}"))
            .config()
            .http_status_as_error(false)
            .build()
            .send("x")
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "POST {path}");
    }
    let response = ureq::post(&format!("{url}/api/check"))
        .config()
        .http_status_as_error(false)
        .build()
        .header("content-type", "application/x-www-form-urlencoded")
        .send("principal=x")
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    let (status, _, _) = get(&format!("{url}/api/check"));
    assert_eq!(status, 405);
}

fn the_ui_is_off_unless_asked_for() {
    let daemon = Daemon::start(&common::bundled_policies().join("clinic"), &[]);
    assert!(daemon.ui_addr.is_none());
    assert!(
        !daemon.logs().iter().any(|l| l.contains("web UI")),
        "{:?}",
        daemon.logs()
    );
}

/// One HTTP/1.1 request written by hand on a fresh connection, with the `Host` header given (or
/// none): status and body. A browser puts the name of the page's site there, whatever address
/// that name resolved to.
fn request_for_host(addr: &str, method: &str, path: &str, host: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    let body = if method == "POST" {
        r#"{"principal":{"id":"u","roles":["physician"]},"resources":[{"resource":{"kind":"Patient","id":"p"},"actions":["read"]}]}"#
    } else {
        ""
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    (status, answer)
}

fn the_ui_answers_only_requests_for_hosts_it_trusts() {
    let daemon = Daemon::start(
        &common::bundled_policies().join("clinic"),
        &[
            "--ui-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--ui-allowed-host",
            "verdict.example.org,.corp.example",
        ],
    );
    let addr = daemon.ui_addr.clone().expect("the UI announced");
    let port = addr.rsplit(':').next().unwrap();
    let refused_total = "verdict_ui_host_refused_total";
    assert_eq!(daemon.metric(refused_total), 0.0);

    // DNS rebinding: a page of another site whose name now resolves to 127.0.0.1. Its requests
    // reach the socket with the site's name as Host: refused before any page, the playground's
    // API included, with what to do.
    let evil = format!("rebind.evil.example:{port}");
    let mut refused = 0.0;
    for (method, path) in [
        ("GET", "/matrix"),
        ("GET", "/source/roles.yaml"),
        ("GET", "/no-such-page"),
        ("POST", "/api/check"),
    ] {
        let (status, answer) = request_for_host(&addr, method, path, Some(&evil));
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(
            answer.contains("does not answer to the host \"rebind.evil.example:"),
            "{answer}"
        );
        assert!(answer.contains("--ui-allowed-host"), "{answer}");
        assert!(!answer.contains("physician"), "no policy text: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-security-policy:"),
            "the refusal has the UI's headers: {answer}"
        );
        refused += 1.0;
    }
    // Names that only look close to allowed ones, and a request naming no host at all.
    for host in [
        Some("evilcorp.example".to_string()),
        Some(format!("verdict.example.org.evil.example:{port}")),
        Some(format!("localhost.evil.example:{port}")),
        None,
    ] {
        let (status, answer) = request_for_host(&addr, "GET", "/matrix", host.as_deref());
        assert_eq!(status, 403, "{host:?}: {answer}");
        refused += 1.0;
    }

    // Served: the listen address, loopback names on any port (kubectl port-forward maps the
    // port), and the names the operator allowed, in any case.
    for host in [
        addr.clone(),
        format!("localhost:{port}"),
        "localhost:18081".to_string(),
        format!("[::1]:{port}"),
        "Verdict.Example.Org".to_string(),
        format!("ui.corp.example:{port}"),
    ] {
        let (status, answer) = request_for_host(&addr, "GET", "/matrix", Some(&host));
        assert_eq!(status, 200, "{host}: {answer}");
        assert!(answer.contains("physician"), "{host}: the matrix is served");
    }
    let (status, answer) = request_for_host(&addr, "POST", "/api/check", Some(&addr));
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"effect\""), "{answer}");

    assert_eq!(daemon.metric(refused_total), refused);
    assert!(
        daemon.logs().iter().any(
            |l| l.contains("refused a request for a host") && l.contains("rebind.evil.example")
        ),
        "{:?}",
        daemon.logs()
    );
}

fn the_access_changes_of_a_reload_are_computed_as_it_is_published() {
    let policies = clinic_copy();
    let (daemon, url) = daemon(policies.path());
    let version = daemon_version(&daemon);
    let computed = |daemon: &Daemon| -> Vec<String> {
        daemon
            .logs()
            .into_iter()
            .filter(|l| l.contains("access changes of the reload computed"))
            .collect()
    };
    give_nurses_invoices(policies.path());
    let reloaded = wait_for_new_version(&daemon, &version);
    // Nobody has asked for /diff: the reload itself has the access changes computed.
    common::wait_for_blocking("the access changes computed after the reload", || {
        computed(&daemon)
            .iter()
            .any(|l| common::field(l, "to").as_deref() == Some(reloaded.as_str()))
    });
    let (status, _, body) = get(&format!("{url}/diff"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Invoice") && body.contains("widened"),
        "{body}"
    );
    let (status, _, again) = get(&format!("{url}/diff"));
    assert_eq!(status, 200);
    assert!(again.contains("Invoice") && again.contains("widened"));
    // The page was served from what the reload computed: computed once, for this pair only.
    let lines = computed(&daemon);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        common::field(&lines[0], "from").as_deref(),
        Some(version.as_str())
    );
}
