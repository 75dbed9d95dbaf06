//! Which names the web UI answers to: the defence against DNS rebinding.
//!
//! A page on another site can have its own name resolve to the UI's address (DNS rebinding): the
//! browser then sends that page's requests to the UI and lets its script read the answers, as
//! if they were its own site's. Such a request names the other site in its `Host` header, so the
//! UI answers only requests whose host is one the operator trusts:
//! - `localhost` and the names under `.localhost` (they resolve to loopback only);
//! - any IP address (`127.0.0.1`, `[::1]`, the listen address): an address is no name a
//!   rebinding can point elsewhere;
//! - the names of `ui.allowed_hosts` (`--ui-allowed-host`), for a UI reached through a proxy
//!   under a name of its own; `.example.org` allows that domain and every name under it.
//!
//! The port is not compared: a `kubectl port-forward` or a proxy changes it, and a rebinding page
//! reaches the UI on the UI's own port anyway. Any other request is answered 403 with what to
//! do, logged and counted (`verdict_ui_host_refused_total`), before any page is looked at.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::telemetry::UI_HOST_REFUSED_TOTAL;

/// The host names the UI answers to besides `localhost` and IP addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Names allowed as they are (lowercase, no trailing dot).
    names: Vec<String>,
    /// Domains allowed with every name under them (`.example.org` as `example.org`).
    domains: Vec<String>,
}

impl AllowedHosts {
    /// The names of `ui.allowed_hosts`: each a host name (`verdict.example.org`), or a domain
    /// with a leading dot (`.example.org`: it and every name under it); no scheme, no port.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<AllowedHosts, String> {
        let mut allowed = AllowedHosts::default();
        for name in names {
            let raw = name.as_ref();
            let (domain, rest) = match raw.strip_prefix('.') {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            let name = normalized(rest)
                .filter(|n| is_host_name(n))
                .ok_or_else(|| {
                    format!(
                        "ui.allowed_hosts: {raw:?} is not a host name (a name such as \
                     verdict.example.org, or .example.org for that domain and every name under \
                     it; no scheme, no port, no wildcard)"
                    )
                })?;
            if domain {
                if !name.contains('.') {
                    return Err(format!(
                        "ui.allowed_hosts: {raw:?} would allow every name under a top-level \
                         domain, which anyone can point at this address: name your own domain"
                    ));
                }
                allowed.domains.push(name);
            } else {
                allowed.names.push(name);
            }
        }
        Ok(allowed)
    }

    /// Whether a request whose `Host` (or HTTP/2 `:authority`) is `authority` may be answered.
    pub fn allows(&self, authority: &str) -> bool {
        let Ok(authority) = authority.parse::<Authority>() else {
            return false;
        };
        // `user@host` is no Host a browser sends.
        if authority.as_str().contains('@') {
            return false;
        }
        let host = authority.host();
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return v6.parse::<Ipv6Addr>().is_ok();
        }
        if host.parse::<Ipv4Addr>().is_ok() {
            return true;
        }
        let Some(name) = normalized(host) else {
            return false;
        };
        name == "localhost"
            || name.ends_with(".localhost")
            || self.names.contains(&name)
            || self.domains.iter().any(|domain| {
                name == *domain
                    || name
                        .strip_suffix(domain.as_str())
                        .is_some_and(|sub| sub.ends_with('.'))
            })
    }
}

/// A host name in lowercase without its trailing dot (`Example.ORG.` is `example.org`).
fn normalized(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Dot-separated labels of letters, digits, `-` and `_`, none empty.
fn is_host_name(name: &str) -> bool {
    name.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The middleware: answers 403 to a request for a host the UI does not answer to (or naming
/// none), before any route.
pub(super) async fn check(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}"));
    let authority = request.uri().authority().map(Authority::as_str);
    // HTTP/1.1 sends Host; HTTP/2 the `:authority` the URI carries. Every name given must pass.
    let named: Vec<&str> = header.into_iter().chain(authority).collect();
    if let Some(refused) = named
        .iter()
        .find(|h| !allowed.allows(h))
        .copied()
        .or(named.is_empty().then_some(""))
    {
        return refuse(refused);
    }
    next.run(request).await
}

#[cold]
fn refuse(host: &str) -> Response {
    metrics::counter!(UI_HOST_REFUSED_TOTAL).increment(1);
    tracing::warn!(
        host,
        "web UI: refused a request for a host it does not answer to (a proxy's name needs \
         --ui-allowed-host; anything else may be DNS rebinding)"
    );
    let body = if host.is_empty() {
        "refused: the request names no host. The web UI answers requests for localhost, an IP \
         address, or a name of ui.allowed_hosts.\n"
            .to_string()
    } else {
        format!(
            "refused: the web UI does not answer to the host {host:?}. It answers requests for \
             localhost, an IP address, or a name of ui.allowed_hosts (--ui-allowed-host): if \
             you reach it through a proxy under this name, add the name there. A page of \
             another site reaching it under its own name is what this refuses (DNS \
             rebinding).\n"
        )
    };
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses_pass_other_names_only_when_allowed() {
        let none = AllowedHosts::default();
        for host in [
            "localhost",
            "localhost:8081",
            "LOCALHOST.:9000",
            "app.localhost:8081",
            "127.0.0.1:8081",
            "127.0.0.1",
            "10.1.2.3:8081",
            "[::1]:8081",
            "[::1]",
        ] {
            assert!(none.allows(host), "{host}");
        }
        for host in [
            "evil.example:8081",
            "localhost.evil.example",
            "evillocalhost",
            "",
            "[not-v6]:8081",
            "user@localhost",
            "127.0.0.1.evil.example",
            "local host",
        ] {
            assert!(!none.allows(host), "{host}");
        }
        let some = AllowedHosts::new(&["verdict.example.org", ".corp.example"]).unwrap();
        for host in [
            "verdict.example.org",
            "Verdict.Example.Org:443",
            "corp.example",
            "ui.corp.example:8443",
            "a.b.corp.example",
            "localhost:8081",
        ] {
            assert!(some.allows(host), "{host}");
        }
        for host in [
            "example.org",
            "x.verdict.example.org",
            "evilcorp.example",
            "corp.example.evil",
        ] {
            assert!(!some.allows(host), "{host}");
        }
    }

    #[test]
    fn allowed_hosts_are_names_without_scheme_or_port() {
        for bad in [
            "https://verdict.example.org",
            "verdict.example.org:8081",
            "*.example.org",
            "",
            ".",
            ".org",
            "a..b",
        ] {
            let err = AllowedHosts::new(&[bad]).unwrap_err();
            assert!(err.contains("ui.allowed_hosts"), "{bad}: {err}");
        }
        assert!(AllowedHosts::new(&["verdict", "verdict-ui.ns.svc."]).is_ok());
    }
}
