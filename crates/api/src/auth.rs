//! Bearer-JWT authentication (F3548 `Authority` security scheme, RFC 6750).
//!
//! Tokens are verified against configured public keys (a PEM file or a JWKS
//! file; RS256 at least, also RS384/512, PS*, ES256/384 and EdDSA), must carry
//! the configured audience, an unexpired `exp`, a `sub` (the manager of what
//! the client writes) and a space-separated `scope`. Missing or invalid
//! tokens are 401; a valid token without a scope the endpoint accepts is 403.
//!
//! `insecure_dev` skips the signature check (claims are still required). It
//! exists for local experiments only, is never the default, and is logged
//! loudly at start and on every request it lets through.

use crate::error::ApiError;
use axum::http::HeaderMap;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use node::{Caller, Scope};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Clone, Debug)]
pub enum KeySource {
    Pem(PathBuf),
    Jwks(PathBuf),
}

#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub keys: Vec<KeySource>,
    pub audience: String,
    /// Accept tokens without checking their signature. Demo use only.
    pub insecure_dev: bool,
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

pub struct Authenticator {
    keys: Vec<Key>,
    audience: String,
    insecure_dev: bool,
    /// Tokens already verified, with their `exp`: a client reuses its token
    /// for up to an hour, and an RSA verification costs far more than the
    /// request it guards. Bounded; emptied when full.
    verified: Mutex<HashMap<String, (Caller, u64)>>,
}

/// Most verified tokens remembered at once.
const VERIFIED_CACHE: usize = 4096;

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    exp: u64,
}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC_ALGS: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];

fn pem_key(bytes: &[u8]) -> Option<(DecodingKey, Vec<Algorithm>)> {
    if let Ok(k) = DecodingKey::from_rsa_pem(bytes) {
        return Some((k, RSA_ALGS.to_vec()));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(bytes) {
        return Some((k, EC_ALGS.to_vec()));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(bytes) {
        return Some((k, vec![Algorithm::EdDSA]));
    }
    None
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let mut keys = Vec::new();
        for source in &config.keys {
            match source {
                KeySource::Pem(p) => {
                    let bytes = std::fs::read(p)
                        .map_err(|e| format!("reading JWT public key {}: {e}", p.display()))?;
                    let (key, algorithms) = pem_key(&bytes).ok_or_else(|| {
                        format!(
                            "{} is not an RSA, EC or Ed25519 public key in PEM",
                            p.display()
                        )
                    })?;
                    keys.push(Key {
                        kid: None,
                        key,
                        algorithms,
                    });
                }
                KeySource::Jwks(p) => {
                    let text = std::fs::read_to_string(p)
                        .map_err(|e| format!("reading JWKS {}: {e}", p.display()))?;
                    let set: JwkSet = serde_json::from_str(&text)
                        .map_err(|e| format!("{} is not a JWKS: {e}", p.display()))?;
                    for jwk in &set.keys {
                        let algorithms = match &jwk.algorithm {
                            AlgorithmParameters::RSA(_) => RSA_ALGS.to_vec(),
                            AlgorithmParameters::EllipticCurve(_) => EC_ALGS.to_vec(),
                            AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                            _ => continue, // shared secrets have no place here
                        };
                        let key = DecodingKey::from_jwk(jwk)
                            .map_err(|e| format!("a key of {} is unusable: {e}", p.display()))?;
                        keys.push(Key {
                            kid: jwk.common.key_id.clone(),
                            key,
                            algorithms,
                        });
                    }
                }
            }
        }
        if config.audience.is_empty() {
            return Err("no JWT audience configured: give --jwt-audience".into());
        }
        if config.insecure_dev {
            tracing::warn!(
                "INSECURE DEV AUTH: bearer token signatures are NOT verified. Never run a real node like this."
            );
        }
        Ok(Authenticator {
            keys,
            audience: config.audience.clone(),
            insecure_dev: config.insecure_dev,
            verified: Mutex::new(HashMap::new()),
        })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "aud", "sub"]);
        v.leeway = 30;
        v
    }

    fn verify(&self, token: &str) -> Result<Claims, String> {
        if self.insecure_dev {
            let data = jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
                .map_err(|e| format!("unreadable token: {e}"))?;
            tracing::warn!(sub = %data.claims.sub, "INSECURE DEV AUTH: accepted a token without checking its signature");
            return Ok(data.claims);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("unreadable token header: {e}"))?;
        let mut last = format!("no configured key accepts algorithm {:?}", header.alg);
        for k in &self.keys {
            if !k.algorithms.contains(&header.alg) {
                continue;
            }
            if let (Some(want), Some(have)) = (&header.kid, &k.kid)
                && want != have
            {
                continue;
            }
            match jsonwebtoken::decode::<Claims>(token, &k.key, &self.validation(header.alg)) {
                Ok(d) => return Ok(d.claims),
                Err(e) => last = format!("token rejected: {e}"),
            }
        }
        Err(last)
    }

    /// The caller a token proves, verifying it unless it was verified before
    /// and has not expired since.
    fn caller(&self, token: &str) -> Result<Caller, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        if !self.insecure_dev {
            let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((caller, exp)) = cache.get(token)
                && *exp > now
            {
                return Ok(caller.clone());
            }
        }
        let claims = self.verify(token).map_err(ApiError::Unauthenticated)?;
        if claims.sub.is_empty() {
            return Err(ApiError::Unauthenticated("the token's sub is empty".into()));
        }
        let scopes: Vec<Scope> = claims
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .filter_map(Scope::parse)
            .collect();
        let caller = Caller {
            sub: claims.sub,
            scopes,
        };
        if !self.insecure_dev {
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
            cache.insert(token.to_string(), (caller.clone(), claims.exp));
        }
        Ok(caller)
    }

    /// Authenticates the request and checks that it holds one of `any_of`.
    pub fn require(&self, headers: &HeaderMap, any_of: &[Scope]) -> Result<Caller, ApiError> {
        let caller = self.authenticate(headers)?;
        if !any_of.iter().any(|s| caller.has(*s)) {
            let wanted: Vec<&str> = any_of.iter().map(|s| s.as_str()).collect();
            return Err(ApiError::Forbidden(format!(
                "this endpoint requires one of the scopes {}",
                wanted.join(", ")
            )));
        }
        Ok(caller)
    }

    /// The caller named by the request's bearer token; scopes unchecked.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "a bearer access token is required in the Authorization header".into(),
                )
            })?;
        let value = value.to_str().map_err(|_| {
            ApiError::Unauthenticated("the Authorization header is not text".into())
        })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "the Authorization header must be 'Bearer <token>'".into(),
                )
            })?
            .trim();
        self.caller(token)
    }
}
