//! The web UI (`verdict serve --ui-listen ADDR`): pages a person reads in a browser about the
//! loaded policy set, served on a listener of its own, off by default.
//!
//! - `/matrix`: the access matrix of the active set ([`crate::analysis::matrix`]): every
//!   principal class x kind x action, always / never / conditional with the filter, the deciding
//!   rules linked to their line; written once per policy version;
//! - `/playground`: a Check request pasted as JSON or built from a form, decided by the same
//!   [`Authority`] path as the APIs (no decision log, no token: what a person types is the
//!   principal), with the trace of the rules considered (explain) and the PlanFilter answer and
//!   its SQL;
//! - `/diff`: the set the last reload replaced against the active one: the access changes
//!   ([`crate::analysis::diff`], once per pair of versions), then file by file;
//! - `/sources`, `/source/{path}`: the policy files of the active (or previous) set, with line
//!   anchors, where every rule links to.
//!
//! Read-only: pages are GET; the playground's two POST endpoints evaluate and change nothing.
//! Only requests for a host the operator trusts are answered ([`host`]: DNS rebinding).
//! It shows the loaded set and what the person types, never request data from live traffic.
//! Pages are written on the server ([`html`], everything escaped), with a little JavaScript and
//! CSS compiled in (`assets/`); a strict Content-Security-Policy allows nothing else.

pub mod access;
pub mod host;
pub mod html;

use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value as Json};
use tonic::Code;

use crate::analysis::{self, Diff, RuleRef};
use crate::compile::PolicySet;
use crate::server::authority::{Authority, Call, PlanCall};
use crate::server::{http, json as wire};
use crate::store::{PolicyStore, Revision};
pub use host::AllowedHosts;
use html::{url_path, Html};

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

/// What the pages read: the store (its active set and history) and the decision path the
/// playground asks.
struct Ui {
    store: Arc<PolicyStore>,
    authority: Arc<Authority>,
    max_body_bytes: usize,
    /// The matrix page of the last version asked for, written once per version (computing the
    /// matrix plans every class x kind x action): (version, page or the analysis's failure).
    matrix: Cache<String, String>,
    /// The access changes of the last pair of versions asked for: ((old, new), diff).
    changes: Cache<(String, String), Diff>,
}

/// What an analysis gave, or why it failed.
type Computed<T> = Result<Arc<T>, String>;

/// The last analysis computed, under the key (the versions) it was computed for. An async mutex
/// of the UI's own: a second viewer waits for the first one's analysis instead of repeating it.
type Cache<K, T> = tokio::sync::Mutex<Option<(K, Computed<T>)>>;

/// The UI's routes. `authority` decides the playground's requests: give it no decision log and
/// no token verifier (the daemon builds one for the UI). The store should keep its history
/// (`StoreOptions::keep_history`) for the source and diff pages. Requests for a host `allowed`
/// does not allow are refused before any route.
pub fn router(
    store: Arc<PolicyStore>,
    authority: Arc<Authority>,
    max_body_bytes: usize,
    allowed: AllowedHosts,
) -> Router {
    let ui = Arc::new(Ui {
        store,
        authority,
        max_body_bytes: max_body_bytes.max(1),
        matrix: tokio::sync::Mutex::new(None),
        changes: tokio::sync::Mutex::new(None),
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/matrix") }))
        .route("/matrix", get(matrix))
        .route("/playground", get(playground))
        .route("/diff", get(diff))
        .route("/sources", get(sources))
        .route("/source/{*path}", get(source))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/assets/ui.css",
            get(|| asset("text/css; charset=utf-8", CSS)),
        )
        .route(
            "/assets/ui.js",
            get(|| asset("text/javascript; charset=utf-8", JS)),
        )
        .route("/api/check", post(api_check))
        .route("/api/plan", post(api_plan))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(ui.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(allowed),
            host::check,
        ))
        .layer(axum::middleware::map_response(hardened))
        .with_state(ui)
}

