//! `verdict serve`, wired: from a [`Config`] to running servers, and back down on a signal.
//!
//! Startup refuses anything broken (config, policies, certificates, ports) before it announces
//! the gRPC address; SIGHUP reloads policies, the JWKS file and the TLS certificates (each has
//! its own [`Reloader`] thread, which also watches and polls); SIGTERM (or Ctrl-C) drains: health turns
//! NOT_SERVING, the listeners keep serving for `shutdown.drain_secs`, then stop accepting and
//! in-flight requests get up to `shutdown.timeout_secs` to finish.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::config::TokensConfig;
use crate::reload::{ReloadOptions, Reloader};
use crate::server::authority::Authority;
use crate::server::authzen::{self, AuthzenOptions};
use crate::server::evaluation::PoolOptions;
use crate::server::tls::{ReloadingTls, TlsFiles};
use crate::server::Limits;
use crate::server::{http, ServerOptions};
use crate::store::{PolicyStore, StoreOptions};
use crate::telemetry::audit::AuditLog;
use crate::token::{ClaimMapping, KeySource, Location, RemoteConfig, TokenConfig, Verifier};

/// How keys are fetched from `location`, from the `tokens.jwks_*` settings.
fn remote_config(t: &TokensConfig, location: Location) -> RemoteConfig {
    RemoteConfig {
        location,
        ca_file: t.jwks_ca_file.clone(),
        allow_http_loopback: t.jwks_allow_http_loopback,
        timeout: Duration::from_secs(t.jwks_timeout_secs),
        min_refresh: Duration::from_secs(t.jwks_refresh_min_secs),
        max_refresh: Duration::from_secs(t.jwks_refresh_max_secs),
        unknown_kid_interval: Duration::from_secs(t.jwks_unknown_kid_secs),
    }
}

