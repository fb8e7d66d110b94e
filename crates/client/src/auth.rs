//! Bearer tokens for this node's own calls to USSs, as a USS in a pool
//! gets them: from an OAuth 2.0 token endpoint by client credentials
//! (RFC 6749 §4.4: a POST with the client authenticated by HTTP Basic,
//! the token kept until shortly before it expires), or from a token file
//! for air-gapped setups (read at each use, so that whoever rotates it in
//! place is followed).

use crate::{Error, chain, http};
use reqwest::Url;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token is fetched again this long before the endpoint said it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Where the node's tokens come from.
#[derive(Clone, Debug)]
pub enum TokenSource {
    /// A file holding one token (surrounding whitespace ignored).
    File(PathBuf),
    /// OAuth 2.0 client credentials at `token_url`.
    ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        /// Space-separated scopes asked for.
        scope: String,
        /// Sent as `audience` where the pool's authority wants it.
        audience: Option<String>,
    },
}

/// The node's bearer tokens from one source, cached while valid.
#[derive(Debug)]
pub struct Tokens {
    source: TokenSource,
    http: reqwest::Client,
    cached: Mutex<Option<(String, Instant)>>,
}

impl Tokens {
    /// Tokens from `source`; the token endpoint is reached over HTTP(S)
    /// trusting the system's roots and `extra_roots` (PEM).
    pub fn new(
        source: TokenSource,
        timeout: Duration,
        extra_roots: &[u8],
    ) -> Result<Tokens, Error> {
        Ok(Tokens {
            source,
            http: http(timeout, extra_roots)?,
            cached: Mutex::new(None),
        })
    }

    /// A token to send now.
    pub async fn bearer(&self) -> Result<String, Error> {
        match &self.source {
            TokenSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Token(format!("reading the token file {}: {e}", path.display()))
                })?;
                let token = text.trim();
                if token.is_empty() || token.chars().any(char::is_whitespace) {
                    return Err(Error::Token(format!(
                        "the token file {} must hold one token",
                        path.display()
                    )));
                }
                Ok(token.to_string())
            }
            TokenSource::ClientCredentials { .. } => {
                if let Some((token, until)) = self
                    .cached
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    && Instant::now() < until
                {
                    return Ok(token);
                }
                let (token, lifetime) = self.fetch().await?;
                let until = Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN);
                *self.cached.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((token.clone(), until));
                Ok(token)
            }
        }
    }

    /// Forgets the cached token (a USS answered 401 to it).
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A fresh token from the endpoint, and how long it lives.
    async fn fetch(&self) -> Result<(String, Duration), Error> {
        let TokenSource::ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
        } = &self.source
        else {
            return Err(Error::Token("not a token endpoint".into()));
        };
        let url = Url::parse(token_url).map_err(|e| Error::Url(format!("{token_url}: {e}")))?;
        // application/x-www-form-urlencoded, encoded as a URL query is.
        let mut form = Url::parse("http://form.invalid/").map_err(|e| Error::Url(e.to_string()))?;
        {
            let mut pairs = form.query_pairs_mut();
            pairs.append_pair("grant_type", "client_credentials");
            pairs.append_pair("scope", scope);
            if let Some(a) = audience {
                pairs.append_pair("audience", a);
            }
        }
        let body = form.query().unwrap_or_default().to_string();
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            url: token_url.clone(),
            message: chain(&e),
        };
        let r = self
            .http
            .post(url)
            .basic_auth(client_id, Some(client_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(unreachable)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        if !(200..300).contains(&status) {
            return Err(Error::Refused(crate::refusal(crate::Answer {
                status,
                body: v,
            })));
        }
        let token = v["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Token(format!("{token_url} answered no access_token: {v}")))?;
        if let Some(kind) = v["token_type"].as_str()
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(Error::Token(format!(
                "{token_url} answered a {kind} token, not a bearer token"
            )));
        }
        let lifetime = match v["expires_in"].as_u64() {
            Some(s) => Duration::from_secs(s),
            // Without expires_in, the token is used for a minute.
            None => REFRESH_MARGIN + Duration::from_secs(60),
        };
        Ok((token.to_string(), lifetime))
    }
}