/// Headers on every answer: nothing but this origin's own script and style runs, no framing,
/// no sniffing, no caching (a page shows one policy version), no referrer leaves.
async fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn page(status: StatusCode, html: Html) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html.finish(),
    )
        .into_response()
}

impl Ui {
    /// The active revision (its set and files), and the previous one if a reload replaced it.
    /// Without history (a store opened without it), the active set without files.
    fn revisions(&self) -> (Arc<Revision>, Option<Arc<Revision>>) {
        match self.store.history() {
            Some(history) => (Arc::clone(&history.active), history.previous.clone()),
            None => (
                Arc::new(Revision {
                    set: self.store.current(),
                    files: Vec::new(),
                    loaded_at: self.store.status().loaded_at,
                }),
                None,
            ),
        }
    }

    /// A rule's file relative to the policy directory.
    fn relative<'p>(&self, file: &'p Path) -> &'p Path {
        file.strip_prefix(self.store.dir()).unwrap_or(file)
    }

    /// The link to where `policy`'s rule `rule` is written in `set`, `/source/FILE#LLINE`.
    fn rule_link(
        &self,
        set: &PolicySet,
        policy: &str,
        rule: &str,
        previous: bool,
    ) -> Option<String> {
        let found = set
            .rules
            .iter()
            .find(|r| &*r.policy == policy && &*r.name == rule)?;
        Some(self.source_link(&found.file, found.line, previous))
    }

    fn source_link(&self, file: &Path, line: usize, previous: bool) -> String {
        let path = url_path(&self.relative(file).to_string_lossy());
        let rev = if previous { "?rev=previous" } else { "" };
        format!("/source/{path}{rev}#L{line}")
    }
}

impl access::Linker for Ui {
    fn rule(&self, rule: &RuleRef, previous: bool) -> String {
        self.source_link(Path::new(&rule.file), rule.line, previous)
    }
}

/// Runs an analysis off the async workers; a panic in it is its failure, said on the page.
async fn compute<T: Send + Sync + 'static>(
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Computed<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map(Arc::new)
        .map_err(|e| {
            let why = e
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                })
                .unwrap_or_default();
            tracing::error!("web UI: the {what} failed: {why}");
            format!("the {what} failed: {why}")
        })
}

/// `/matrix`: the access matrix of the active set, written once per policy version.
async fn matrix(State(ui): State<Arc<Ui>>) -> Response {
    let set = ui.store.current();
    let mut cached = ui.matrix.lock().await;
    let page_of = match &*cached {
        Some((version, page)) if *version == set.version => page.clone(),
        _ => {
            let ui2 = Arc::clone(&ui);
            let set2 = Arc::clone(&set);
            let page = compute("access matrix", move || {
                let m = analysis::matrix(&set2);
                let mut html = Html::page("Access matrix", "/matrix", &set2.version);
                access::matrix(&mut html, &m, &*ui2);
                html.finish()
            })
            .await;
            *cached = Some((set.version.clone(), page.clone()));
            page
        }
    };
    drop(cached);
    match page_of {
        Ok(page) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page.as_str().to_owned(),
        )
            .into_response(),
        Err(why) => {
            let mut html = Html::page("Access matrix", "/matrix", &set.version);
            html.element("p", "error", &why);
            page(StatusCode::INTERNAL_SERVER_ERROR, html)
        }
    }
}

async fn not_found(State(ui): State<Arc<Ui>>) -> Response {
    let version = ui.store.current().version.clone();
    let mut html = Html::page("Not found", "", &version);
    html.raw("<p>No such page. ")
        .link("/playground", "The playground")
        .raw(", ")
        .link("/diff", "the last reload")
        .raw(" and ")
        .link("/sources", "the policy files")
        .raw(" are.</p>");
    page(StatusCode::NOT_FOUND, html)
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "method not allowed: the UI's pages are read with GET; only the playground's \
         /api/check and /api/plan take POST\n",
    )
        .into_response()
}

