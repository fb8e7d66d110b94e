//! The operator console over HTTP: its embedded page and assets, member
//! login, sessions, the console's own read endpoints and live updates.
//!
//! A member logs in with the key they send with: the node hands out a
//! challenge, the browser signs `"detente-console-login/v1\n" ‖ node ‖ "\n" ‖
//! challenge` with the member's Ed25519 key (WebCrypto; the node never sees
//! the private key), and the node checks it against a member registered by
//! its own party and not removed. The session is a cookie the node MACs
//! (HttpOnly, SameSite=Strict, eight hours), checked again on every request —
//! removing the member ends it at once — and survives node restarts (its
//! key derives from the node seed); answered challenges and logouts are
//! kept in the store for every replica. Every request that changes something
//! must also carry the session's CSRF token in `X-Detente-CSRF`.
//!
//! A session acts through the same endpoints as a bearer token: with the
//! scope `detente.line`, plus `detente.line.admin` when the member's
//! registered role is one of the configured console admin roles. What it
//! signs must be signed by its own member key.

use crate::error::ApiError;
use crate::{AppState, Shared, wire};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hmac::{KeyInit, Mac};
use node::{Caller, Scope};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The session cookie's name.
pub const COOKIE: &str = "detente_session";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-detente-csrf";
/// What a member signs to log in (then the node's name, a newline and the challenge).
pub const LOGIN_DOMAIN: &str = "detente-console-login/v1\n";
/// How long a session lasts.
pub const SESSION_MS: u64 = 8 * 3600 * 1000;
/// How long a challenge may be answered.
pub const CHALLENGE_MS: u64 = 120 * 1000;
/// How often a replica takes in the logouts made through the others.
pub const LOGOUT_SYNC_MS: u64 = 1000;

/// Sessions and challenges; stateless but for the challenges already used
/// and the sessions logged out before their end, which are kept here and
/// in the store (`node::Mark`), so that every replica of the node — and the
/// node after a restart — knows them: a challenge is answered once, a
/// logout ends the session everywhere (within [`LOGOUT_SYNC_MS`]).
pub struct Console {
    key: [u8; 32],
    node: String,
    /// This process's own part of every nonce: replicas share the key.
    instance: String,
    admin_roles: Vec<String>,
    counter: AtomicU64,
    used: Mutex<HashMap<String, u64>>,
    ended: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("node", &self.node).finish()
    }
}

