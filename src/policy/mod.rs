//! The policy file model: what operators write in `policies/*.yaml`, parsed with serde, and the
//! loading of a whole directory into [`PolicySource`]s with file-and-line errors.
//!
//! A file holds one or more YAML documents (separated by `---`); each document is exactly one of
//! `agent_policy`, `resource_policy`, `capabilities`, `scope_gate`, `conditions` or `schema`. See
//! `docs/policies.md`.
//!
//! Must not know about CEL beyond carrying condition text: compiling is `compile`'s job.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

pub mod entities;
pub mod schema;

pub use entities::{PrincipalEntities, ResourceEntities};
pub use schema::SchemaDocument;

/// One YAML document of a policy file.
#[derive(Debug, Clone)]
pub enum Document {
    /// RBAC-like: what principals (by role, capability, id or client) may do to kinds.
    AgentPolicy(AgentPolicy),
    /// ACL-like: rules that travel with a resource kind (optionally narrowed by a condition on the
    /// resource), able to override agent grants.
    ResourcePolicy(ResourcePolicy),
    /// Named bundles of `Kind:action` grants that a principal holds in its token.
    Capabilities(Capabilities),
    /// An OAuth / SMART on FHIR scope ceiling for some kinds.
    ScopeGate(ScopeGate),
    /// Named conditions and derived roles, defined once and used by name in rules.
    Conditions(Conditions),
    /// Kinds, actions, roles and typed attributes: what requests and conditions may use.
    Schema(SchemaDocument),
    /// Stored principals of one type, for requests that name them by id.
    Principals(PrincipalEntities),
    /// Stored resources of one kind, for requests that name them by id, and for search.
    Resources(ResourceEntities),
}

/// A document as written: a map with exactly one of these keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    agent_policy: Option<AgentPolicy>,
    resource_policy: Option<ResourcePolicy>,
    capabilities: Option<Capabilities>,
    scope_gate: Option<ScopeGate>,
    conditions: Option<Conditions>,
    schema: Option<SchemaDocument>,
    principals: Option<PrincipalEntities>,
    resources: Option<ResourceEntities>,
}

impl RawDocument {
    fn into_document(self) -> Result<Document, String> {
        let mut found: Vec<Document> = Vec::new();
        found.extend(self.agent_policy.map(Document::AgentPolicy));
        found.extend(self.resource_policy.map(Document::ResourcePolicy));
        found.extend(self.capabilities.map(Document::Capabilities));
        found.extend(self.scope_gate.map(Document::ScopeGate));
        found.extend(self.conditions.map(Document::Conditions));
        found.extend(self.schema.map(Document::Schema));
        found.extend(self.principals.map(Document::Principals));
        found.extend(self.resources.map(Document::Resources));
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(format!("a document must have one of the keys {DOCUMENT_KEYS}")),
            _ => Err(format!("a document must have only one of the keys {DOCUMENT_KEYS}; separate documents with ---")),
        }
    }
}

const DOCUMENT_KEYS: &str = "agent_policy, resource_policy, capabilities, scope_gate, conditions, \
     schema, principals, resources";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
}

/// Which principals a policy or rule applies to: any principal matching any entry. `"*"` in
/// `roles` matches every principal.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSelector {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub clients: Vec<String>,
    /// Derived roles (see [`Conditions`]): a parent role plus a condition on the request.
    #[serde(default)]
    pub derived_roles: Vec<String>,
}

impl PrincipalSelector {
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
            && self.capabilities.is_empty()
            && self.ids.is_empty()
            && self.clients.is_empty()
            && self.derived_roles.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub effect: Effect,
    /// Action names; `"*"` is every action.
    pub actions: Vec<String>,
    /// Resource kinds (agent policies only; a resource policy names its kind once). `"*"` is every
    /// kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Narrows the principals this rule applies to, within those of its policy.
    #[serde(default)]
    pub principals: Option<PrincipalSelector>,
    /// A CEL condition over `P`, `R`, `A`, `C`; absent means always. Written but empty
    /// (`when:` with nothing after it) is an error, not "always".
    #[serde(default, deserialize_with = "condition_text")]
    pub when: Option<String>,
}