async fn sources(State(ui): State<Arc<Ui>>) -> Response {
    let (active, _) = ui.revisions();
    let mut html = Html::page("Policy files", "/sources", &active.set.version);
    if active.files.is_empty() {
        html.raw("<p>The files of this set are not kept.</p>");
        return page(StatusCode::OK, html);
    }
    html.raw("<ul class=\"files\">");
    for (path, text) in &active.files {
        let path = path.to_string_lossy();
        html.raw("<li>")
            .link(&format!("/source/{}", url_path(&path)), &path)
            .raw(" <span class=\"muted\">");
        html.text(&format!("{} lines", text.lines().count()));
        html.raw("</span></li>");
    }
    html.raw("</ul>");
    page(StatusCode::OK, html)
}

/// `/source/{path}`: one file of the active set, or of the previous one with `?rev=previous`,
/// every line numbered with an anchor (`#L12`) and the rules it holds marked.
async fn source(
    State(ui): State<Arc<Ui>>,
    axum::extract::Path(path): axum::extract::Path<String>,
    uri: Uri,
) -> Response {
    let previous = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "rev=previous"));
    let (active, before) = ui.revisions();
    let revision = if previous { before } else { Some(active) };
    let version = ui.store.current().version.clone();
    let Some(revision) = revision else {
        let mut html = Html::page("No previous version", "/sources", &version);
        html.raw("<p>No reload has replaced the set loaded at start.</p>");
        return page(StatusCode::NOT_FOUND, html);
    };
    let Some((_, text)) = revision
        .files
        .iter()
        .find(|(p, _)| p.to_string_lossy() == path)
    else {
        let mut html = Html::page("Not found", "/sources", &version);
        html.raw("<p>The set has no policy file <code>")
            .text(&path)
            .raw("</code>.</p>");
        return page(StatusCode::NOT_FOUND, html);
    };
    // The rules written in this file, by line.
    let mut rules: Vec<(usize, String)> = revision
        .set
        .rules
        .iter()
        .filter(|r| ui.relative(&r.file).to_string_lossy() == path)
        .map(|r| (r.line, format!("{}/{}", r.policy, r.name)))
        .collect();
    rules.sort();
    rules.dedup();
    let mut html = Html::page(&path, "/sources", &revision.set.version);
    if previous {
        html.raw("<p class=\"notice\">The previous version, ")
            .element("code", "", &revision.set.version)
            .raw(", replaced by the last reload.</p>");
    }
    html.raw("<table class=\"source\"><tbody>");
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let marks: Vec<&str> = rules
            .iter()
            .filter(|(l, _)| *l == n)
            .map(|(_, name)| name.as_str())
            .collect();
        let class = if marks.is_empty() {
            ""
        } else {
            " class=\"rule\""
        };
        html.raw(&format!(
            "<tr id=\"L{n}\"{class}><td class=\"ln\"><a href=\"#L{n}\">{n}</a></td><td><pre>"
        ));
        html.text(line);
        html.raw("</pre></td><td class=\"marks\">");
        html.text(&marks.join(", "));
        html.raw("</td></tr>");
    }
    html.raw("</tbody></table>");
    page(StatusCode::OK, html)
}

/// `/diff`: the set the last reload replaced against the active one.
async fn diff(State(ui): State<Arc<Ui>>) -> Response {
    let (active, previous) = ui.revisions();
    let mut html = Html::page("Last reload", "/diff", &active.set.version);
    let Some(previous) = previous else {
        html.raw(
            "<p id=\"no-previous\" class=\"notice\">No previous version: the set loaded at start (",
        )
        .element("code", "", &active.set.version)
        .raw(") has not been replaced by a reload since.</p>");
        return page(StatusCode::OK, html);
    };
    html.raw("<p class=\"versions\">From ")
        .element("code", "", &previous.set.version)
        .raw(" (loaded ")
        .text(&time(previous.loaded_at))
        .raw(") to ")
        .element("code", "", &active.set.version)
        .raw(" (loaded ")
        .text(&time(active.loaded_at))
        .raw(").</p>");
    let key = (previous.set.version.clone(), active.set.version.clone());
    let mut cached = ui.changes.lock().await;
    let changes = match &*cached {
        Some((k, d)) if *k == key => d.clone(),
        _ => {
            let (old, new) = (Arc::clone(&previous.set), Arc::clone(&active.set));
            let d = compute("access diff", move || analysis::diff(&old, &new)).await;
            *cached = Some((key, d.clone()));
            d
        }
    };
    drop(cached);
    match changes {
        Ok(d) => access::changes(&mut html, &d, &*ui),
        Err(why) => {
            html.raw("<h2>Access changes</h2>")
                .element("p", "error", &why);
        }
    }
    write_file_changes(&mut html, &previous, &active);
    page(StatusCode::OK, html)
}

