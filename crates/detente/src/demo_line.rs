//! The line part of `detente demo`: two nodes pin each other's keys,
//! register and accredit members, negotiate a conflict on the military
//! channel, exchange a FLASH on the direct line, expel a liaison officer and
//! close a mission while the direct line stays up.

use crate::demo::Client;
use anyhow::{Result, anyhow, bail};
use api::wire::line::{AccreditBody, AckBody, MemberBody, MessagesQuery, PeerBody, QuotaBody};
use liaison::{Ack, AckVerdict, Body, MemberSigner, Message, Precedence, Sphere};
use node::{Clock, Ids};
use reqwest::Method as M;
use serde_json::{Value, json};
use std::collections::HashMap;
use uuid::Uuid;

pub const ADMIN: (&str, &str) = ("line-admin", "detente.line.admin");
pub const OFFICER: (&str, &str) = ("duty-officer", "detente.line");

pub struct Person {
    pub name: &'static str,
    pub signer: MemberSigner,
    /// The key file's content (`detente member keygen` writes the same).
    pub seed_hex: String,
}

pub struct LineDemo {
    pub a: Client,
    pub f: Client,
    pub a_name: String,
    pub f_name: String,
    /// The nodes' node-to-node (TLS) URLs.
    a_peer_url: String,
    f_peer_url: String,
    seqs: HashMap<liaison::MemberKey, u64>,
}

fn now_ms() -> u64 {
    (node::SystemClock.now().unix_micros() / 1000).max(0) as u64
}

