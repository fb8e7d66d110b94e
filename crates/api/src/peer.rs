//! The outbound peer client: one delivery task per peer and lane (FLASH,
//! IMMEDIATE, PRIORITY, ROUTINE — so urgent records never wait behind a
//! routine backlog). Each takes the lane's committed, unreceipted records
//! in sequence order, posts them to the peer's `/peer/v1/records`, and
//! keeps the signed receipts; on any failure it retries the same records
//! with exponential back-off and jitter. Records stay pending until
//! receipted, so after any outage everything above the peer's
//! acknowledged high-water mark is sent again.

use crate::line::{RecordsBody, RecordsReply};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use liaison::Precedence;
use node::line::Line;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Most records posted at once.
pub const BATCH: usize = 256;

/// Lane tasks, aborted with their supervisor.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Starts delivering to every peer, present and added later. Aborting the
/// returned handle stops every delivery task.
pub fn spawn(line: Arc<Line>, me: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let http = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the peer HTTP client; nothing will be delivered");
                return;
            }
        };
        let mut started: HashSet<String> = HashSet::new();
        let mut tasks = Tasks(Vec::new());
        loop {
            let notified = line.queued().notified();
            match line.peers() {
                Ok(peers) => {
                    for (peer, _) in peers {
                        if started.insert(peer.clone()) {
                            for lane in Precedence::ALL {
                                tasks.0.push(tokio::spawn(deliver(
                                    line.clone(),
                                    http.clone(),
                                    me.clone(),
                                    peer.clone(),
                                    *lane,
                                )));
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading peers failed"),
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    })
}

/// Back-off after `failures` consecutive failures: 100 ms doubling up to
/// 30 s, times a jitter in [0.5, 1.5).
fn backoff(failures: u32, jitter: u128) -> Duration {
    let base = 100u64.saturating_mul(1 << failures.min(9)).min(30_000);
    let factor = 500 + (jitter % 1000) as u64;
    Duration::from_millis(base * factor / 1000)
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &RecordsBody,
) -> Result<RecordsReply, String> {
    let r = http
        .post(format!("{url}/peer/v1/records"))
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let text = r.text().await.map_err(|e| e.to_string())?;
    if status.is_success() || status.as_u16() == 409 {
        serde_json::from_str(&text).map_err(|e| format!("{status}: unreadable reply: {e}"))
    } else {
        Err(format!("{status}: {}", text.trim()))
    }
}

async fn deliver(
    line: Arc<Line>,
    http: reqwest::Client,
    me: String,
    peer: String,
    lane: Precedence,
) {
    let mut failures = 0u32;
    loop {
        let notified = line.queued().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let batch = match line.outbox(&peer, lane, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%peer, %lane, error = %e, "reading the outbox failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            continue;
        }
        let url = match line.peers() {
            Ok(p) => p.into_iter().find(|(n, _)| *n == peer).map(|(_, u)| u),
            Err(_) => None,
        };
        let Some(url) = url else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let body = RecordsBody {
            from: me.clone(),
            records: batch.iter().map(|(_, b)| B64.encode(b)).collect(),
        };
        let first = batch[0].0;
        let mut waiting = false;
        let outcome = match post(&http, &url, &body).await {
            Ok(reply) => {
                let receipts: Result<Vec<Vec<u8>>, _> =
                    reply.receipts.iter().map(|r| B64.decode(r)).collect();
                match receipts {
                    Ok(r) if !r.is_empty() => {
                        let n = r.len();
                        match line.keep_receipts(&peer, r).await {
                            Ok(_) => {
                                if let Some(s) = reply.stopped {
                                    tracing::warn!(%peer, %lane, stopped = %s, "the peer took only part of a batch");
                                }
                                tracing::debug!(%peer, %lane, first, receipted = n, "records delivered");
                                Ok(())
                            }
                            Err(e) => Err(format!("its receipts were refused: {e}")),
                        }
                    }
                    Ok(_) => {
                        waiting = reply
                            .stopped
                            .as_ref()
                            .is_some_and(|s| s["code"] == "waiting");
                        Err(format!(
                            "no record was taken: {}",
                            reply.stopped.map(|s| s.to_string()).unwrap_or_default()
                        ))
                    }
                    Err(_) => Err("the receipts are not base64".into()),
                }
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => failures = 0,
            // Waiting for a higher lane to catch up: no back-off needed.
            Err(e) if waiting => {
                tracing::debug!(%peer, %lane, first, error = %e, "waiting for a higher lane");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                failures += 1;
                let wait = backoff(failures, line.new_id().as_u128());
                tracing::warn!(%peer, %lane, first, records = batch.len(), failures, retry_ms = wait.as_millis() as u64, error = %e, "delivery failed; will resend");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds_with_jitter() {
        assert_eq!(backoff(1, 500), Duration::from_millis(200));
        assert_eq!(backoff(2, 500), Duration::from_millis(400));
        assert_eq!(backoff(30, 500), Duration::from_millis(30_000));
        assert_eq!(backoff(1, 0), Duration::from_millis(100));
        assert_eq!(backoff(1, 999), Duration::from_millis(299));
    }
}