/// Every file added, removed or changed between two revisions, changed ones as a line diff
/// whose line numbers link to each version's source.
fn write_file_changes(html: &mut Html, before: &Revision, after: &Revision) {
    use similar::{ChangeTag, TextDiff};
    use std::collections::BTreeMap;

    let mut files: BTreeMap<&Path, (Option<&str>, Option<&str>)> = BTreeMap::new();
    for (path, text) in &before.files {
        files.entry(path.as_path()).or_default().0 = Some(text.as_str());
    }
    for (path, text) in &after.files {
        files.entry(path.as_path()).or_default().1 = Some(text.as_str());
    }
    let changed: Vec<_> = files.iter().filter(|(_, (a, b))| a != b).collect();
    html.raw("<h2>Files</h2>");
    if changed.is_empty() {
        html.raw("<p>No file changed.</p>");
        return;
    }
    let unchanged = files.len() - changed.len();
    html.raw("<p>")
        .text(&format!(
            "{} changed, {unchanged} unchanged.",
            plural(changed.len(), "file")
        ))
        .raw("</p>");
    for (path, (old, new)) in changed {
        let shown = path.to_string_lossy();
        let link = url_path(&shown);
        let what = match (old, new) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        };
        html.raw("<section class=\"file-diff\"><h3>")
            .text(&shown)
            .raw(" <span class=\"tag ")
            .raw(what)
            .raw("\">")
            .raw(what)
            .raw("</span></h3><table class=\"source diff\"><tbody>");
        let diff = TextDiff::from_lines(old.unwrap_or(""), new.unwrap_or(""));
        for (i, group) in diff.grouped_ops(3).iter().enumerate() {
            if i > 0 {
                html.raw("<tr class=\"gap\"><td></td><td></td><td></td><td><pre>…</pre></td></tr>");
            }
            for op in group {
                for change in diff.iter_changes(op) {
                    let (class, sign) = match change.tag() {
                        ChangeTag::Delete => ("del", "-"),
                        ChangeTag::Insert => ("add", "+"),
                        ChangeTag::Equal => ("", " "),
                    };
                    let number = |n: Option<usize>, rev: &str| {
                        n.map(|n| {
                            format!(
                                "<a href=\"/source/{link}{rev}#L{line}\">{line}</a>",
                                line = n + 1
                            )
                        })
                        .unwrap_or_default()
                    };
                    html.raw(&format!(
                        "<tr class=\"{class}\"><td class=\"ln\">{}</td><td class=\"ln\">{}</td><td class=\"sign\">{sign}</td><td><pre>",
                        number(change.old_index(), "?rev=previous"),
                        number(change.new_index(), ""),
                    ));
                    html.text(change.value().trim_end_matches(['\n', '\r']));
                    html.raw("</pre></td></tr>");
                }
            }
        }
        html.raw("</tbody></table></section>");
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A time as RFC 3339 (UTC, seconds).
fn time(t: std::time::SystemTime) -> String {
    prost_types::Timestamp::from(t)
        .to_string()
        .split('.')
        .next()
        .map(|s| format!("{}Z", s.trim_end_matches('Z')))
        .unwrap_or_default()
}

/// `/playground`: a form that builds a Check request, the request as editable JSON, and the
/// answers (decision, rule, reason; PlanFilter with SQL) written by `assets/ui.js`.
async fn playground(State(ui): State<Arc<Ui>>) -> Response {
    let set = ui.store.current();
    let mut html = Html::page("Playground", "/playground", &set.version);
    html.raw(
        "<p>Build a request from the form or paste one as JSON (the body of <code>POST \
         /v1/check</code>), then decide it against the loaded set. Nothing is recorded: no \
         decision log, no token.</p><form id=\"builder\" class=\"builder\" autocomplete=\"off\">\
         <fieldset><legend>Principal</legend>\
         <label>id <input name=\"principal_id\" value=\"user-1\"></label>\
         <label>roles <input name=\"roles\" list=\"roles\" placeholder=\"comma-separated\"></label>\
         <label>scopes <input name=\"scopes\" placeholder=\"space-separated\"></label>\
         <label>capabilities <input name=\"capabilities\" placeholder=\"comma-separated\"></label>\
         <label>attr (JSON) <textarea name=\"principal_attr\" rows=\"3\">{}</textarea></label>\
         </fieldset><fieldset><legend>Resource and action</legend>\
         <label>kind <select name=\"kind\">",
    );
    let mut kinds: Vec<&str> = set.kinds().collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in &kinds {
        let actions = set.kind(kind).actions().join(" ");
        html.raw("<option value=\"")
            .text(kind)
            .raw("\" data-actions=\"")
            .text(&actions)
            .raw("\">")
            .text(kind)
            .raw("</option>");
    }
    html.raw(
        "</select></label>\
         <label>id <input name=\"resource_id\" value=\"r-1\"></label>\
         <label>action <select name=\"action\"></select></label>\
         <label>attr (JSON) <textarea name=\"resource_attr\" rows=\"3\">{}</textarea></label>\
         <label>context (JSON) <textarea name=\"context\" rows=\"2\">{}</textarea></label>\
         </fieldset></form><datalist id=\"roles\">",
    );
    if let Some(schema) = set.request_schema() {
        for role in &schema.roles {
            html.raw("<option value=\"").text(role).raw("\"></option>");
        }
    }
    html.raw(
        "</datalist><section class=\"request\"><h2>Request</h2>\
         <textarea id=\"request\" rows=\"14\" spellcheck=\"false\" aria-label=\"Check request as JSON\"></textarea>\
         <p><label>SQL dialect <select id=\"dialect\"><option value=\"postgres\">PostgreSQL</option>\
         <option value=\"sqlite\">SQLite</option><option value=\"\">none</option></select></label> \
         <button id=\"decide\" type=\"button\">Decide</button></p></section>\
         <p id=\"error\" class=\"error\" role=\"alert\" hidden></p>\
         <section id=\"answer\" hidden><h2>Decision</h2><table class=\"decisions\"><thead><tr>\
         <th>resource</th><th>action</th><th>effect</th><th>rule</th><th>reason</th></tr></thead>\
         <tbody id=\"decisions\"></tbody></table><p class=\"muted\">decided by policy version \
         <code id=\"decided-version\"></code></p></section>\
         <section id=\"plan\" hidden><h2>PlanFilter</h2><p class=\"muted\">Which rows of <code \
         id=\"plan-for\"></code> this principal may have the action on (for list and search \
         queries).</p><dl><dt>answer</dt><dd id=\"plan-kind\"></dd><dt>filter</dt>\
         <dd><code id=\"plan-filter\"></code></dd><dt>SQL</dt><dd><code id=\"plan-sql\"></code>\
         </dd><dt>parameters</dt><dd><code id=\"plan-params\"></code></dd><dt>columns</dt>\
         <dd><code id=\"plan-columns\"></code></dd></dl>\
         <p id=\"plan-error\" class=\"error\" hidden></p></section>",
    );
    page(StatusCode::OK, html)
}

/// The refusal of a playground call whose body is not declared JSON (the router enforces the
/// size limit): a cross-site form cannot send `application/json`.
fn not_json(headers: &HeaderMap) -> Option<Response> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    (media_type != "application/json").then(|| {
        http::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::InvalidArgument,
            "content-type must be application/json",
        )
    })
}

