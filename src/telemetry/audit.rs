//! The decision log: one JSON line per decision (time, request id, principal id, resource kind
//! and id, action, effect, policy, rule, policy version), on stdout or appended to a file.
//!
//! The request path only moves one [`Entry`] per request into a bounded queue (`try_send`);
//! a writer thread formats and writes the lines. When the queue is full the entry is dropped and
//! counted (`verdict_audit_dropped_total`): a slow disk never slows decisions down. At
//! shutdown, [`AuditLog::flush`] waits (bounded) until every entry queued before it is written,
//! so the decisions of the last requests are not lost when the process exits.
//!
//! Attribute values (patient data) are left out unless the operator opts in, and so are reasons
//! of decisions forced by evaluation errors (an error message may quote a value).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value as Json};

use super::{AUDIT_DROPPED_TOTAL, AUDIT_WRITTEN_TOTAL};

/// One decided (resource, action).
#[derive(Debug, Clone)]
pub struct Decided {
    pub kind: String,
    pub id: String,
    pub action: String,
    pub allow: bool,
    pub policy: Arc<str>,
    pub rule: Arc<str>,
    pub reason: Arc<str>,
    pub evaluation_error: bool,
    /// The resource's attributes, only when the operator opted in.
    pub attributes: Option<Json>,
}

/// What one request decided.
#[derive(Debug, Clone)]
pub enum Outcome {
    Check(Vec<Decided>),
    Plan {
        kind: String,
        action: String,
        plan: &'static str,
        filter: Option<String>,
    },
    /// A search over stored entities (AuthZEN subject, resource or action search).
    Search {
        /// What was searched: `subject`, `resource` or `action`.
        searched: &'static str,
        kind: String,
        /// The action searched with (empty for an action search).
        action: String,
        /// How many were found.
        found: usize,
    },
}

/// One request's worth of decision-log lines.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: SystemTime,
    pub request_id: String,
    pub principal_id: String,
    pub policy_version: String,
    /// The principal's attributes, only when the operator opted in.
    pub principal_attributes: Option<Json>,
    pub outcome: Outcome,
}

/// What the writer thread receives: entries, in order, and requests to flush what came before.
#[derive(Debug)]
enum Message {
    Entry(Entry),
    /// Write and flush everything queued before this, then answer on the sender.
    Flush(SyncSender<()>),
}

/// The handle the request path writes to.
#[derive(Debug)]
pub struct AuditLog {
    sender: SyncSender<Message>,
    include_attributes: bool,
    dropped: AtomicU64,
}

impl AuditLog {
    /// Starts the writer thread on `output` (`stdout` or a file path, appended to).
    pub fn start(
        output: &str,
        buffer: usize,
        include_attributes: bool,
    ) -> std::io::Result<Arc<AuditLog>> {
        let writer: Box<dyn Write + Send> = if output == "stdout" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(output)?,
            )
        };
        let (sender, receiver) = sync_channel(buffer.max(1));
        std::thread::Builder::new()
            .name("verdict-audit".into())
            .spawn(move || write_lines(receiver, writer))?;
        Ok(Arc::new(AuditLog {
            sender,
            include_attributes,
            dropped: AtomicU64::new(0),
        }))
    }

    /// Whether entries should carry attribute values.
    pub fn include_attributes(&self) -> bool {
        self.include_attributes
    }

    /// Queues an entry without ever blocking; drops (and counts) it when the queue is full.
    pub fn record(&self, entry: Entry) {
        match self.sender.try_send(Message::Entry(entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(AUDIT_DROPPED_TOTAL).increment(1);
            }
        }
    }

    /// Waits until every entry queued before this call is written and flushed, for at most
    /// `timeout`; false if the writer did not get there in time (or is gone). For shutdown: the
    /// request path never calls it.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done, flushed) = sync_channel(1);
        let deadline = std::time::Instant::now() + timeout;
        // The queue may be full: wait for room rather than drop the request to flush.
        let mut message = Message::Flush(done);
        loop {
            match self.sender.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    message = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        flushed.recv_timeout(left).is_ok()
    }

    /// Entries dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write_lines(receiver: Receiver<Message>, writer: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, writer);
    while let Ok(message) = receiver.recv() {
        let mut written = 0u64;
        let mut flushed = Vec::new();
        let mut next = Some(message);
        while let Some(message) = next.take() {
            match message {
                Message::Entry(entry) => {
                    for line in lines(&entry) {
                        if serde_json::to_writer(&mut out, &line).is_ok()
                            && out.write_all(b"\n").is_ok()
                        {
                            written += 1;
                        }
                    }
                }
                Message::Flush(done) => flushed.push(done),
            }
            // Drain what is already queued before flushing: one write for a burst.
            next = receiver.try_recv().ok();
        }
        let _ = out.flush();
        metrics::counter!(AUDIT_WRITTEN_TOTAL).increment(written);
        for done in flushed {
            let _ = done.try_send(());
        }
    }
    let _ = out.flush();
}