/// A `when:` that is present must hold a condition: YAML reads `when:` alone as null, which would
/// otherwise make the rule unconditional.
fn condition_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        Some(text) if !text.trim().is_empty() => Ok(Some(text)),
        _ => Err(serde::de::Error::custom(
            "`when` is empty: write a condition, or remove the key for a rule that always applies",
        )),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentPolicy {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub principals: PrincipalSelector,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSelector {
    /// The kind the policy travels with; `"*"` is every kind.
    pub kind: String,
    /// Narrows the policy to resources for which this CEL condition holds (e.g. a label).
    #[serde(default, deserialize_with = "condition_text")]
    pub when: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcePolicy {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub resource: ResourceSelector,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capability {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `Kind:action` pairs, with `*` wildcards (`Note:*`).
    pub grants: Vec<String>,
    /// An optional CEL condition every grant of the capability is subject to.
    #[serde(default, deserialize_with = "condition_text")]
    pub when: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub capabilities: Vec<Capability>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeGate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The kinds the gate applies to; `"*"` is every kind.
    pub kinds: Vec<String>,
    /// Action name -> SMART v2 permission letter (c, r, u, d, s). Defaults: read->r, search->s,
    /// create->c, update->u, delete->d. An action without a letter is never covered.
    #[serde(default)]
    pub actions: Option<BTreeMap<String, String>>,
    /// The principal attribute holding the SMART launch patient. Default `patient`.
    #[serde(default)]
    pub patient_claim: Option<String>,
    /// The resource attribute naming the patient a resource belongs to. Default `patient_id`.
    #[serde(default)]
    pub patient_attribute: Option<String>,
}

/// A condition defined once and used by its bare name in other conditions (`same_practice`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedCondition {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub when: String,
}

/// A role a principal holds for one request: one of `parent_roles` (any principal if empty) and
/// `when` holds, e.g. `primary_physician` = a physician whose id is the patient's
/// `primary_physician_id`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedRole {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parent_roles: Vec<String>,
    pub when: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub conditions: Vec<NamedCondition>,
    #[serde(default)]
    pub derived_roles: Vec<DerivedRole>,
}

/// A parsed document and where it came from.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub file: PathBuf,
    /// Line of the document's first line in the file (1-based).
    pub line: usize,
    pub item: T,
    /// The document's text, for locating rules by name in error messages.
    pub text: String,
}

impl<T> Located<T> {
    /// The 1-based file line where `name: <value>` first appears in this document at or after
    /// `after` (a line within the document), falling back to the document's first line.
    pub fn line_of_name(&self, value: &str, after: usize) -> usize {
        let start = after.saturating_sub(self.line);
        for (i, line) in self.text.lines().enumerate().skip(start) {
            // `name: x`, `- name: x`, and the flow style `- {name: x, ...}`.
            let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
            let trimmed = trimmed.trim_start_matches('{').trim_start();
            if let Some(rest) = trimmed.strip_prefix("name:") {
                let rest = rest.split([',', '}']).next().unwrap_or("");
                let rest = rest.trim().trim_matches(|c| c == '"' || c == '\'');
                if rest == value {
                    return self.line + i;
                }
            }
        }
        self.line.max(after)
    }
}

impl<T> Located<T> {
    /// The 1-based file line where the key `key:` first appears in this document at or after
    /// `after` (a line within the document), quoted or not, in block or flow style; the
    /// document's first line if it does not.
    pub fn line_of_key(&self, key: &str, after: usize) -> usize {
        let start = after.saturating_sub(self.line);
        for (i, line) in self.text.lines().enumerate().skip(start) {
            for quoted in [key.to_string(), format!("\"{key}\""), format!("'{key}'")] {
                let mut from = 0;
                while let Some(found) = line[from..].find(&quoted) {
                    let at = from + found;
                    let before = line[..at].chars().next_back();
                    let after_key = line[at + quoted.len()..].trim_start();
                    if before.is_none_or(|c| matches!(c, ' ' | '{' | ',' | '-'))
                        && after_key.starts_with(':')
                    {
                        return self.line + i;
                    }
                    from = at + quoted.len();
                }
            }
        }
        self.line.max(after)
    }
}

/// A problem in the policy files, located as precisely as we can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Several load errors, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// Every document of a policy directory, with the content hash of the files it came from.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The directory the documents were read from (for messages about the set as a whole).
    pub root: PathBuf,
    pub documents: Vec<Located<Document>>,
    /// The content hash of its documents ([`version_of`]).
    pub version: String,
}