/// Runs the daemon until it is told to stop.
pub async fn run(config: Config) -> Result<()> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;

    let metrics = match config.metrics.listen.0 {
        None => None,
        Some(addr) => {
            let handle = crate::telemetry::install_metrics().map_err(anyhow::Error::msg)?;
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (metrics.listen)"))?;
            Some((handle, listener))
        }
    };

    let audit = if config.audit.enabled {
        Some(
            AuditLog::start(
                &config.audit.output,
                config.audit.buffer,
                config.audit.include_attributes,
            )
            .with_context(|| format!("cannot open the decision log {}", config.audit.output))?,
        )
    } else {
        None
    };

    let options = StoreOptions {
        require_tests: config.reload.require_tests,
        // The UI's source and diff pages show the active files and the set a reload replaced.
        keep_history: config.ui.listen.0.is_some(),
    };
    let store = PolicyStore::open_with(&config.policies, options).map_err(|e| {
        anyhow::anyhow!(
            "refusing to start: the policy set in {} is broken or fails its test suites:\n{e}",
            config.policies.display()
        )
    })?;
    let store = Arc::new(store);
    let set = store.current();
    tracing::info!(
        policies = %config.policies.display(),
        version = %set.version,
        policy_count = set.policy_count,
        rules = set.rules.len(),
        "policy set loaded"
    );
    for warning in &set.warnings {
        tracing::warn!("policy warning: {warning}");
    }
    drop(set);

    let t = &config.tokens;
    let keys = match (&t.jwks_file, &t.jwks_url, &t.oidc_issuer) {
        (Some(file), _, _) => Some(KeySource::File(file.clone())),
        (None, Some(url), _) => Some(KeySource::Url(remote_config(
            t,
            Location::Jwks(url.clone()),
        ))),
        (None, None, Some(issuer)) => Some(KeySource::Url(remote_config(
            t,
            Location::Issuer(issuer.clone()),
        ))),
        (None, None, None) => None,
    };
    let tokens = match keys {
        None => None,
        Some(keys) => {
            let config = TokenConfig {
                keys,
                issuer: t.effective_issuer().unwrap_or_default().to_string(),
                audiences: t.audiences.clone(),
                mapping: ClaimMapping {
                    subject: t.subject_claim.clone(),
                    roles: t.roles_claim.clone(),
                    capabilities: t.capabilities_claim.clone(),
                },
                leeway: Duration::from_secs(t.leeway_secs),
                required: t.required,
                poll: Duration::from_secs(t.reload_secs.max(1)),
            };
            // A JWKS URL is fetched before the start goes on (blocking, bounded by the timeout).
            let verifier = tokio::task::spawn_blocking(move || Verifier::start(config))
                .await
                .context("the token verifier's start")?
                .map_err(|e| anyhow::anyhow!("refusing to start: token verification: {e}"))?;
            Some(Arc::new(verifier))
        }
    };

    let tls = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Some(
            ReloadingTls::load(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: config.tls.client_ca.clone(),
            })
            .context("TLS")?,
        ),
        _ => None,
    };
    let tls_reloader = match &tls {
        None => None,
        Some(tls) => Some(Arc::new(
            tls.watch(config.tls.reload_interval())
                .context("cannot start the TLS reload thread")?,
        )),
    };

    // Before the listener is announced: from then on, SIGHUP must reload and SIGTERM drain.
    let hangups = signals::hangups()?;
    let shutdown_requested = signals::shutdown()?;
    let reloader = Arc::new(
        Reloader::start(
            Arc::clone(&store),
            ReloadOptions {
                watch: config.reload.watch,
                debounce: Duration::from_millis(config.reload.debounce_ms),
                poll: (config.reload.poll_secs > 0)
                    .then(|| Duration::from_secs(config.reload.poll_secs)),
            },
        )
        .context("cannot start the policy reload thread")?,
    );
    let on_hangup = tokio::spawn(signals::reload_on_hangup(
        hangups,
        Arc::clone(&reloader),
        tokens.clone(),
        tls_reloader.clone(),
    ));

    let grpc_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (listen)", config.listen))?;
    let http_listener = match config.http.listen.0 {
        None => None,
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (http.listen)"))?,
        ),
    };
    let ui_listener = match config.ui.listen.0 {
        None => None,
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (ui.listen)"))?,
        ),
    };

    let (serving, serving_rx) = tokio::sync::watch::channel(true);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let limits = Limits {
        max_resources: config.limits.max_resources,
        max_actions: config.limits.max_actions,
        max_attr_depth: config.limits.max_attr_depth,
        max_decisions: config.limits.max_decisions,
        max_answer_bytes: config.limits.max_message_bytes,
        max_condition_cost: config.limits.max_condition_cost,
    };
    // Kept to flush the decision log at exit.
    let decision_log = audit.clone();
    let options = ServerOptions {
        limits,
        request_timeout: (config.limits.request_timeout_ms > 0)
            .then(|| Duration::from_millis(config.limits.request_timeout_ms)),
        max_message_bytes: config.limits.max_message_bytes,
        audit,
        tls: tls.clone(),
        serving: Some(serving_rx.clone()),
        tokens,
        pool: PoolOptions {
            threads: config.evaluation.threads,
            queue: config.evaluation.queue,
            ..PoolOptions::default()
        },
    };

    let mut tasks = Vec::new();
    if let Some((handle, listener)) = metrics {
        tracing::info!(listener = "metrics", addr = %listener.local_addr()?, "serving metrics on /metrics");
        let router = http::metrics_router(handle, Some(serving_rx.clone()));
        // Metrics stay up until the very end, to be scraped while draining.
        tasks.push(tokio::spawn(async move {
            if let Err(e) = http::serve(listener, router, None, std::future::pending()).await {
                tracing::error!("metrics server failed: {e}");
            }
        }));
    }
    if let Some(listener) = http_listener {
        tracing::info!(listener = "http", addr = %listener.local_addr()?, tls = tls.is_some(), "serving HTTP/JSON");
        let authority = options.authority(Arc::clone(&store));
        let authzen = authzen::router(
            Arc::clone(&authority),
            AuthzenOptions {
                base_url: config.http.authzen_base_url.clone(),
                reasons: config.http.authzen_reasons,
            },
            config.limits.max_message_bytes,
            tls.is_some(),
        );
        let router = http::api_router(authority, config.limits.max_message_bytes, Some(serving_rx))
            .merge(authzen);
        let done = stopped();
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = http::serve(listener, router, tls, done).await {
                tracing::error!("HTTP/JSON server failed: {e}");
            }
        }));
    }
    if let Some(listener) = ui_listener {
        tracing::info!(listener = "ui", addr = %listener.local_addr()?, tls = tls.is_some(), "serving the web UI");
        // The playground's own decision path: no decision log (what a person types is no
        // traffic), no token verification (the principal is what they type).
        let authority = Arc::new(
            Authority::new(
                Arc::clone(&store),
                options.limits,
                options.request_timeout,
                None,
            )
            .with_pool(options.pool),
        );
        let allowed =
            crate::ui::AllowedHosts::new(&config.ui.allowed_hosts).map_err(anyhow::Error::msg)?;
        let router = crate::ui::router(
            Arc::clone(&store),
            authority,
            config.limits.max_message_bytes,
            allowed,
        );
        let done = stopped();
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = http::serve(listener, router, tls, done).await {
                tracing::error!("web UI server failed: {e}");
            }
        }));
    }

    let drain = Duration::from_secs(config.shutdown.drain_secs);
    let grace = Duration::from_secs(config.shutdown.timeout_secs);
    tokio::spawn(async move {
        shutdown_requested.await;
        tracing::info!(
            drain_secs = drain.as_secs(),
            "shutdown requested: health is NOT_SERVING"
        );
        let _ = serving.send(false);
        tokio::time::sleep(drain).await;
        tracing::info!("no longer accepting connections; finishing in-flight requests");
        let _ = stop.send(true);
    });

    tracing::info!(listener = "grpc", addr = %grpc_listener.local_addr()?, tls = options.tls.is_some(), "serving gRPC");
    let served = crate::server::serve(grpc_listener, Arc::clone(&store), options, stopped());
    let mut served = std::pin::pin!(served);
    // Once stopping has begun, in-flight requests get `grace` to finish.
    let result = tokio::select! {
        result = &mut served => result.map_err(anyhow::Error::from),
        _ = async {
            stopped().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(timeout_secs = grace.as_secs(), "in-flight requests did not finish in time; exiting");
            Ok(())
        }
    };
    on_hangup.abort();
    for task in tasks {
        task.abort();
    }
    drop(reloader);
    drop(tls_reloader);
    if let Some(log) = decision_log {
        // The last requests' decisions are still in the queue: write them before exiting.
        let flushed = tokio::task::spawn_blocking(move || log.flush(Duration::from_secs(5))).await;
        if !matches!(flushed, Ok(true)) {
            tracing::error!(
                "the decision log was not flushed within 5 s: its last lines may be lost"
            );
        }
    }
    tracing::info!("stopped");
    result
}