/// The JSON lines of an entry.
pub fn lines(entry: &Entry) -> Vec<Json> {
    let time = rfc3339(entry.time);
    let base = |mut line: serde_json::Map<String, Json>| {
        line.insert("time".into(), json!(time));
        line.insert("request_id".into(), json!(entry.request_id));
        line.insert("principal_id".into(), json!(entry.principal_id));
        line.insert("policy_version".into(), json!(entry.policy_version));
        if let Some(attr) = &entry.principal_attributes {
            line.insert("principal_attr".into(), attr.clone());
        }
        Json::Object(line)
    };
    match &entry.outcome {
        Outcome::Check(decided) => decided
            .iter()
            .map(|d| {
                let mut line = serde_json::Map::new();
                line.insert("type".into(), json!("check"));
                line.insert("kind".into(), json!(d.kind));
                line.insert("id".into(), json!(d.id));
                line.insert("action".into(), json!(d.action));
                line.insert(
                    "effect".into(),
                    json!(if d.allow { "allow" } else { "deny" }),
                );
                line.insert("policy".into(), json!(&*d.policy));
                line.insert("rule".into(), json!(&*d.rule));
                if d.evaluation_error {
                    line.insert("evaluation_error".into(), json!(true));
                }
                if !d.evaluation_error || d.attributes.is_some() {
                    line.insert("reason".into(), json!(&*d.reason));
                }
                if let Some(attr) = &d.attributes {
                    line.insert("resource_attr".into(), attr.clone());
                }
                base(line)
            })
            .collect(),
        Outcome::Plan {
            kind,
            action,
            plan,
            filter,
        } => {
            let mut line = serde_json::Map::new();
            line.insert("type".into(), json!("plan"));
            line.insert("kind".into(), json!(kind));
            line.insert("action".into(), json!(action));
            line.insert("plan".into(), json!(plan));
            if let Some(filter) = filter {
                line.insert("filter".into(), json!(filter));
            }
            vec![base(line)]
        }
        Outcome::Search {
            searched,
            kind,
            action,
            found,
        } => {
            let mut line = serde_json::Map::new();
            line.insert("type".into(), json!("search"));
            line.insert("searched".into(), json!(searched));
            line.insert("kind".into(), json!(kind));
            if !action.is_empty() {
                line.insert("action".into(), json!(action));
            }
            line.insert("found".into(), json!(found));
            vec![base(line)]
        }
    }
}

/// `2026-11-23T01:02:03.456Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_395_723_456)),
            "2026-11-23T01:02:03.456Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    fn decided(evaluation_error: bool, attributes: Option<Json>) -> Decided {
        Decided {
            kind: "Patient".into(),
            id: "123".into(),
            action: "read".into(),
            allow: false,
            policy: "tenancy".into(),
            rule: "staff".into(),
            reason: "could not be evaluated: String(\"secret value\")".into(),
            evaluation_error,
            attributes,
        }
    }

    #[test]
    fn flush_returns_once_every_queued_entry_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let log = AuditLog::start(path.to_str().unwrap(), 4096, false).unwrap();
        for i in 0..3000 {
            log.record(Entry {
                time: UNIX_EPOCH,
                request_id: format!("r{i}"),
                principal_id: "dr-1".into(),
                policy_version: "v1".into(),
                principal_attributes: None,
                outcome: Outcome::Check(vec![decided(false, None)]),
            });
        }
        assert!(log.flush(Duration::from_secs(30)));
        // Read at once, no waiting: the flush is the event.
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Json>(l).unwrap()["request_id"].to_string())
            .collect();
        assert_eq!(ids.len(), 3000, "dropped: {}", log.dropped());
        assert_eq!(ids.last().unwrap(), "\"r2999\"");
    }

    #[test]
    fn lines_leave_out_attributes_and_error_reasons_unless_opted_in() {
        let entry = Entry {
            time: UNIX_EPOCH,
            request_id: "r1".into(),
            principal_id: "dr-1".into(),
            policy_version: "v1".into(),
            principal_attributes: None,
            outcome: Outcome::Check(vec![decided(true, None)]),
        };
        let text = serde_json::to_string(&lines(&entry)).unwrap();
        assert!(!text.contains("secret value"), "{text}");
        assert!(
            text.contains("\"evaluation_error\":true") && text.contains("\"effect\":\"deny\""),
            "{text}"
        );
        let opted_in = Entry {
            principal_attributes: Some(json!({"practice_id": "7"})),
            outcome: Outcome::Check(vec![decided(true, Some(json!({"ssn": "123-45"})))]),
            ..entry
        };
        let text = serde_json::to_string(&lines(&opted_in)).unwrap();
        assert!(
            text.contains("secret value")
                && text.contains("123-45")
                && text.contains("practice_id"),
            "{text}"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::start(path.to_str().unwrap(), 1, false).unwrap();
        let entry = Entry {
            time: SystemTime::now(),
            request_id: "r".into(),
            principal_id: "p".into(),
            policy_version: "v".into(),
            principal_attributes: None,
            outcome: Outcome::Check(vec![decided(false, None)]),
        };
        for _ in 0..10_000 {
            log.record(entry.clone());
        }
        assert!(
            log.dropped() > 0,
            "a queue of one cannot take 10,000 entries at once without dropping"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let written = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let n = text.lines().count() as u64;
            if n + log.dropped() == 10_000 || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(written.lines().count() as u64 + log.dropped(), 10_000);
        let first: Json = serde_json::from_str(written.lines().next().unwrap()).unwrap();
        assert_eq!(first["request_id"], "r");
        assert_eq!(first["kind"], "Patient");
    }
}