/// Reads every `*.yaml` / `*.yml` file under `dir` (recursively, following symlinks, skipping
/// hidden entries such as Kubernetes' `..data` and editors' temp files) and parses them.
pub fn load_dir(dir: &Path) -> Result<PolicySource, LoadErrors> {
    let (source, errors) = read_dir(dir);
    if errors.is_empty() {
        Ok(source)
    } else {
        Err(LoadErrors(errors))
    }
}

/// Like [`load_dir`], but returns what could be parsed together with every problem met, so that
/// `verdict validate` reports them all at once.
pub fn read_dir(dir: &Path) -> (PolicySource, Vec<LoadError>) {
    let PolicyFiles {
        texts,
        unreadable: mut errors,
        ..
    } = match read_files(dir) {
        Ok(read) => read,
        Err(error) => {
            return (
                PolicySource {
                    root: dir.to_path_buf(),
                    documents: Vec::new(),
                    version: String::new(),
                },
                vec![error],
            )
        }
    };
    let (source, mut parse_errors) = parse_files_lenient(dir, &texts);
    errors.append(&mut parse_errors);
    (source, errors)
}

/// The policy files of a directory, read but not parsed.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    /// (path relative to the directory, text), sorted by path.
    pub texts: Vec<(PathBuf, String)>,
    /// An error for each file that could not be read.
    pub unreadable: Vec<LoadError>,
    /// The test suites (`*_test.yaml`...) found in the same walk, (relative path, text), sorted:
    /// what the reload gate runs against the set these policies compile to.
    pub suites: Vec<(PathBuf, String)>,
    /// An error for each suite that could not be read.
    pub unreadable_suites: Vec<LoadError>,
}

/// The policy files under `dir` as [`load_dir`] finds them, and the test suites next to them,
/// read but not parsed. Fails if the directory itself cannot be listed.
pub fn read_files(dir: &Path) -> Result<PolicyFiles, LoadError> {
    let (mut files, mut suites) = (Vec::new(), Vec::new());
    collect_files(dir, dir, &mut files, &mut suites).map_err(|e| LoadError {
        file: dir.to_path_buf(),
        line: None,
        message: format!("cannot read policy directory: {e}"),
    })?;
    let (texts, unreadable) = read_all(dir, files);
    let (suites, unreadable_suites) = read_all(dir, suites);
    Ok(PolicyFiles {
        texts,
        unreadable,
        suites,
        unreadable_suites,
    })
}