fn refused(r: crate::server::validate::Refusal) -> Response {
    http::error(http::http_status(r.code), r.code, &r.message)
}

/// `POST /api/check`: the body of `POST /v1/check`, decided as the API decides it (the page asks
/// for `explain`: each decision's trace); the answer is the API's, each decision and trace step
/// with the link to its rule's source (`location`).
async fn api_check(State(ui): State<Arc<Ui>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = not_json(&headers) {
        return response;
    }
    let decoded = wire::decode::<wire::CheckBody>(&body).map(wire::CheckBody::into_call);
    let set = ui.store.current();
    let answer = match ui
        .authority
        .check(Call::new("ui/check", None, None), decoded)
        .await
    {
        Ok(answer) => answer,
        Err(r) => return refused(r),
    };
    let mut out = wire::check_json(answer);
    link_rules(&ui, &set, &mut out);
    axum::Json(out).into_response()
}

/// Adds `location` (`/source/FILE#LLINE`) beside every `file` and `line` pair in `json` (the
/// steps of a trace), and every `policy` and `rule` pair without them (a decision).
fn link_rules(ui: &Ui, set: &PolicySet, json: &mut Json) {
    match json {
        Json::Object(map) => {
            let at = match (map.get("file"), map.get("line")) {
                (Some(Json::String(file)), Some(line)) => line
                    .as_u64()
                    .map(|line| ui.source_link(Path::new(file), line as usize, false)),
                _ => None,
            };
            let link = at.or_else(|| match (map.get("policy"), map.get("rule")) {
                (Some(Json::String(policy)), Some(Json::String(rule))) => {
                    ui.rule_link(set, policy, rule, false)
                }
                _ => None,
            });
            if let Some(link) = link {
                map.insert("location".into(), json!(link));
            }
            for value in map.values_mut() {
                link_rules(ui, set, value);
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|v| link_rules(ui, set, v)),
        _ => {}
    }
}

/// `POST /api/plan`: the body of `POST /v1/plan`, planned as the API plans it; the answer is
/// the API's with the filter also as readable text (`readable`). SQL asked for without
/// `columns` names each attribute the filter reads by itself (dots made underscores): the
/// request is planned once without SQL to learn them, then with the mapping, which the answer
/// gives (`columns`).
async fn api_plan(State(ui): State<Arc<Ui>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = not_json(&headers) {
        return response;
    }
    let mut decoded = wire::decode::<wire::PlanBody>(&body).and_then(wire::PlanBody::into_call);
    if let Ok(PlanCall {
        sql: Some((_, columns)),
        ..
    }) = &decoded
    {
        if columns.is_empty() {
            let call = decoded.as_ref().map(|c| PlanCall {
                sql: None,
                ..c.clone()
            });
            let learned = ui
                .authority
                .plan(
                    Call::new("ui/plan", None, None),
                    call.map_err(|r| r.clone()),
                )
                .await;
            if let (
                Ok(learned),
                Ok(PlanCall {
                    sql: Some((_, columns)),
                    ..
                }),
            ) = (learned, &mut decoded)
            {
                for attribute in learned.plan.filter().attributes() {
                    columns.insert(attribute.to_string(), attribute.replace('.', "_"));
                }
            }
        }
    }
    let columns = match &decoded {
        Ok(PlanCall {
            sql: Some((_, columns)),
            ..
        }) => json!(columns),
        _ => Json::Null,
    };
    match ui
        .authority
        .plan(Call::new("ui/plan", None, None), decoded)
        .await
    {
        Ok(planned) => {
            let readable = planned.plan.filter().to_string();
            let mut out = wire::plan_json(planned);
            out["readable"] = json!(readable);
            if !columns.is_null() {
                out["columns"] = columns;
            }
            axum::Json(out).into_response()
        }
        Err(r) => refused(r),
    }
}