pub fn person(name: &'static str) -> Result<Person> {
    let seed = node::RandomIds.seed().map_err(|e| anyhow!(e))?;
    Ok(Person {
        name,
        signer: MemberSigner::from_seed(&seed),
        seed_hex: seed.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

impl LineDemo {
    pub fn new(a: Client, f: Client, a_name: &str, f_name: &str, peer_urls: (&str, &str)) -> Self {
        LineDemo {
            a,
            f,
            a_name: a_name.into(),
            f_name: f_name.into(),
            a_peer_url: peer_urls.0.into(),
            f_peer_url: peer_urls.1.into(),
            seqs: HashMap::new(),
        }
    }

    pub fn requests(&self) -> usize {
        self.a.requests + self.f.requests
    }

    fn node(&mut self, alliance: bool) -> &mut Client {
        if alliance { &mut self.a } else { &mut self.f }
    }

    pub async fn peer(&mut self) -> Result<(String, String)> {
        let ka = self.a.node.log_key().await.map_err(|e| anyhow!(e))?;
        let kf = self.f.node.log_key().await.map_err(|e| anyhow!(e))?;
        self.a
            .as_who(ADMIN)?
            .add_peer(&PeerBody {
                name: self.f_name.clone(),
                url: self.f_peer_url.clone(),
                key: kf.clone(),
            })
            .await
            .map_err(|e| anyhow!(e))?;
        self.f
            .as_who(ADMIN)?
            .add_peer(&PeerBody {
                name: self.a_name.clone(),
                url: self.a_peer_url.clone(),
                key: ka.clone(),
            })
            .await
            .map_err(|e| anyhow!(e))?;
        Ok((ka, kf))
    }

    pub async fn register(
        &mut self,
        alliance: bool,
        p: &Person,
        role: &str,
        spheres: &[&str],
    ) -> Result<()> {
        self.node(alliance)
            .as_who(ADMIN)?
            .register_member(&MemberBody {
                key: p.signer.key().to_hex(),
                name: p.name.into(),
                role: role.into(),
                spheres: spheres.iter().map(|s| s.to_string()).collect(),
            })
            .await
            .map_err(|e| anyhow!(e))?;
        Ok(())
    }

    /// The host (`alliance` or not) accredits a guest's member; returns the id.
    pub async fn accredit(
        &mut self,
        host_is_alliance: bool,
        p: &Person,
        role: &str,
        spheres: &[&str],
    ) -> Result<String> {
        let guest = if host_is_alliance {
            self.f_name.clone()
        } else {
            self.a_name.clone()
        };
        let until = now_ms() + 90 * 86_400_000;
        let v = self
            .node(host_is_alliance)
            .as_who(ADMIN)?
            .accredit(
                &guest,
                &AccreditBody {
                    member: p.signer.key().to_hex(),
                    name: p.name.into(),
                    role: role.into(),
                    spheres: spheres.iter().map(|s| s.to_string()).collect(),
                    valid_from_ms: None,
                    valid_until_ms: until,
                },
            )
            .await
            .map_err(|e| anyhow!(e))?;
        Ok(v["id"].as_str().unwrap_or_default().to_string())
    }

    pub async fn quota(&mut self, host_is_alliance: bool, quota: u32) -> Result<()> {
        let guest = if host_is_alliance {
            self.f_name.clone()
        } else {
            self.a_name.clone()
        };
        self.node(host_is_alliance)
            .as_who(ADMIN)?
            .set_quota(
                &guest,
                &QuotaBody {
                    quota,
                    ending: Vec::new(),
                },
            )
            .await
            .map_err(|e| anyhow!(e))?;
        Ok(())
    }

    fn signed(
        &mut self,
        from_alliance: bool,
        p: &Person,
        sphere: Sphere,
        precedence: Precedence,
        body: Body,
    ) -> (Uuid, Value) {
        let seq = self.seqs.entry(p.signer.key()).or_default();
        *seq += 1;
        let (from, to) = if from_alliance {
            (self.a_name.clone(), self.f_name.clone())
        } else {
            (self.f_name.clone(), self.a_name.clone())
        };
        let id = node::RandomIds.uuid_v4();
        let m = p.signer.sign_message(Message {
            id,
            from,
            to,
            sphere,
            precedence,
            sender: p.signer.key(),
            seq: *seq,
            created_ms: now_ms(),
            body,
            group: None,
        });
        (id, json!(api::wire::line::SendBody::signed(&m)))
    }

    /// Sends and expects `want`; returns the message id and the answer.
    pub async fn send(
        &mut self,
        from_alliance: bool,
        p: &Person,
        sphere: Sphere,
        precedence: Precedence,
        body: Body,
        want: u16,
    ) -> Result<(Uuid, Value)> {
        let (id, m) = self.signed(from_alliance, p, sphere, precedence, body);
        let (status, v) = self
            .node(from_alliance)
            .call(M::POST, "/line/v1/messages", OFFICER, Some(m))
            .await?;
        if status != want {
            bail!(
                "sending as {} answered {status}, expected {want}: {v}",
                p.name
            );
        }
        if status >= 300 {
            // Refused: the sequence number was not used.
            if let Some(s) = self.seqs.get_mut(&p.signer.key()) {
                *s -= 1;
            }
        }
        Ok((id, v))
    }

    /// Waits until the sender's node shows the message receipted (or
    /// refused) by the peer; returns its view there.
    pub async fn delivered(&mut self, from_alliance: bool, id: Uuid) -> Result<Value> {
        let id = id.to_string();
        for _ in 0..200 {
            let v = self
                .node(from_alliance)
                .as_who(OFFICER)?
                .messages(&MessagesQuery {
                    direction: Some("out".into()),
                    ..MessagesQuery::default()
                })
                .await
                .map_err(|e| anyhow!(e))?;
            if let Some(m) = v["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["message"]["id"] == id.as_str())
                && m["delivery"]["state"] != "queued"
            {
                return Ok(m.clone());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        bail!("message {id} was not receipted within 10 s")
    }

    pub async fn ack(&mut self, at_alliance: bool, p: &Person, id: Uuid, text: &str) -> Result<()> {
        let (from, to) = if at_alliance {
            (self.a_name.clone(), self.f_name.clone())
        } else {
            (self.f_name.clone(), self.a_name.clone())
        };
        let a = p.signer.sign_ack(Ack {
            message: id,
            from,
            to,
            by: p.signer.key(),
            verdict: AckVerdict::Accept,
            text: text.into(),
            at_ms: now_ms(),
        });
        self.node(at_alliance)
            .as_who(OFFICER)?
            .ack(&AckBody::signed(&a))
            .await
            .map_err(|e| anyhow!(e))?;
        Ok(())
    }

    /// Waits until the sender's node has the acknowledgement.
    pub async fn acknowledged(&mut self, from_alliance: bool, id: Uuid) -> Result<Value> {
        for _ in 0..200 {
            let m = self.delivered(from_alliance, id).await?;
            if !m["ack"].is_null() {
                return Ok(m);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        bail!("no acknowledgement of {id} within 10 s")
    }

    /// One message of Alliance's `p` to several peers at once: one signed
    /// message per peer, all naming the group; returns their ids, in `to`'s
    /// order.
    pub async fn send_group(
        &mut self,
        p: &Person,
        to: &[String],
        precedence: Precedence,
        text: &str,
    ) -> Result<Vec<Uuid>> {
        let group = liaison::Group {
            id: node::RandomIds.uuid_v4(),
            to: to.to_vec(),
        };
        let created_ms = now_ms();
        let mut ids = Vec::new();
        for peer in to {
            let seq = self.seqs.entry(p.signer.key()).or_default();
            *seq += 1;
            let id = node::RandomIds.uuid_v4();
            let m = p.signer.sign_message(Message {
                id,
                from: self.a_name.clone(),
                to: peer.clone(),
                sphere: Sphere::DirectLine,
                precedence,
                sender: p.signer.key(),
                seq: *seq,
                created_ms,
                body: Body::Text { text: text.into() },
                group: Some(group.clone()),
            });
            self.a
                .expect(
                    201,
                    M::POST,
                    "/line/v1/messages",
                    OFFICER,
                    Some(json!(api::wire::line::SendBody::signed(&m))),
                )
                .await?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Waits until the guest's node sees `check` hold on its missions list.
    pub async fn guest_sees(
        &mut self,
        guest_is_alliance: bool,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        for _ in 0..200 {
            let v = self
                .node(guest_is_alliance)
                .as_who(OFFICER)?
                .missions()
                .await
                .map_err(|e| anyhow!(e))?;
            if check(&v) {
                return Ok(v);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        bail!("the guest's node never saw the change")
    }
}

/// `p`, a member of `party` at node `c`, acknowledges `origin`'s message.
pub async fn ack_at(
    c: &mut Client,
    p: &Person,
    party: &str,
    origin: &str,
    id: Uuid,
    text: &str,
) -> Result<()> {
    let a = p.signer.sign_ack(Ack {
        message: id,
        from: party.into(),
        to: origin.into(),
        by: p.signer.key(),
        verdict: AckVerdict::Accept,
        text: text.into(),
        at_ms: now_ms(),
    });
    c.as_who(OFFICER)?
        .ack(&AckBody::signed(&a))
        .await
        .map_err(|e| anyhow!(e))?;
    Ok(())
}

pub fn deconfliction(a: &str, b: &str, proposal: &str) -> Result<Body> {
    Ok(Body::DeconflictionRequest {
        intents: [Uuid::parse_str(a)?, Uuid::parse_str(b)?],
        proposal: proposal.into(),
    })
}