/// Reads files (paths relative to `dir`), sorted by path; an error for each unreadable one.
fn read_all(dir: &Path, mut files: Vec<PathBuf>) -> (Vec<(PathBuf, String)>, Vec<LoadError>) {
    files.sort();
    let mut texts = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for relative in files {
        match std::fs::read_to_string(dir.join(&relative)) {
            Ok(text) => texts.push((relative, text)),
            Err(e) => errors.push(LoadError {
                file: dir.join(&relative),
                line: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    (texts, errors)
}

/// The version [`parse_files`] gives these files, the policy set's `policy_version`: a hex
/// SHA-256 prefix over its documents (the `---`-separated parts that are not blank or comments
/// only), each hashed on its own and taken in sorted order. A hash of content only: the same
/// documents have the same version wherever they are mounted, whatever the files and directories
/// are named and however the documents are split into files; any change to a document's text
/// (comments included) is a new version. Cheap (no YAML parsing): a reload tells unchanged files
/// without parsing them.
pub fn version_of(files: &[(PathBuf, String)]) -> String {
    let mut digests: Vec<[u8; 32]> = files
        .iter()
        .flat_map(|(_, text)| split_documents(text))
        .filter(|(_, chunk)| !is_blank(chunk))
        .map(|(_, chunk)| Sha256::digest(chunk.as_bytes()).into())
        .collect();
    digests.sort_unstable();
    let mut hasher = Sha256::new();
    for digest in &digests {
        hasher.update(digest);
    }
    hex::encode(&hasher.finalize()[..8])
}

/// A document with nothing but blank lines and comments.
fn is_blank(chunk: &str) -> bool {
    chunk
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

/// Parses already-read files (relative path, text); `root` only prefixes paths in messages.
pub fn parse_files(root: &Path, files: &[(PathBuf, String)]) -> Result<PolicySource, LoadErrors> {
    let (source, errors) = parse_files_lenient(root, files);
    if errors.is_empty() {
        Ok(source)
    } else {
        Err(LoadErrors(errors))
    }
}

/// Parses what it can, returning the documents of the files that parsed and every error.
fn parse_files_lenient(root: &Path, files: &[(PathBuf, String)]) -> (PolicySource, Vec<LoadError>) {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for (relative, text) in files {
        let file = root.join(relative);
        match parse_documents(&file, text) {
            Ok(mut docs) => documents.append(&mut docs),
            Err(e) => errors.push(e),
        }
    }
    let source = PolicySource {
        root: root.to_path_buf(),
        documents,
        version: version_of(files),
    };
    (source, errors)
}

/// Splits a file into YAML documents and parses each.
pub fn parse_documents(file: &Path, text: &str) -> Result<Vec<Located<Document>>, LoadError> {
    let mut documents = Vec::new();
    for (line, chunk) in split_documents(text) {
        if is_blank(&chunk) {
            continue;
        }
        let raw: RawDocument =
            serde_yaml_ng::from_str(&chunk).map_err(|e| yaml_error(file, line, &e))?;
        let item = raw.into_document().map_err(|message| LoadError {
            file: file.to_path_buf(),
            line: Some(line),
            message,
        })?;
        documents.push(Located {
            file: file.to_path_buf(),
            line,
            item,
            text: chunk,
        });
    }
    Ok(documents)
}

/// The one way a YAML error is told, for policies, suites and the config file alike: the file,
/// the line (`first_line` is the file line the parsed text starts at: documents of a multi-document
/// file are parsed one by one), and the parser's message without its own " at line L column C",
/// so that the line is said once.
pub fn yaml_error(file: &Path, first_line: usize, e: &serde_yaml_ng::Error) -> LoadError {
    let message = e.to_string();
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    LoadError {
        file: file.to_path_buf(),
        line: Some(
            e.location()
                .map(|l| l.line() + first_line - 1)
                .unwrap_or(first_line),
        ),
        message,
    }
}

/// (first line, text) of each `---`-separated document.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            out.push((start, std::mem::take(&mut current)));
            start = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    out.push((start, current));
    out
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') || name.ends_with('~')
}

/// Policy files into `out`, test suites into `suites` (paths relative to `root`).
fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<PathBuf>,
    suites: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if is_hidden(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        // metadata() follows symlinks: ConfigMap files and git-sync worktrees are symlinks.
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            // A dangling symlink mid-swap: skip it; the swap's own event triggers another load.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            collect_files(root, &path, out, suites)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        ) {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            if is_test_suite(&path) {
                suites.push(relative);
            } else {
                out.push(relative);
            }
        }
    }
    Ok(())
}

/// Test suites (`*_test.yaml`, `*.test.yaml`) live next to policies but are not policies.
pub fn is_test_suite(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.ends_with("_test.yaml")
        || name.ends_with("_test.yml")
        || name.ends_with(".test.yaml")
        || name.ends_with(".test.yml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_files_and_locates_documents() {
        let text = "agent_policy:\n  name: a\n  principals: {roles: [nurse]}\n  rules: []\n---\n# second\ncapabilities:\n  name: caps\n  capabilities:\n    - name: view\n      grants: [\"Patient:read\"]\n";
        let docs = parse_documents(Path::new("p.yaml"), text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line, 1);
        assert_eq!(docs[1].line, 6);
        assert!(matches!(docs[1].item, Document::Capabilities(_)));
        assert_eq!(docs[1].line_of_name("view", 0), 10);
        let flow = "agent_policy:\n  name: a\n  principals: {roles: [r]}\n  rules:\n    - {name: first, effect: allow, actions: [read], kinds: [D]}\n    - {name: second, effect: allow, actions: [read], kinds: [D]}\n";
        let docs = parse_documents(Path::new("p.yaml"), flow).unwrap();
        assert_eq!(docs[0].line_of_name("second", 0), 6);
    }

    #[test]
    fn the_version_of_read_files_is_the_version_they_load_as() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.yaml"), "# nothing\n").unwrap();
        std::fs::write(
            dir.path().join("a.yml"),
            "agent_policy:\n  name: a\n  principals: {roles: [nurse]}\n  rules: []\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not: [yaml").unwrap();
        std::fs::write(dir.path().join("sub/a_test.yaml"), "suite: s\n").unwrap();
        let read = read_files(dir.path()).unwrap();
        assert!(read.unreadable.is_empty());
        assert_eq!(
            read.suites,
            vec![(PathBuf::from("sub/a_test.yaml"), "suite: s\n".to_string())],
            "suites are read in the same walk, apart from the policies"
        );
        let files = read.texts;
        let names: Vec<_> = files.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            names,
            vec![PathBuf::from("a.yml"), PathBuf::from("sub/b.yaml")]
        );
        assert_eq!(version_of(&files), load_dir(dir.path()).unwrap().version);
        // A comment-only file holds no document: no part of the version.
        std::fs::write(dir.path().join("sub/b.yaml"), "# something else\n").unwrap();
        assert_eq!(
            version_of(&read_files(dir.path()).unwrap().texts),
            version_of(&files)
        );
        std::fs::write(
            dir.path().join("sub/b.yaml"),
            "capabilities: {name: c, capabilities: []}\n",
        )
        .unwrap();
        assert_ne!(
            version_of(&read_files(dir.path()).unwrap().texts),
            version_of(&files)
        );
        assert!(read_files(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn yaml_errors_name_file_and_line() {
        let text = "agent_policy:\n  name: a\n  principals: {roles: [nurse]}\n  rules:\n    - name: r\n      effect: permit\n      actions: [read]\n";
        let err = parse_documents(Path::new("policies/p.yaml"), text).unwrap_err();
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.message.contains("permit"), "{err}");
        let shown = err.to_string();
        assert!(shown.starts_with("policies/p.yaml:6: "), "{shown}");
    }

    #[test]
    fn unknown_keys_and_document_kinds_are_rejected() {
        let err = parse_documents(Path::new("p.yaml"), "agent_polcy:\n  name: a\n").unwrap_err();
        assert!(err.message.contains("unknown field `agent_polcy`"), "{err}");
        assert!(err.message.contains("agent_policy"), "{err}");
        let empty = parse_documents(Path::new("p.yaml"), "{}\n").unwrap_err();
        assert!(
            empty.message.contains("must have one of the keys"),
            "{empty}"
        );
        let text = "agent_policy:\n  name: a\n  principal: {roles: [nurse]}\n  rules: []\n";
        let err = parse_documents(Path::new("p.yaml"), text).unwrap_err();
        assert!(err.message.contains("principal"), "{err}");
        assert_eq!(err.line, Some(3));
    }

    #[test]
    fn the_version_is_a_hash_of_the_documents_not_of_the_layout() {
        let a = "capabilities: {name: c, capabilities: []}\n";
        let b = "# the second\ncapabilities: {name: d, capabilities: []}\n";
        let files = |pairs: &[(&str, &str)]| -> Vec<(PathBuf, String)> {
            pairs
                .iter()
                .map(|(path, text)| (PathBuf::from(path), text.to_string()))
                .collect()
        };
        let version = |pairs: &[(&str, &str)]| {
            let version = parse_files(Path::new("."), &files(pairs)).unwrap().version;
            assert_eq!(version, version_of(&files(pairs)));
            version
        };
        let two_files = version(&[("a.yaml", a), ("b.yaml", b)]);
        assert_eq!(two_files.len(), 16);
        // Other names, another directory, another order, one file of two documents, a comment
        // between documents: the same documents, the same version.
        assert_eq!(version(&[("clinic/x.yml", b), ("z.yaml", a)]), two_files);
        let together = format!("{a}---\n{b}");
        assert_eq!(version(&[("all.yaml", &together)]), two_files);
        let with_blank = format!("# header\n---\n{a}---\n{b}");
        assert_eq!(version(&[("all.yaml", &with_blank)]), two_files);
        // Any change to a document's text is a new version, and so is a document more.
        let changed = b.replace("name: d", "name: e");
        assert_ne!(version(&[("a.yaml", a), ("b.yaml", &changed)]), two_files);
        assert_ne!(
            version(&[("a.yaml", a), ("b.yaml", b), ("c.yaml", a)]),
            two_files
        );
        assert_ne!(version(&[("a.yaml", a)]), two_files);
    }
}
