//! The web UI's access matrix page of the bundled clinic (every principal class x kind x
//! action), from the real daemon (release build): `GET /matrix` right after start, when the
//! matrix is computed and written (one daemon per sample), and again once it is cached. Prints
//! the medians, the size of the page and the number of cells; the browser's load time of the same
//! page is printed by `tests/ui.rs`.
//!
//! Run: `cargo bench --bench ui` (`UI_BENCH_STARTS`, default 7 daemons; `UI_BENCH_REQUESTS`,
//! default 200 cached GETs).
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The daemon on the clinic with the UI on: the process and the UI's address.
fn start(policies: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ui-listen",
            "127.0.0.1:0",
        ])
        .arg("--policies")
        .arg(policies)
        .env("VERDICT_LOG", "warn,verdict=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the daemon starts");
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let field = |line: &str, name: &str| -> Option<String> {
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        Some(
            line[at..]
                .split_whitespace()
                .next()?
                .trim_matches('"')
                .to_string(),
        )
    };
    let (mut ui, mut grpc) = (None, false);
    for line in lines.map_while(Result::ok) {
        match field(&line, "listener").as_deref() {
            Some("ui") => ui = field(&line, "addr"),
            Some("grpc") => grpc = true,
            _ => {}
        }
        if ui.is_some() && grpc {
            break;
        }
    }
    (child, ui.expect("the UI's address"))
}

/// `GET /matrix`: the time to the whole body, and the body.
fn get(url: &str) -> (Duration, String) {
    let started = Instant::now();
    let body = ureq::get(url)
        .call()
        .expect("the matrix page answers")
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap();
    (started.elapsed(), body)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names nothing here runs nothing.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"ui".contains(a.as_str()))
    {
        return;
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (starts, requests) = (env("UI_BENCH_STARTS", 7), env("UI_BENCH_REQUESTS", 200));
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/clinic");
    let set = verdict::compile::PolicySet::load(&policies).unwrap();
    let m = verdict::analysis::matrix(&set);

    let mut first = Vec::new();
    let mut page = String::new();
    for _ in 0..starts {
        let (mut child, addr) = start(&policies);
        let (elapsed, body) = get(&format!("http://{addr}/matrix"));
        first.push(elapsed);
        page = body;
        let _ = child.kill();
        let _ = child.wait();
    }
    let (mut child, addr) = start(&policies);
    let url = format!("http://{addr}/matrix");
    let _ = get(&url);
    let cached: Vec<Duration> = (0..requests).map(|_| get(&url).0).collect();
    let _ = child.kill();
    let _ = child.wait();

    let cells = page.matches("<td class=\"cell ").count();
    assert_eq!(cells, m.cells.len(), "the page shows every cell");
    println!(
        "access matrix of the clinic: {} classes x {} kinds ({} cells), page {} KiB",
        m.classes.len(),
        m.kinds.len(),
        cells,
        page.len() / 1024
    );
    println!(
        "GET /matrix, first after start (matrix computed and written): median {} of {starts} daemons (min {}, max {})",
        ms(median(first.clone())),
        ms(*first.iter().min().unwrap()),
        ms(*first.iter().max().unwrap()),
    );
    println!(
        "GET /matrix, cached: median {} of {requests}",
        ms(median(cached))
    );
}
