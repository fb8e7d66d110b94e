//! Notifying this node's local subscribers of changes to the peers'
//! copies it holds, as the copies' managing USS: F3548
//! `notifyOperationalIntentDetailsChanged` (`POST {uss_base_url}/uss/v1/operational_intents`)
//! and `notifyConstraintDetailsChanged` (`/uss/v1/constraints`), with the
//! subscriptions and their notification indices, authenticated with the
//! node's bearer token, retried with backoff.

use crate::auth::Tokens;
use crate::{Error, chain};
use airspace::{Event, SubscriberToNotify, UssAvailabilityState};
use liaison::UssNotification;
use node::share::CopyNotice;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Attempts per subscriber; the pauses between them double from
/// [`FIRST_RETRY`].
pub const ATTEMPTS: u32 = 6;
pub const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Notifications in flight at once.
const IN_FLIGHT: usize = 64;

/// Sends the copy notices of one node.
#[derive(Clone, Debug)]
pub struct Notifier {
    http: reqwest::Client,
    tokens: Option<Arc<Tokens>>,
    /// This node's USS base URL: the copies' `uss_base_url`.
    copies_at: String,
    first_retry: Duration,
}

impl Notifier {
    /// `tokens`: the node's bearer tokens (`None`: sent without one).
    pub fn new(
        copies_at: &str,
        tokens: Option<Arc<Tokens>>,
        timeout: Duration,
        extra_roots: &[u8],
    ) -> Result<Notifier, Error> {
        Ok(Notifier {
            http: crate::http(timeout, extra_roots)?,
            tokens,
            copies_at: copies_at.trim_end_matches('/').to_string(),
            first_retry: FIRST_RETRY,
        })
    }

    /// The same, retrying sooner (tests).
    pub fn with_first_retry(mut self, d: Duration) -> Notifier {
        self.first_retry = d;
        self
    }

    /// The path under a subscriber's base URL and the F3548 body for one
    /// subscriber of a change.
    pub fn body(&self, change: &Event, to: &SubscriberToNotify) -> Option<(&'static str, Value)> {
        let subscriptions: Vec<Value> = to
            .subscriptions
            .iter()
            .map(|(id, index)| json!({ "subscription_id": id, "notification_index": index }))
            .collect();
        let unknown = UssAvailabilityState::Unknown;
        Some(match change {
            Event::IntentUpserted(i) => (
                "uss/v1/operational_intents",
                json!({
                    "operational_intent_id": i.id,
                    "operational_intent": api::uss::intent_json(i, &self.copies_at, unknown),
                    "subscriptions": subscriptions,
                }),
            ),
            Event::IntentRemoved(id) => (
                "uss/v1/operational_intents",
                json!({ "operational_intent_id": id, "subscriptions": subscriptions }),
            ),
            Event::ConstraintUpserted(c) => (
                "uss/v1/constraints",
                json!({
                    "constraint_id": c.id,
                    "constraint": api::uss::constraint_json(c, &self.copies_at, unknown),
                    "subscriptions": subscriptions,
                }),
            ),
            Event::ConstraintRemoved(id) => (
                "uss/v1/constraints",
                json!({ "constraint_id": id, "subscriptions": subscriptions }),
            ),
            _ => return None,
        })
    }

    /// What a notice to `to` is, before it is sent: the copy, its version
    /// (none: removed), the subscriber and its subscriptions.
    pub fn record(change: &Event, to: &SubscriberToNotify) -> Option<UssNotification> {
        let (entity_kind, entity, version) = match change {
            Event::IntentUpserted(i) => ("operational_intent", i.id, Some(i.version)),
            Event::IntentRemoved(id) => ("operational_intent", *id, None),
            Event::ConstraintUpserted(c) => ("constraint", c.id, Some(c.version)),
            Event::ConstraintRemoved(id) => ("constraint", *id, None),
            _ => return None,
        };
        Some(UssNotification {
            entity_kind: entity_kind.to_string(),
            entity,
            version: version.map(|v| v.max(0) as u64),
            subscriber: to.uss_base_url.clone(),
            subscriptions: to
                .subscriptions
                .iter()
                .map(|(id, index)| (*id, (*index).max(0) as u64))
                .collect(),
            status: None,
            attempts: 0,
            error: None,
            at_ms: 0,
        })
    }

    /// Delivers every notice received, each subscriber on its own task,
    /// until the sender is gone; `done` hears of each delivery or final
    /// failure (`status`, `attempts`, `error` filled in; `at_ms` left to
    /// the caller's clock).
    pub async fn run(
        self,
        mut notices: tokio::sync::mpsc::Receiver<CopyNotice>,
        done: impl Fn(UssNotification) + Send + Sync + 'static,
    ) {
        let done = Arc::new(done);
        let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        while let Some(n) = notices.recv().await {
            for to in &n.subscribers {
                let (Some((path, body)), Some(mut record)) =
                    (self.body(&n.change, to), Notifier::record(&n.change, to))
                else {
                    continue;
                };
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (me, done) = (self.clone(), done.clone());
                tokio::spawn(async move {
                    let a = me.deliver(&record.subscriber, path, &body).await;
                    drop(slot);
                    (record.status, record.attempts, record.error) =
                        (a.status, a.attempts, a.error);
                    done(record);
                });
            }
        }
    }

    /// POSTs `body` to `path` under `subscriber` until a 2xx, at most
    /// [`ATTEMPTS`] times (a 401 first drops the cached token); answers
    /// the last status, the attempts and, unless delivered, why not.
    pub async fn deliver(&self, subscriber: &str, path: &str, body: &Value) -> Attempts {
        let url = format!("{}/{path}", subscriber.trim_end_matches('/'));
        let mut pause = self.first_retry;
        let mut done = Attempts::default();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
            done.attempts = attempt;
            let mut req = self.http.post(&url).json(body);
            if let Some(t) = &self.tokens {
                match t.bearer().await {
                    Ok(token) => req = req.bearer_auth(token),
                    Err(e) => {
                        done.error = Some(format!("no token: {e}"));
                        continue;
                    }
                }
            }
            match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    done.status = Some(status);
                    if r.status().is_success() {
                        done.error = None;
                        return done;
                    }
                    if status == 401
                        && let Some(t) = &self.tokens
                    {
                        t.invalidate();
                    }
                    let text = r.text().await.unwrap_or_default();
                    done.error = Some(format!("{url} answered {status}: {}", text.trim()));
                    // A refusal other than these will not change on retry.
                    if !matches!(status, 401 | 408 | 429) && status < 500 {
                        return done;
                    }
                }
                Err(e) => done.error = Some(format!("{url}: {}", chain(&e))),
            }
        }
        done
    }
}

/// How a delivery went.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attempts {
    /// The subscriber's last HTTP status (`None`: it never answered).
    pub status: Option<u16>,
    pub attempts: u32,
    /// Why it was not delivered (`None`: delivered).
    pub error: Option<String>,
}
