//! Tidy checks, in the manner of rust-analyzer's: the architecture as written must be the
//! architecture of the code.
//!
//! `src/lib.rs` declares the modules from the bottom of the dependency graph up, ARCHITECTURE.md's
//! code map lists them in the same order, and no module uses (`crate::x`, in `use` lines or in
//! paths) a module declared after it, outside its test module. Every source file opens with a
//! `//!` doc. Within `src/server/`, the same holds for its files, in the order ARCHITECTURE.md
//! gives them.
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The modules `src/lib.rs` declares, in order.
fn declared() -> Vec<String> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

/// The modules ARCHITECTURE.md's code map names (`### \`src/x/\``, `### \`src/x.rs\``), in order.
fn documented() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut out = Vec::new();
    for heading in text.lines().filter(|l| l.starts_with("### ")) {
        for part in heading.split('`').skip(1).step_by(2) {
            let Some(path) = part.strip_prefix("src/") else {
                continue;
            };
            let name = path.trim_end_matches('/').trim_end_matches(".rs");
            if name != "main" && !name.contains('/') {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// The Rust files of module `name`.
fn files(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let file = root().join("src").join(format!("{name}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut out = Vec::new();
    walk(&root().join("src").join(name), &mut out);
    out.sort();
    out
}

/// The text of a file up to its test module (`#[cfg(test)]` or `#[cfg(all(test, ...))]` before
/// `mod tests`): tests may use what they like.
fn code(text: &str) -> &str {
    let lines: Vec<&str> = text.lines().collect();
    let mut offset = 0;
    for (i, line) in lines.iter().enumerate() {
        let test_attr = line.starts_with("#[cfg(test)]") || line.starts_with("#[cfg(all(test");
        let next_is_tests = lines[i + 1..]
            .iter()
            .find(|l| !l.starts_with("#["))
            .is_some_and(|l| l.starts_with("mod tests"));
        if test_attr && next_is_tests {
            return &text[..offset];
        }
        offset += line.len() + 1;
    }
    text
}

/// Every module `crate::x` names in `text`.
fn uses(text: &str) -> Vec<String> {
    text.match_indices("crate::")
        .filter(|(at, _)| {
            // `verdict::` paths in docs, `$crate::` in macros are not this crate's own uses.
            !text[..*at].ends_with('$')
        })
        .map(|(at, _)| {
            text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty() && m.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
        .collect()
}

/// The server's files as ARCHITECTURE.md orders them, bottom up: the backquoted names of the
/// paragraph "The server's own modules, bottom up", up to `mod.rs`.
fn server_order() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let start = text
        .find("The server's own modules, bottom up")
        .expect("ARCHITECTURE.md orders the server's modules");
    let paragraph = &text[start..];
    let paragraph = &paragraph[..paragraph.find("\n\n").unwrap_or(paragraph.len())];
    let mut out = Vec::new();
    for name in paragraph.split('`').skip(1).step_by(2) {
        let name = name.trim_end_matches(".rs");
        if name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !out.contains(&name.to_string())
        {
            out.push(name.to_string());
        }
        if name == "mod" {
            break;
        }
    }
    out
}

/// Every sibling module `super::x` or `super::{x, y}` names in `text` (a file of `src/server/`),
/// and every `crate::server::x`.
fn server_uses(text: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for prefix in ["super::", "crate::server::"] {
        for (at, _) in text.match_indices(prefix) {
            let rest = &text[at + prefix.len()..];
            if let Some(list) = rest.strip_prefix('{') {
                let list = &list[..list.find('}').unwrap_or(list.len())];
                out.extend(list.split(',').map(ident));
            } else {
                out.push(ident(rest));
            }
        }
    }
    out.retain(|m| !m.is_empty() && m.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    out
}

#[test]
fn no_server_module_uses_one_after_it() {
    let order = server_order();
    assert!(
        order.len() >= 5 && order.last().map(String::as_str) == Some("mod"),
        "{order:?}"
    );
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(root().join("src/server")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let Some(position) = order.iter().position(|m| *m == name) else {
            problems.push(format!(
                "src/server/{name}.rs is not in ARCHITECTURE.md's order of the server's modules"
            ));
            continue;
        };
        if name == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for used in server_uses(code(&text)) {
            match order.iter().position(|m| *m == used) {
                Some(at) if at < position => {}
                Some(_) => problems.push(format!(
                    "src/server/{name}.rs: uses {used}, which comes after it"
                )),
                None => problems.push(format!(
                    "src/server/{name}.rs: uses {used}, not in ARCHITECTURE.md's order"
                )),
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "server modules out of ARCHITECTURE.md's order:\n{}",
        problems.join("\n")
    );
}

#[test]
fn lib_rs_and_architecture_md_list_the_modules_in_the_same_order() {
    assert_eq!(
        declared(),
        documented(),
        "src/lib.rs and ARCHITECTURE.md's code map disagree"
    );
}

#[test]
fn no_module_uses_one_declared_after_it() {
    let order = declared();
    let mut problems = Vec::new();
    for (position, module) in order.iter().enumerate() {
        for file in files(module) {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in uses(code(&text)) {
                if used == *module {
                    continue;
                }
                match order.iter().position(|m| *m == used) {
                    Some(at) if at < position => {}
                    Some(_) => problems.push(format!(
                        "{}: uses crate::{used}, declared after {module}",
                        file.strip_prefix(root()).unwrap().display()
                    )),
                    None => problems.push(format!(
                        "{}: uses crate::{used}, which src/lib.rs does not declare",
                        file.strip_prefix(root()).unwrap().display()
                    )),
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "dependencies pointing down the module order (src/lib.rs, ARCHITECTURE.md):\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let mut missing = Vec::new();
    for module in declared() {
        for file in files(&module) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.starts_with("//!") {
                missing.push(file.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "no //! doc atop: {missing:?}");
}

#[test]
fn the_checks_see_what_they_check() {
    // The reader of `crate::` paths and of test modules, on a known text.
    let text = "use crate::store::X;\nfn f() { crate::telemetry::init(); $crate::no }\n#[cfg(test)]\nmod tests {\n    use crate::cli::Y;\n}\n";
    assert_eq!(uses(code(text)), vec!["store", "telemetry"]);
    assert_eq!(uses(text), vec!["store", "telemetry", "cli"]);
    let server =
        "use super::validate::X;\nuse super::{json, tls};\nfn f() { crate::server::codec::g() }\n";
    assert_eq!(
        server_uses(server),
        vec!["validate", "json", "tls", "codec"]
    );
    // And the order has every module, the code map too.
    assert!(declared().len() >= 10 && declared().contains(&"server".to_string()));
}

#[test]
fn every_metric_is_named_in_the_readme() {
    // The metric names are constants of `telemetry`; README.md's Operations section lists them.
    let telemetry = std::fs::read_to_string(root().join("src/telemetry/mod.rs")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let names: Vec<&str> = telemetry
        .lines()
        .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \""))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    let missing: Vec<&&str> = names
        .iter()
        .filter(|name| {
            !readme.contains(&format!("`{name}`")) && !readme.contains(&format!("`{name}{{"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "metrics README.md does not name: {missing:?}"
    );
}