/// A logged-in member, as the session cookie says.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub member: liaison::MemberKey,
    pub expires_ms: u64,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Console {
    /// `seed` is the node's secret seed (the session key derives from it);
    /// members whose registered role is one of `admin_roles` (compared
    /// without regard to case) may take the host's decisions.
    pub fn new(seed: &[u8; 32], node: &str, admin_roles: Vec<String>) -> Self {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"detente-console-session-key/v1\n");
        h.update(seed);
        use node::Ids;
        Console {
            key: h.finalize().into(),
            node: node.to_string(),
            instance: node::RandomIds.uuid_v4().simple().to_string(),
            admin_roles: admin_roles.into_iter().map(|r| r.to_lowercase()).collect(),
            counter: AtomicU64::new(0),
            used: Mutex::new(HashMap::new()),
            ended: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, parts: &[&str]) -> String {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for p in parts {
            m.update(p.as_bytes());
            m.update(b"|");
        }
        hex(&m.finalize().into_bytes())
    }

    /// A fresh unpredictable value (a MAC over a counter and the time).
    fn nonce(&self, now_ms: u64, what: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.mac(&[what, &self.instance, &n.to_string(), &now_ms.to_string()])[..32].to_string()
    }

    /// A challenge: `nonce.expiry.mac`.
    pub fn challenge(&self, now_ms: u64) -> String {
        let nonce = self.nonce(now_ms, "challenge");
        let exp = (now_ms + CHALLENGE_MS).to_string();
        let mac = self.mac(&["challenge", &nonce, &exp]);
        format!("{nonce}.{exp}.{mac}")
    }

    /// Checks and uses up a challenge in this process: its nonce and
    /// expiry, for the store to use it up for every replica.
    fn take_challenge(&self, c: &str, now_ms: u64) -> Result<(String, u64), ApiError> {
        let bad = || ApiError::bad("challenge", "not a challenge of this node, or expired");
        let [nonce, exp, mac] = c.split('.').collect::<Vec<_>>()[..] else {
            return Err(bad());
        };
        let exp: u64 = exp.parse().map_err(|_| bad())?;
        if !eq(&self.mac(&["challenge", nonce, &exp.to_string()]), mac) || exp < now_ms {
            return Err(bad());
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.retain(|_, e| *e >= now_ms);
        if used.insert(nonce.to_string(), exp).is_some() {
            return Err(used_challenge());
        }
        Ok((nonce.to_string(), exp))
    }

    /// Takes in sessions ended elsewhere (through another replica, or
    /// before a restart): `(id, its expiry)`.
    pub fn absorb_logouts(&self, ended: Vec<(String, u64)>, now_ms: u64) {
        let mut mine = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        mine.retain(|_, e| *e >= now_ms);
        mine.extend(ended);
    }

    fn cookie_value(&self, s: &Session) -> String {
        let member = s.member.to_hex();
        let exp = s.expires_ms.to_string();
        let mac = self.mac(&["session", &s.id, &member, &exp]);
        format!("v1.{}.{member}.{exp}.{mac}", s.id)
    }

    /// The session a request's cookie names, if it is valid now.
    pub fn session(&self, headers: &HeaderMap, now_ms: u64) -> Option<Session> {
        let value = cookie(headers, COOKIE)?;
        let [v, id, member, exp, mac] = value.split('.').collect::<Vec<_>>()[..] else {
            return None;
        };
        if v != "v1" || !eq(&self.mac(&["session", id, member, exp]), mac) {
            return None;
        }
        let expires_ms: u64 = exp.parse().ok()?;
        if expires_ms < now_ms {
            return None;
        }
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if ended.contains_key(id) {
            return None;
        }
        Some(Session {
            id: id.to_string(),
            member: liaison::MemberKey::parse(member).ok()?,
            expires_ms,
        })
    }

    /// The CSRF token of a session.
    pub fn csrf(&self, s: &Session) -> String {
        self.mac(&["csrf", &s.id])
    }

    fn end(&self, s: &Session, now_ms: u64) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.retain(|_, e| *e >= now_ms);
        ended.insert(s.id.clone(), s.expires_ms);
    }

    /// The session's member, if still a registered member of this party.
    fn member(
        &self,
        st: &AppState,
        s: &Session,
    ) -> Result<Option<liaison::state::MemberEntry>, ApiError> {
        let me = st.log.origin();
        Ok(st.line.read(|l| {
            l.member(&s.member)
                .filter(|m| m.party == me && m.removed_at.is_none())
                .cloned()
        })?)
    }

    /// What the session's member may do now: `None` if the member is no
    /// longer a registered member of this party.
    fn caller(&self, st: &AppState, s: &Session) -> Result<Option<(Caller, Value)>, ApiError> {
        let Some(m) = self.member(st, s)? else {
            return Ok(None);
        };
        let admin = self.admin_roles.contains(&m.member.role.to_lowercase());
        let mut scopes = vec![Scope::LineMember];
        if admin {
            scopes.push(Scope::LineAdmin);
        }
        let view = json!({
            "node": st.log.origin(),
            "member": s.member.to_hex(),
            "name": m.member.name,
            "role": m.member.role,
            "spheres": m.member.spheres.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
            "admin": admin,
            "csrf": self.csrf(s),
            "expires_ms": s.expires_ms,
        });
        Ok(Some((
            Caller {
                sub: format!("{SESSION_SUB}{}", s.member.to_hex()),
                scopes,
            },
            view,
        )))
    }
}

/// A session's caller is `console:<member key hex>`.
pub const SESSION_SUB: &str = "console:";

/// The member key a console session acts for, if `caller` is one.
pub fn session_member(caller: &Caller) -> Option<&str> {
    caller.sub.strip_prefix(SESSION_SUB)
}

