//! The line's JSON: the bodies `/line/v1/*` and `/peer/v1/records` take
//! and the messages and acknowledgements as their members signed them,
//! with their conversions to the domain (errors name the field). The
//! server (`api::line`) and the typed client (`client`) share these.

use crate::error::ApiError;
use liaison::{Ack, AckVerdict, MemberKey, Message, Precedence, Sphere, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub(crate) fn sphere(s: &str, field: &str) -> Result<Sphere, ApiError> {
    Sphere::parse(s).ok_or_else(|| ApiError::bad(field, format!("one of {}", Sphere::expected())))
}

pub(crate) fn member_key(s: &str, field: &str) -> Result<MemberKey, ApiError> {
    MemberKey::parse(s).map_err(|m| ApiError::bad(field, m))
}

pub(crate) fn uuid(s: &str, field: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::bad(field, "not a UUID"))
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerBody {
    pub name: String,
    pub url: String,
    /// The peer's log verifier key (`detente key` on the peer).
    pub key: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AreaBody {
    /// Polygons of [lat, lng] vertices; empty shares nothing.
    pub polygons: Vec<Vec<[f64; 2]>>,
}

/// A public statement to publish.
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatementBody {
    /// Its id (UUID), for an idempotent retry; default a new one.
    #[serde(default)]
    pub id: Option<String>,
    /// BCP 47 language tag (en, ru, fr-BE).
    pub language: String,
    pub text: String,
    /// The entries it answers (earlier statements, its own or another
    /// party's), by log origin, index and leaf hash.
    #[serde(default)]
    pub answers: Vec<StatementRefBody>,
}

/// An entry of a log: origin, index and its RFC 9162 leaf hash (base64).
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatementRefBody {
    pub origin: String,
    pub index: u64,
    pub leaf_hash: String,
}

/// A line of contact as a polyline: the node buffers it on the ellipsoid
/// into a constraint of its own and designates it.
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactLineBody {
    /// The peer with whom the line is agreed: the line is proposed to it
    /// and binds once it proposes the same. Absent: this party's own line,
    /// binding its own planners at once.
    #[serde(default)]
    pub peer: Option<String>,
    /// The line's points as [latitude, longitude], in order (none, with
    /// `peer`: this party withdraws from the line agreed).
    pub line: Vec<[f64; 2]>,
    /// The buffer each side of the line, metres (on the WGS-84 ellipsoid).
    pub buffer_m: f64,
    /// The constraint's id (UUID) of this party's own line: given again, the
    /// line is replaced. Not with `peer`.
    #[serde(default)]
    pub id: Option<String>,
    /// Altitude band, metres above the WGS-84 ellipsoid (default 0 to 20,000).
    #[serde(default)]
    pub altitude_lower_m: Option<f64>,
    #[serde(default)]
    pub altitude_upper_m: Option<f64>,
    /// From when (RFC 3339; default now) until when (RFC 3339; required
    /// unless the line is empty, which withdraws from the line agreed with
    /// `peer`).
    #[serde(default)]
    pub time_start: Option<String>,
    #[serde(default)]
    pub time_end: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    pub key: String,
    pub name: String,
    pub role: String,
    pub spheres: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaBody {
    pub quota: u32,
    #[serde(default)]
    pub ending: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccreditBody {
    pub member: String,
    pub name: String,
    pub role: String,
    pub spheres: Vec<String>,
    pub valid_from_ms: Option<u64>,
    pub valid_until_ms: u64,
}

/// A member's new key; name, role and spheres default to the old key's.
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceMemberBody {
    pub key: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub spheres: Option<Vec<String>>,
}

/// A member key declared compromised from a time (RFC 3339; default now).
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompromisedBody {
    pub reason: String,
    #[serde(default)]
    pub from: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: String,
    pub effective_ms: Option<u64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    pub state: String,
    pub effective_ms: Option<u64>,
    #[serde(default)]
    pub reason: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadlinesBody {
    pub flash_s: u64,
    pub immediate_s: u64,
    pub priority_s: u64,
    pub routine_s: u64,
    pub effective_ms: Option<u64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    pub message: MessageWire,
    /// The sender member's Ed25519 signature over
    /// `"detente-message/v1\n"` ‖ the message's deterministic CBOR, hex.
    pub signature: String,
}

/// A group's messages — one member's, one per peer, all naming the same
/// group — sent in one request and one commit.
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSendBody {
    pub messages: Vec<SendBody>,
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    pub ack: AckWire,
    pub signature: String,
}

impl SendBody {
    /// The body that sends a member-signed message.
    pub fn signed(m: &liaison::Signed<Message>) -> Self {
        SendBody {
            message: MessageWire::from_domain(&m.value),
            signature: hex(&m.signature),
        }
    }
}

impl AckBody {
    /// The body that sends a member-signed acknowledgement.
    pub fn signed(a: &liaison::Signed<Ack>) -> Self {
        AckBody {
            ack: AckWire::from_domain(&a.value),
            signature: hex(&a.signature),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    pub peer: Option<String>,
    pub direction: Option<String>,
    /// Only messages after this log index (for polling).
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

/// A message as its member signed it, field for field.
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageWire {
    pub id: String,
    pub from: String,
    pub to: String,
    pub sphere: String,
    pub precedence: String,
    pub sender: String,
    pub seq: u64,
    pub created_ms: u64,
    pub body: BodyWire,
    /// Only on a message sent to several peers at once: the group's id and
    /// every addressee (signed with the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupWire>,
}

/// The group of a message sent to several peers at once.
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupWire {
    pub id: String,
    pub to: Vec<String>,
}

impl MessageWire {
    pub fn from_domain(m: &Message) -> Self {
        MessageWire {
            group: m.group.as_ref().map(|g| GroupWire {
                id: g.id.to_string(),
                to: g.to.clone(),
            }),
            id: m.id.to_string(),
            from: m.from.clone(),
            to: m.to.clone(),
            sphere: m.sphere.as_str().into(),
            precedence: m.precedence.as_str().into(),
            sender: m.sender.to_hex(),
            seq: m.seq,
            created_ms: m.created_ms,
            body: match &m.body {
                liaison::Body::Text { text } => BodyWire::Text { text: text.clone() },
                liaison::Body::OperationNotification {
                    intent,
                    extents_sha256,
                    text,
                } => BodyWire::OperationNotification {
                    intent: intent.to_string(),
                    extents_sha256: extents_sha256
                        .map(|h| h.iter().map(|b| format!("{b:02x}")).collect()),
                    text: text.clone(),
                },
                liaison::Body::DeconflictionRequest { intents, proposal } => {
                    BodyWire::DeconflictionRequest {
                        intents: intents.iter().map(|u| u.to_string()).collect(),
                        proposal: proposal.clone(),
                    }
                }
                liaison::Body::Reply {
                    in_reply_to,
                    verdict,
                    text,
                } => BodyWire::Reply {
                    in_reply_to: in_reply_to.to_string(),
                    verdict: verdict.as_str().into(),
                    text: text.clone(),
                },
            },
        }
    }

    pub fn to_domain(&self) -> Result<Message, ApiError> {
        let f = |x: &str| format!("message.{x}");
        let body = match &self.body {
            BodyWire::Text { text } => liaison::Body::Text { text: text.clone() },
            BodyWire::OperationNotification {
                intent,
                extents_sha256,
                text,
            } => liaison::Body::OperationNotification {
                intent: uuid(intent, &f("body.intent"))?,
                extents_sha256: extents_sha256
                    .as_deref()
                    .map(|h| {
                        liaison::from_hex(h)
                            .and_then(|b| <[u8; 32]>::try_from(b).ok())
                            .ok_or_else(|| {
                                ApiError::bad(f("body.extents_sha256"), "64 hex digits or null")
                            })
                    })
                    .transpose()?,
                text: text.clone(),
            },
            BodyWire::DeconflictionRequest { intents, proposal } => {
                let ids = intents
                    .iter()
                    .enumerate()
                    .map(|(i, s)| uuid(s, &f(&format!("body.intents[{i}]"))))
                    .collect::<Result<Vec<_>, _>>()?;
                liaison::Body::DeconflictionRequest {
                    intents: ids.try_into().map_err(|_| {
                        ApiError::bad(f("body.intents"), "exactly two operational intents")
                    })?,
                    proposal: proposal.clone(),
                }
            }
            BodyWire::Reply {
                in_reply_to,
                verdict,
                text,
            } => liaison::Body::Reply {
                in_reply_to: uuid(in_reply_to, &f("body.in_reply_to"))?,
                verdict: Verdict::parse(verdict).ok_or_else(|| {
                    ApiError::bad(f("body.verdict"), format!("one of {}", Verdict::expected()))
                })?,
                text: text.clone(),
            },
        };
        Ok(Message {
            id: uuid(&self.id, &f("id"))?,
            from: self.from.clone(),
            to: self.to.clone(),
            sphere: sphere(&self.sphere, &f("sphere"))?,
            precedence: Precedence::parse(&self.precedence).ok_or_else(|| {
                ApiError::bad(
                    f("precedence"),
                    format!("one of {}", Precedence::expected()),
                )
            })?,
            sender: member_key(&self.sender, &f("sender"))?,
            seq: self.seq,
            created_ms: self.created_ms,
            body,
            group: self
                .group
                .as_ref()
                .map(|g| -> Result<liaison::Group, ApiError> {
                    Ok(liaison::Group {
                        id: uuid(&g.id, &f("group.id"))?,
                        to: g.to.clone(),
                    })
                })
                .transpose()?,
        })
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BodyWire {
    Text {
        text: String,
    },
    OperationNotification {
        intent: String,
        /// Hex SHA-256 of the notified extents' canonical CBOR, or null.
        #[serde(default)]
        extents_sha256: Option<String>,
        #[serde(default)]
        text: String,
    },
    DeconflictionRequest {
        intents: Vec<String>,
        proposal: String,
    },
    Reply {
        in_reply_to: String,
        verdict: String,
        #[serde(default)]
        text: String,
    },
}

#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckWire {
    pub message: String,
    pub from: String,
    pub to: String,
    pub by: String,
    pub verdict: String,
    #[serde(default)]
    pub text: String,
    pub at_ms: u64,
}

impl AckWire {
    pub fn from_domain(a: &Ack) -> Self {
        AckWire {
            message: a.message.to_string(),
            from: a.from.clone(),
            to: a.to.clone(),
            by: a.by.to_hex(),
            verdict: a.verdict.as_str().into(),
            text: a.text.clone(),
            at_ms: a.at_ms,
        }
    }
    pub fn to_domain(&self) -> Result<Ack, ApiError> {
        Ok(Ack {
            message: uuid(&self.message, "ack.message")?,
            from: self.from.clone(),
            to: self.to.clone(),
            by: member_key(&self.by, "ack.by")?,
            verdict: AckVerdict::parse(&self.verdict).ok_or_else(|| {
                ApiError::bad("ack.verdict", format!("one of {}", AckVerdict::expected()))
            })?,
            text: self.text.clone(),
            at_ms: self.at_ms,
        })
    }
}

/// A batch of records from a peer, in sequence order per lane.
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordsBody {
    pub from: String,
    /// Each record's signed entry bytes, base64.
    pub records: Vec<String>,
}

/// The receipts, base64 entry bytes, one per record taken, in order.
#[derive(Deserialize, Serialize, Clone, Debug, utoipa::ToSchema)]
pub struct RecordsReply {
    pub receipts: Vec<String>,
    /// Why the records after the last receipt were not taken.
    #[schema(value_type = Option<Object>)]
    pub stopped: Option<Value>,
}