mod signals {
    //! Signal handlers, registered before the daemon announces itself.
    use std::sync::Arc;

    use anyhow::{Context as _, Result};

    use crate::reload::Reloader;
    use crate::token::Verifier;

    #[cfg(unix)]
    pub type Hangups = tokio::signal::unix::Signal;
    #[cfg(not(unix))]
    pub type Hangups = ();

    #[cfg(unix)]
    pub fn hangups() -> Result<Hangups> {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")
    }

    #[cfg(not(unix))]
    pub fn hangups() -> Result<Hangups> {
        Ok(())
    }

    /// Each SIGHUP asks the reload threads for an immediate reload: policies, the JWKS file and
    /// the TLS certificates.
    #[cfg(unix)]
    pub async fn reload_on_hangup(
        mut hangups: Hangups,
        reloader: Arc<Reloader>,
        tokens: Option<Arc<Verifier>>,
        tls: Option<Arc<Reloader>>,
    ) {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading");
            reloader.reload_now();
            if let Some(tokens) = &tokens {
                tokens.reload_now();
            }
            if let Some(tls) = &tls {
                tls.reload_now();
            }
        }
    }

    #[cfg(not(unix))]
    pub async fn reload_on_hangup(
        _hangups: Hangups,
        _reloader: Arc<Reloader>,
        _tokens: Option<Arc<Verifier>>,
        _tls: Option<Arc<Reloader>>,
    ) {
    }

    /// Registers SIGTERM and SIGINT handlers now and returns the future that resolves on either.
    pub fn shutdown() -> Result<impl std::future::Future<Output = ()>> {
        #[cfg(unix)]
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot install the SIGTERM handler")?;
        #[cfg(unix)]
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("cannot install the SIGINT handler")?;
        Ok(async move {
            #[cfg(unix)]
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