/// Constant-time comparison of two MACs in hex.
fn eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The caller of a request that carries a session cookie and no bearer
/// token: `None` when there is no cookie at all.
pub(crate) fn session_caller(
    st: &AppState,
    headers: &HeaderMap,
) -> Option<Result<Caller, ApiError>> {
    if headers.contains_key(header::AUTHORIZATION) || cookie(headers, COOKIE).is_none() {
        return None;
    }
    let now = st.line.now_ms();
    let expired =
        || ApiError::Unauthenticated("the console session has ended: log in again".into());
    Some(match st.console.session(headers, now) {
        None => Err(expired()),
        Some(s) => match st.console.caller(st, &s) {
            Ok(Some((c, _))) => Ok(c),
            Ok(None) => Err(ApiError::Forbidden(
                "this member is no longer registered with this node".into(),
            )),
            Err(e) => Err(e),
        },
    })
}

/// Refuses a state-changing request made with a session cookie unless it
/// carries the session's CSRF token (SameSite=Strict already keeps other
/// sites' requests from carrying the cookie; this is the second wall).
pub(crate) async fn csrf_guard(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let h = req.headers();
    let login = req.uri().path() == "/console/api/login";
    if !safe && !login && !h.contains_key(header::AUTHORIZATION) && cookie(h, COOKIE).is_some() {
        let now = st.line.now_ms();
        let ok = st.console.session(h, now).is_some_and(|s| {
            h.get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| eq(t, &st.console.csrf(&s)))
        });
        if !ok {
            return ApiError::Forbidden(format!(
                "a console request that changes something needs the session's {CSRF_HEADER} header"
            ))
            .into_response();
        }
    }
    next.run(req).await
}

pub fn routes() -> Router<Shared> {
    Router::new()
        // A browser pointed at the node lands on the console's login page.
        .route("/", get(|| async { Redirect::temporary("/console/") }))
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/api/challenge", get(challenge))
        .route("/console/api/login", post(login))
        .route("/console/api/logout", post(logout))
        .route("/console/api/session", get(session))
        .route("/console/api/seen", post(seen))
        .route("/console/api/airspace", get(airspace))
        .route("/console/api/events", get(events))
        .route("/console/api/evidence", get(evidence))
        .route("/console/api/basemap", get(basemap))
        .route("/console/api/tiles/{z}/{x}/{y}", get(tile))
        .route("/console/{*path}", get(asset))
}

#[utoipa::path(get, path = "/console/", tag = "console", summary = "The operator console's page", responses((status = 200, description = "HTML", body = String)))]
async fn index(h: HeaderMap) -> Response {
    serve_asset("index.html", &h)
}

#[utoipa::path(get, path = "/console/{path}", tag = "console", summary = "The console's embedded assets", params(("path" = String, Path, description = "The asset's path")), responses((status = 200, description = "The asset", body = String), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody)))]
async fn asset(Path(path): Path<String>, h: HeaderMap) -> Response {
    serve_asset(&path, &h)
}

fn serve_asset(path: &str, h: &HeaderMap) -> Response {
    let Some(a) = console::asset(path) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "code": "not_found", "message": format!("no console file {path}") })),
        )
            .into_response();
    };
    let etag = format!("\"{:016x}\"", a.etag);
    let mut r = if h.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(&etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, a.content_type)], a.bytes).into_response()
    };
    let hs = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        hs.insert(header::ETAG, v);
    }
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Nothing but this node: no outside script, style, image or connection.
    hs.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    hs.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    hs.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

