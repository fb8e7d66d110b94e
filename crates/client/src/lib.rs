//! The typed client of a node's HTTP APIs: one method per endpoint, the
//! request bodies the server itself parses (`api::wire`), path segments
//! encoded, and every refusal read into [`Refusal`] (status, `code`,
//! `message`, `field`). Used by the line's CLI, the demo and the witness
//! submitter; tests that probe the wire with arbitrary bytes use plain HTTP.

pub mod auth;
pub mod notify;

use api::wire::line::{
    AccreditBody, AckBody, AreaBody, ChannelBody, DeadlinesBody, MemberBody, MessagesQuery,
    PeerBody, QuotaBody, ReasonBody, SendBody,
};
use reqwest::{Method, Url};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// Installs the workspace's one TLS crypto provider (ring) as the process
/// default, once: every outbound HTTPS connection (this client, the
/// witness submitter, calls to USSs) uses it. Idempotent; call it before
/// building any `reqwest` client (building one without a provider panics).
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed ring already.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An HTTP(S) client: rustls with ring, the system's trusted roots plus
/// `extra_roots` (PEM certificates: a private certificate authority, a
/// witness's own certificate), each request bounded by `timeout`.
pub fn http(timeout: Duration, extra_roots: &[u8]) -> Result<reqwest::Client, Error> {
    install_crypto();
    let mut b = reqwest::Client::builder().timeout(timeout);
    if !extra_roots.is_empty() {
        let certs = reqwest::Certificate::from_pem_bundle(extra_roots)
            .map_err(|e| Error::Url(format!("the trusted certificates: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Url(
                "the trusted certificates: no PEM certificate found".into(),
            ));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| Error::Url(format!("building an HTTP client: {e}")))
}

/// A refusal as the node answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    /// The machine-readable `code` (`"error"` when the body has none).
    pub code: String,
    pub message: String,
    /// The field at fault, where one is.
    pub field: Option<String>,
    /// The whole body (JSON, or the text as a JSON string).
    pub body: Value,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(field) = &self.field {
            write!(f, " [field {field}]")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node could not be reached, or the exchange broke off.
    #[error("cannot reach the node at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The node answered with a 4xx or 5xx.
    #[error("{0}")]
    Refused(Refusal),
    /// The base URL or a path cannot form a URL.
    #[error("{0}")]
    Url(String),
    /// No usable token: the token file or the token endpoint's answer.
    #[error("{0}")]
    Token(String),
}

impl Error {
    /// The refusal, if the node answered one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// A node's API at a base URL, with an optional bearer token.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

/// What an answer carried: its status and body (JSON, or the text as a
/// JSON string; `null` when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Client {
    /// A client of the node at `base` (`http://host:port`, `https://…`, or
    /// with a path prefix), each request bounded by `timeout`, trusting the
    /// system's roots.
    pub fn new(base: &str, timeout: Duration) -> Result<Client, Error> {
        Client::trusting(base, timeout, &[])
    }

    /// [`Client::new`], trusting also the PEM certificates `extra_roots`.
    pub fn trusting(base: &str, timeout: Duration, extra_roots: &[u8]) -> Result<Client, Error> {
        let mut base = Url::parse(base.trim()).map_err(|e| Error::Url(format!("{base}: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(Error::Url(format!("{base}: not a base URL")));
        }
        // Segments are appended to the base's path.
        if let Ok(mut segs) = base.path_segments_mut() {
            segs.pop_if_empty();
        }
        let http = http(timeout, extra_roots)?;
        Ok(Client {
            http,
            base,
            token: None,
        })
    }

    /// The same node with this bearer token.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of `segments` under the base, each segment encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut s) = u.path_segments_mut() {
            s.extend(segments);
        }
        u
    }

    /// Sends one request and answers whatever came back, success or not:
    /// for callers that expect a particular status.
    pub async fn exchange<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<Answer, Error> {
        let shown = url.to_string();
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            url: shown.clone(),
            message: chain(&e),
        };
        let r = req.send().await.map_err(unreachable)?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(unreachable)?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Answer { status, body })
    }

    /// Sends one request; a 2xx answers its body, anything else is
    /// [`Error::Refused`].
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<Value, Error> {
        let a = self.exchange(method, self.url(segments), body).await?;
        if (200..300).contains(&a.status) {
            return Ok(a.body);
        }
        Err(Error::Refused(refusal(a)))
    }

    async fn get(&self, segments: &[&str]) -> Result<Value, Error> {
        self.call::<()>(Method::GET, segments, None).await
    }

    /// A GET answered as text (the log's notes and keys).
    pub async fn text(&self, segments: &[&str]) -> Result<String, Error> {
        match self.get(segments).await? {
            Value::String(s) => Ok(s),
            other => Ok(other.to_string()),
        }
    }

    // ---- the node ----

    pub async fn healthz(&self) -> Result<Value, Error> {
        self.get(&["healthz"]).await
    }

    // ---- the evidence log and the witness (public) ----

    /// The log's verifier key (C2SP signed-note vkey).
    pub async fn log_key(&self) -> Result<String, Error> {
        Ok(self.text(&["log", "key"]).await?.trim().to_string())
    }

    /// The newest signed checkpoint (a C2SP signed note).
    pub async fn checkpoint(&self) -> Result<String, Error> {
        self.text(&["log", "checkpoint"]).await
    }

    /// Submits a C2SP tlog-witness `add-checkpoint` body to the witness
    /// whose submission prefix this client's base URL is (a Detente node's
    /// is `<node>/witness`); the status and the text answered (the
    /// cosignature lines on 200; 409 carries the witness's size).
    pub async fn add_checkpoint(&self, body: String) -> Result<(u16, String), Error> {
        let url = self.url(&["add-checkpoint"]);
        let shown = url.to_string();
        let r = self
            .http
            .post(url)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Unreachable {
                url: shown.clone(),
                message: chain(&e),
            })?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| Error::Unreachable {
            url: shown,
            message: chain(&e),
        })?;
        Ok((status, text))
    }

    // ---- the line: peers, members, missions, channels ----

    pub async fn peers(&self) -> Result<Value, Error> {
        self.get(&["line", "v1", "peers"]).await
    }

    /// Agrees to the peer's latest proposal (`area` or `contact-line`) by
    /// proposing the same.
    pub async fn accept_proposal(&self, peer: &str, what: &str) -> Result<Value, Error> {
        self.call(
            Method::POST,
            &["line", "v1", "peers", peer, what, "accept"],
            None::<&()>,
        )
        .await
    }

    /// Replaces the key of a member of this party.
    pub async fn replace_member(
        &self,
        key: &str,
        b: &api::wire::line::ReplaceMemberBody,
    ) -> Result<Value, Error> {
        self.call(
            Method::POST,
            &["line", "v1", "members", key, "replace"],
            Some(b),
        )
        .await
    }

    /// Declares the key of a member of this party compromised.
    pub async fn declare_compromised(
        &self,
        key: &str,
        b: &api::wire::line::CompromisedBody,
    ) -> Result<Value, Error> {
        self.call(
            Method::POST,
            &["line", "v1", "members", key, "compromised"],
            Some(b),
        )
        .await
    }

    /// Sends a group's messages in one request and one commit.
    pub async fn send_group(&self, b: &api::wire::line::GroupSendBody) -> Result<Value, Error> {
        self.call(Method::POST, &["line", "v1", "messages", "group"], Some(b))
            .await
    }

    /// Who is peered with whom, as every party last announced.
    pub async fn mesh(&self) -> Result<Value, Error> {
        self.get(&["line", "v1", "mesh"]).await
    }

    pub async fn add_peer(&self, b: &PeerBody) -> Result<Value, Error> {
        self.call(Method::POST, &["line", "v1", "peers"], Some(b))
            .await
    }

    pub async fn set_area(&self, peer: &str, b: &AreaBody) -> Result<Value, Error> {
        self.call(Method::PUT, &["line", "v1", "peers", peer, "area"], Some(b))
            .await
    }

    /// Publishes a public statement of this party.
    pub async fn publish_statement(
        &self,
        b: &api::wire::line::StatementBody,
    ) -> Result<Value, Error> {
        self.call(Method::POST, &["line", "v1", "statements"], Some(b))
            .await
    }

    /// The party's public statements (JSON Feed 1.1, with proofs).
    pub async fn statements_feed(&self) -> Result<Value, Error> {
        self.get(&["statements", "feed.json"]).await
    }

    /// Declares the line of contact as a polyline with a buffer width.
    pub async fn contact_line(&self, b: &api::wire::line::ContactLineBody) -> Result<Value, Error> {
        self.call(Method::POST, &["line", "v1", "contact-line"], Some(b))
            .await
    }

    pub async fn designate_contact(&self, constraint: &str) -> Result<Value, Error> {
        self.call::<()>(Method::PUT, &["line", "v1", "contact", constraint], None)
            .await
    }

    pub async fn members(&self) -> Result<Value, Error> {
        self.get(&["line", "v1", "members"]).await
    }

    pub async fn register_member(&self, b: &MemberBody) -> Result<Value, Error> {
        self.call(Method::POST, &["line", "v1", "members"], Some(b))
            .await
    }

    pub async fn remove_member(&self, key: &str) -> Result<Value, Error> {
        self.call::<()>(Method::DELETE, &["line", "v1", "members", key], None)
            .await
    }

    pub async fn missions(&self) -> Result<Value, Error> {
        self.get(&["line", "v1", "missions"]).await
    }

    pub async fn set_quota(&self, guest: &str, b: &QuotaBody) -> Result<Value, Error> {
        self.call(
            Method::PUT,
            &["line", "v1", "missions", guest, "quota"],
            Some(b),
        )
        .await
    }

    pub async fn accredit(&self, guest: &str, b: &AccreditBody) -> Result<Value, Error> {
        self.call(
            Method::POST,
            &["line", "v1", "missions", guest, "accreditations"],
            Some(b),
        )
        .await
    }

    pub async fn close_mission(&self, guest: &str, b: &ReasonBody) -> Result<Value, Error> {
        self.call(
            Method::POST,
            &["line", "v1", "missions", guest, "close"],
            Some(b),
        )
        .await
    }

    /// Unpins a peer (refused while the direct line with it is open).
    pub async fn remove_peer(&self, name: &str, b: &ReasonBody) -> Result<Value, Error> {
        self.call(
            Method::POST,
            &["line", "v1", "peers", name, "remove"],
            Some(b),
        )
        .await
    }

    pub async fn revoke(&self, accreditation: &str, b: &ReasonBody) -> Result<Value, Error> {
        self.call(
            Method::POST,
            &["line", "v1", "accreditations", accreditation, "revoke"],
            Some(b),
        )
        .await
    }

    pub async fn channels(&self) -> Result<Value, Error> {
        self.get(&["line", "v1", "channels"]).await
    }

    pub async fn channel_notice(
        &self,
        peer: &str,
        sphere: &str,
        b: &ChannelBody,
    ) -> Result<Value, Error> {
        self.call(
            Method::POST,
            &["line", "v1", "channels", peer, sphere],
            Some(b),
        )
        .await
    }

    pub async fn set_deadlines(
        &self,
        peer: &str,
        sphere: &str,
        b: &DeadlinesBody,
    ) -> Result<Value, Error> {
        self.call(
            Method::PUT,
            &["line", "v1", "channels", peer, sphere, "deadlines"],
            Some(b),
        )
        .await
    }

    // ---- the line: messages ----

    /// The line's messages, filtered as `q` says.
    pub async fn messages(&self, q: &MessagesQuery) -> Result<Value, Error> {
        let mut url = self.url(&["line", "v1", "messages"]);
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(p) = &q.peer {
                pairs.append_pair("peer", p);
            }
            if let Some(d) = &q.direction {
                pairs.append_pair("direction", d);
            }
            if let Some(a) = q.after {
                pairs.append_pair("after", &a.to_string());
            }
            if let Some(l) = q.limit {
                pairs.append_pair("limit", &l.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let a = self.exchange::<()>(Method::GET, url, None).await?;
        if (200..300).contains(&a.status) {
            return Ok(a.body);
        }
        Err(Error::Refused(refusal(a)))
    }

    /// Creates (or, with the OVN, replaces) an F3548 entity: `kind` is
    /// `operational_intent_references` or `constraint_references`; the
    /// DSS's answer.
    pub async fn put_entity(&self, kind: &str, id: &str, body: &Value) -> Result<Value, Error> {
        self.call(Method::PUT, &["dss", "v1", kind, id], Some(body))
            .await
    }

    /// The airspace as GeoJSON or KML (`format`: `geojson` or `kml`),
    /// filtered as `q` says (`/detente/v1/export/airspace.{format}`).
    pub async fn airspace_export(
        &self,
        format: &str,
        q: &api::export::ExportQuery,
    ) -> Result<String, Error> {
        let file = format!("airspace.{format}");
        let mut url = self.url(&["detente", "v1", "export", &file]);
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in [("bbox", &q.bbox), ("from", &q.from), ("to", &q.to)] {
                if let Some(v) = v {
                    pairs.append_pair(k, v);
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let a = self.exchange::<()>(Method::GET, url, None).await?;
        if !(200..300).contains(&a.status) {
            return Err(Error::Refused(refusal(a)));
        }
        Ok(match a.body {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }

    /// Sends a member-signed message; the node's view of it.
    pub async fn send(&self, b: &SendBody) -> Result<Value, Error> {
        self.call(Method::POST, &["line", "v1", "messages"], Some(b))
            .await
    }

    /// Sends a member-signed acknowledgement; the message's view.
    pub async fn ack(&self, b: &AckBody) -> Result<Value, Error> {
        self.call(Method::POST, &["line", "v1", "acks"], Some(b))
            .await
    }

    /// The line's state: peers' reachability, outboxes, overdue messages.
    pub async fn line_status(&self) -> Result<Value, Error> {
        self.get(&["line", "v1", "status"]).await
    }
}

/// An error with its causes ("error sending request: … invalid peer
/// certificate: UnknownIssuer"): the cause is what an operator needs.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !out.contains(&c_text) {
            out.push_str(": ");
            out.push_str(&c_text);
        }
        cause = c.source();
    }
    out
}

pub(crate) fn refusal(a: Answer) -> Refusal {
    let text = |k: &str| a.body[k].as_str().map(str::to_string);
    Refusal {
        status: a.status,
        code: text("code").unwrap_or_else(|| "error".into()),
        message: text("message").unwrap_or_else(|| match &a.body {
            Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        }),
        field: text("field"),
        body: a.body,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn segments_are_encoded_under_the_bases_path() {
        let c = Client::new("http://127.0.0.1:8080/detente/", Duration::from_secs(1)).unwrap();
        assert_eq!(
            c.url(&["line", "v1", "peers", "a b/c", "area"]).as_str(),
            "http://127.0.0.1:8080/detente/line/v1/peers/a%20b%2Fc/area"
        );
        let c = Client::new("http://127.0.0.1:8080", Duration::from_secs(1)).unwrap();
        assert_eq!(
            c.url(&["healthz"]).as_str(),
            "http://127.0.0.1:8080/healthz"
        );
        assert!(Client::new("not a url", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_refusal_keeps_its_code_field_and_message() {
        let r = refusal(Answer {
            status: 400,
            body: serde_json::json!({ "code": "invalid_input", "message": "bad", "field": "key" }),
        });
        assert_eq!(
            (r.status, r.code.as_str(), r.field.as_deref()),
            (400, "invalid_input", Some("key"))
        );
        assert_eq!(r.to_string(), "400 invalid_input: bad [field key]");
        let r = refusal(Answer {
            status: 502,
            body: Value::String("upstream down\n".into()),
        });
        assert_eq!(
            (r.code.as_str(), r.message.as_str()),
            ("error", "upstream down")
        );
    }
}