#[utoipa::path(get, path = "/console/api/challenge", tag = "console", summary = "A login challenge to sign with a member key", responses((status = 200, description = "The challenge", body = serde_json::Value), (status = 429, description = "Rate limited; `Retry-After` says when to retry", body = crate::openapi::ErrorBody)))]
async fn challenge(State(st): State<Shared>) -> impl IntoResponse {
    let now = st.line.now_ms();
    Json(json!({
        "node": st.log.origin(),
        "challenge": st.console.challenge(now),
        "domain": LOGIN_DOMAIN,
        "expires_ms": now + CHALLENGE_MS,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    member: String,
    challenge: String,
    /// Ed25519 over `LOGIN_DOMAIN ‖ node ‖ "\n" ‖ challenge`, hex.
    signature: String,
}

pub(crate) type LoginBodyFuzz = LoginBody;

impl Console {
    /// Whether a login body is well formed and answers a live challenge
    /// (which it uses up); the signature is checked by the caller.
    pub(crate) fn login_shape(&self, b: &LoginBody, now_ms: u64) -> bool {
        liaison::MemberKey::parse(&b.member).is_ok()
            && signature(&b.signature).is_ok()
            && self.take_challenge(&b.challenge, now_ms).is_ok()
    }
}

fn used_challenge() -> ApiError {
    ApiError::bad("challenge", "this challenge was already used")
}

fn signature(s: &str) -> Result<[u8; 64], ApiError> {
    liaison::from_hex(s.trim())
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| ApiError::bad("signature", "128 hex digits (an Ed25519 signature)"))
}

#[utoipa::path(post, path = "/console/api/login", tag = "console", summary = "Log in with a member-signed challenge; sets the session cookie", request_body = crate::console::LoginBody, responses((status = 200, description = "Logged in", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 429, description = "Rate limited; `Retry-After` says when to retry", body = crate::openapi::ErrorBody)))]
async fn login(
    State(st): State<Shared>,
    h: HeaderMap,
    crate::extract::Body(b): crate::extract::Body<LoginBody>,
) -> Result<Response, ApiError> {
    let now = st.line.now_ms();
    let member = liaison::MemberKey::parse(&b.member).map_err(|e| ApiError::bad("member", e))?;
    let signature = signature(&b.signature)?;
    let (nonce, until) = st.console.take_challenge(&b.challenge, now)?;
    // Used up for every replica: one answer per challenge.
    if !st
        .dss
        .mark_once(node::Mark::ConsoleChallenge, nonce, until, now)
        .await?
    {
        return Err(used_challenge());
    }
    let message = format!("{LOGIN_DOMAIN}{}\n{}", st.log.origin(), b.challenge);
    let key = ed25519_dalek::VerifyingKey::from_bytes(&member.0)
        .map_err(|_| ApiError::bad("member", "not an Ed25519 public key"))?;
    if !node::tlog::ed25519::verify_strict(
        &key,
        &[message.as_bytes()],
        &ed25519_dalek::Signature::from_bytes(&signature),
    ) {
        tracing::warn!(member = %member, "console login refused: the signature does not verify");
        return Err(ApiError::Unauthenticated(
            "the signature does not verify with this member key: is it the right key file?".into(),
        ));
    }
    let s = Session {
        id: st.console.nonce(now, "session"),
        member,
        expires_ms: now + SESSION_MS,
    };
    let Some((caller, view)) = st.console.caller(&st, &s)? else {
        tracing::warn!(member = %s.member, "console login refused: not a registered member of this party");
        return Err(ApiError::Forbidden(
            "this key is not a registered member of this party (or was removed)".into(),
        ));
    };
    st.limiter.check(&caller.sub)?;
    // Who logged in, with the member's own signature of the challenge.
    st.line
        .record_access(liaison::Access {
            what: "console.login".into(),
            member: s.member,
            subject: None,
            at_ms: now,
            signed: Some((message.clone(), signature)),
        })
        .await?;
    tracing::info!(member = %s.member, "console login");
    let secure = if h.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        st.console.cookie_value(&s),
        SESSION_MS / 1000
    );
    let mut r = Json(view).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

#[utoipa::path(post, path = "/console/api/logout", tag = "console", summary = "End the session", responses((status = 200, description = "Logged out", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody)), security(("console_session" = [])))]
async fn logout(State(st): State<Shared>, h: HeaderMap) -> Result<Response, ApiError> {
    let now = st.line.now_ms();
    if let Some(s) = st.console.session(&h, now) {
        st.line
            .record_access(liaison::Access {
                what: "console.logout".into(),
                member: s.member,
                subject: None,
                at_ms: now,
                signed: None,
            })
            .await?;
        st.console.end(&s, now);
        // Ended for every replica too (they take it in within a second).
        st.dss
            .mark_once(node::Mark::ConsoleLogout, s.id.clone(), s.expires_ms, now)
            .await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("detente_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

fn logged_in(st: &AppState, h: &HeaderMap) -> Result<(Caller, Value), ApiError> {
    let now = st.line.now_ms();
    let s = st
        .console
        .session(h, now)
        .ok_or_else(|| ApiError::Unauthenticated("log in to the console first".into()))?;
    let out = st.console.caller(st, &s)?.ok_or_else(|| {
        ApiError::Forbidden("this member is no longer registered with this node".into())
    })?;
    st.limiter.check(&out.0.sub)?;
    Ok(out)
}

/// A message's first display to the logged-in member, signed in the
/// browser with the member's key over `liaison::seen_text`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeenBody {
    message: String,
    at_ms: u64,
    /// Ed25519 over `detente-seen/v1\n<node>\n<message>\n<at_ms>`, hex.
    signature: String,
}

/// How far a seen marker's time may be from the node's.
const SEEN_SKEW_MS: u64 = 5 * 60_000;

#[utoipa::path(post, path = "/console/api/seen", tag = "console", summary = "Mark a message as first shown to the logged-in member (signed by the member)", request_body = crate::console::SeenBody, responses((status = 200, description = "Recorded (or already)", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 404, description = "No such message", body = crate::openapi::ErrorBody)), security(("console_session" = [])))]
pub(crate) async fn seen(
    State(st): State<Shared>,
    h: HeaderMap,
    crate::extract::Body(b): crate::extract::Body<SeenBody>,
) -> Result<impl IntoResponse, ApiError> {
    logged_in(&st, &h)?;
    let now = st.line.now_ms();
    let member = st
        .console
        .session(&h, now)
        .map(|s| s.member)
        .ok_or_else(|| ApiError::Unauthenticated("log in to the console first".into()))?;
    let id = crate::wire::line::uuid(&b.message, "message")?;
    if b.at_ms.abs_diff(now) > SEEN_SKEW_MS {
        return Err(ApiError::bad(
            "at_ms",
            "within five minutes of the node's clock",
        ));
    }
    let signature = signature(&b.signature)?;
    st.line
        .record_access(liaison::Access {
            what: "message.seen".into(),
            member,
            subject: Some(id.to_string()),
            at_ms: b.at_ms,
            signed: Some((liaison::seen_text(st.log.origin(), &id, b.at_ms), signature)),
        })
        .await?;
    Ok(Json(json!({ "message": id.to_string(), "seen": true })))
}

#[utoipa::path(get, path = "/console/api/session", tag = "console", summary = "The session's member, party and role", responses((status = 200, description = "The session", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody)), security(("console_session" = [])))]
async fn session(State(st): State<Shared>, h: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(logged_in(&st, &h)?.1))
}

fn ms(t: airspace::Timestamp) -> i64 {
    t.unix_micros().div_euclid(1000)
}

fn volumes(v: &[airspace::PreparedVolume]) -> Vec<Value> {
    v.iter()
        .map(|p| {
            let v = &p.volume;
            let outline = match &v.outline {
                airspace::Outline::Polygon { vertices } => json!({
                    "polygon": vertices.iter().map(|x| [x.lat, x.lng]).collect::<Vec<_>>()
                }),
                airspace::Outline::Circle { center, radius_m } => json!({
                    "circle": { "center": [center.lat, center.lng], "radius_m": radius_m }
                }),
            };
            json!({
                "outline": outline,
                "altitude_lower_m": v.altitude_lower_m,
                "altitude_upper_m": v.altitude_upper_m,
                "time_start_ms": v.time_start.map(ms),
                "time_end_ms": v.time_end.map(ms),
            })
        })
        .collect()
}

/// `own`, or the peer whose read-only copy this is.
fn owner(manager: &str) -> String {
    manager
        .strip_prefix("peer:")
        .and_then(|r| r.split_once(':'))
        .map_or_else(|| "own".to_string(), |(p, _)| p.to_string())
}

/// Everything the map draws: intents, constraints (the line of contact
/// marked), and the conflicts between them.
#[utoipa::path(get, path = "/console/api/airspace", tag = "console", summary = "Operations, constraints and conflicts for the map", responses((status = 200, description = "The airspace", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("console_session" = [])))]
async fn airspace(State(st): State<Shared>, h: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    logged_in(&st, &h)?;
    let contact: Vec<uuid::Uuid> = st
        .line
        .read(|l| l.contact_constraints().copied().collect())?;
    let (intents, constraints) = st.dss.view(|s| {
        let intents: Vec<Value> = s
            .intents()
            .map(|i| {
                json!({
                    "id": i.id, "manager": i.manager, "owner": owner(&i.manager),
                    "version": i.version, "state": i.state.as_str(),
                    "time_start_ms": ms(i.time_start), "time_end_ms": ms(i.time_end),
                    "volumes": volumes(&i.extents),
                })
            })
            .collect();
        let constraints: Vec<Value> = s
            .constraints()
            .map(|c| {
                json!({
                    "id": c.id, "manager": c.manager, "owner": owner(&c.manager),
                    "version": c.version, "contact": contact.contains(&c.id),
                    "time_start_ms": ms(c.time_start), "time_end_ms": ms(c.time_end),
                    "volumes": volumes(&c.extents),
                })
            })
            .collect();
        (intents, constraints)
    })?;
    let conflicts: Vec<Value> = st
        .dss
        .conflicts()
        .await?
        .iter()
        .map(wire::conflict)
        .collect();
    Ok(Json(json!({
        "me": st.log.origin(),
        "now_ms": st.line.now_ms(),
        "intents": intents,
        "constraints": constraints,
        "conflicts": conflicts,
    })))
}

/// Server-sent events: `state` whenever the log grows (every change the
/// console shows is a log entry) or its newest checkpoint changes (a new
/// one, or a witness's cosignature added to it), checked every 200 ms; a
/// keep-alive comment every 10 s. The browser reconnects by itself. The
/// stream ends once its session does: logged out, expired, or the member
/// removed (the reconnection is then refused).
#[utoipa::path(get, path = "/console/api/events", tag = "console", summary = "Server-sent events: changes of the line and the airspace", responses((status = 200, description = "An event stream (text/event-stream)", body = String), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody)), security(("console_session" = [])))]
async fn events(State(st): State<Shared>, h: HeaderMap) -> Result<Response, ApiError> {
    logged_in(&st, &h)?;
    let stream = futures_util::stream::unfold((st, h, None), |(st, h, last)| async move {
        loop {
            // Still logged in, and still a member of this node's party.
            st.console
                .session(&h, st.line.now_ms())
                .and_then(|s| st.console.member(&st, &s).ok().flatten())?;
            let size = st.log.size();
            let checkpoint = st.log.checkpoint().await.unwrap_or_default();
            let now = Some((size, checkpoint));
            if last != now {
                let data = json!({ "log_size": size, "now_ms": st.line.now_ms() }).to_string();
                let ev = Event::default().event("state").data(data);
                return Some((Ok::<_, Infallible>(ev), (st, h, now)));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EvidenceQuery {
    /// The operational intent's or constraint's id.
    entity: String,
}

/// One click, one file: the evidence bundle about an entity as a tar of the
/// folder `detente evidence export` would write (untar, then `detente
/// verify` on the folder).
#[utoipa::path(get, path = "/console/api/evidence", tag = "console", summary = "The evidence bundle about an entity, as a tar", params(crate::console::EvidenceQuery), responses((status = 200, description = "A tar (application/x-tar)", body = String), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("console_session" = [])))]
async fn evidence(
    State(st): State<Shared>,
    h: HeaderMap,
    q: Result<axum::extract::Query<EvidenceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    logged_in(&st, &h)?;
    let member = st
        .console
        .session(&h, st.line.now_ms())
        .map(|s| s.member)
        .ok_or_else(|| ApiError::Unauthenticated("log in to the console first".into()))?;
    let axum::extract::Query(q) =
        q.map_err(|_| ApiError::bad("entity", "?entity=ID is required"))?;
    let entity = q.entity.trim().to_string();
    if entity.is_empty()
        || entity.len() > 100
        || !entity
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(ApiError::bad(
            "entity",
            "an entity id (letters, digits and dashes)",
        ));
    }
    let files = st
        .log
        .bundle(&node::evidence::Selection {
            entity: Some(entity.clone()),
            ..Default::default()
        })
        .await?;
    let dir = format!("evidence-{entity}");
    let body = node::tlog::archive::write(&dir, &files, st.line.now_ms() / 1000)
        .map_err(|e| ApiError::bad("entity", e.to_string()))?;
    st.line
        .record_access(liaison::Access {
            what: "evidence.export".into(),
            member,
            subject: Some(entity.clone()),
            at_ms: 0,
            signed: None,
        })
        .await?;
    let mut r = ([(header::CONTENT_TYPE, "application/x-tar")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{dir}.tar\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// The local tile source, if the operator configured one (`basemap_mbtiles`).
#[utoipa::path(get, path = "/console/api/basemap", tag = "console", summary = "The local tile source's description, if any", responses((status = 200, description = "The basemap", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody)), security(("console_session" = [])))]
async fn basemap(State(st): State<Shared>, h: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    logged_in(&st, &h)?;
    Ok(Json(match &st.tiles {
        None => json!({ "tiles": null }),
        Some(t) => {
            let i = t.info();
            json!({ "tiles": {
                "url": "/console/api/tiles/{z}/{x}/{y}",
                "name": i.name, "format": i.format, "min_zoom": i.min_zoom,
                "max_zoom": i.max_zoom, "attribution": i.attribution,
            }})
        }
    }))
}

#[utoipa::path(get, path = "/console/api/tiles/{z}/{x}/{y}", operation_id = "console_tile", tag = "console", summary = "A raster tile of the local MBTiles basemap", params(("z" = u32, Path, description = "Zoom"), ("x" = u32, Path, description = "Column"), ("y" = u32, Path, description = "Row (XYZ)")), responses((status = 200, description = "The tile (image/png or image/jpeg)", body = String), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody)), security(("console_session" = [])))]
async fn tile(
    State(st): State<Shared>,
    h: HeaderMap,
    Path((z, x, y)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    logged_in(&st, &h)?;
    let Some(t) = &st.tiles else {
        return Err(ApiError::Node(
            airspace::DomainError::NotFound {
                kind: "local tile source",
                id: "basemap_mbtiles".into(),
            }
            .into(),
        ));
    };
    let z: u8 = z
        .parse()
        .ok()
        .filter(|z| *z <= 30)
        .ok_or_else(|| ApiError::bad("z", "a zoom level 0–30"))?;
    let x: u32 = x.parse().map_err(|_| ApiError::bad("x", "a tile column"))?;
    let y: u32 = y
        .trim_end_matches(".png")
        .parse()
        .map_err(|_| ApiError::bad("y", "a tile row"))?;
    let Some(bytes) = t.tile(z, x, y).await.map_err(node::NodeError::Store)? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let ct = match t.info().format.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        _ => "image/png",
    };
    Ok((
        [
            (header::CONTENT_TYPE, ct),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_cookie_is_bound_to_its_member_its_expiry_and_the_node_key() {
        let c = Console::new(&[7; 32], "n", vec!["Line Administrator".into()]);
        let member =
            liaison::MemberKey::parse(&liaison::MemberSigner::from_seed(&[1; 32]).key().to_hex())
                .unwrap();
        let s = Session {
            id: c.nonce(1, "session"),
            member,
            expires_ms: 10_000,
        };
        let cookie = c.cookie_value(&s);
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::COOKIE,
                HeaderValue::from_str(&format!("other=1; {COOKIE}={v}")).unwrap(),
            );
            h
        };
        assert_eq!(c.session(&headers(&cookie), 5_000).unwrap().member, member);
        assert!(c.session(&headers(&cookie), 10_001).is_none(), "expired");
        let other = liaison::MemberSigner::from_seed(&[2; 32]).key().to_hex();
        let forged = cookie.replace(&member.to_hex(), &other);
        assert!(
            c.session(&headers(&forged), 5_000).is_none(),
            "another member under the same MAC"
        );
        let longer = cookie.replace(".10000.", ".99999999.");
        assert!(
            c.session(&headers(&longer), 5_000).is_none(),
            "a longer life under the same MAC"
        );
        let elsewhere = Console::new(&[8; 32], "n", vec![]);
        assert!(
            elsewhere.session(&headers(&cookie), 5_000).is_none(),
            "another node's key"
        );
        c.end(&s, 5_000);
        assert!(c.session(&headers(&cookie), 5_000).is_none(), "logged out");
    }

    #[test]
    fn a_challenge_is_answered_once_and_before_it_expires() {
        let c = Console::new(&[7; 32], "n", vec![]);
        let ch = c.challenge(1_000);
        assert!(c.take_challenge(&ch, 2_000).is_ok());
        assert!(c.take_challenge(&ch, 2_000).is_err(), "replayed");
        let late = c.challenge(1_000);
        assert!(
            c.take_challenge(&late, 1_000 + CHALLENGE_MS + 1).is_err(),
            "expired"
        );
        let mut forged = c.challenge(1_000);
        forged.replace_range(0..1, if forged.starts_with('0') { "1" } else { "0" });
        assert!(
            c.take_challenge(&forged, 2_000).is_err(),
            "not made by this node"
        );
    }
}
