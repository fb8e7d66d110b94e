//! The line of contact: operations of this party that touch a constraint
//! designated as the line of contact are notified to every peer by the node
//! itself (a message on the direct line, signed with the node's own member
//! key, naming the exact extents), and cannot be activated until each peer
//! has acknowledged the notice of those extents with acceptance.

use crate::entries::extents_sha256;
use crate::share::is_peer_copy;
use airspace::{AirspaceState, Event, PreparedVolume};
use liaison::{Body, LineState, MemberSigner, Message, Millis, Precedence, Signed, Sphere};
use uuid::Uuid;

/// The first designated line-of-contact constraint `extents` touch.
fn touched(line: &LineState, air: &AirspaceState, extents: &[PreparedVolume]) -> Option<Uuid> {
    line.contact_constraints().copied().find(|c| {
        air.constraint(c).is_some_and(|k| {
            k.extents
                .iter()
                .any(|a| extents.iter().any(|b| a.intersects(b)))
        })
    })
}

/// The notices one committed airspace change calls for, signed by the node
/// member, with consecutive sequence numbers (commit them in order).
pub fn notices(
    line: &LineState,
    air: &AirspaceState,
    e: &Event,
    member: &MemberSigner,
    now: Millis,
) -> Vec<Signed<Message>> {
    let Event::IntentUpserted(i) = e else {
        return vec![];
    };
    if is_peer_copy(&i.manager) {
        return vec![];
    }
    let Some(constraint) = touched(line, air, &i.extents) else {
        return vec![];
    };
    let hash = extents_sha256(&i.extents);
    let mut seq = line.sender_seq(&member.key());
    let mut out = Vec::new();
    for peer in line.peers() {
        if line
            .operation_notices(&peer.name, &i.id, &hash)
            .next()
            .is_some()
        {
            continue;
        }
        seq += 1;
        // One notice per (operation, extents, peer): its id says so.
        let mut id_src = b"detente operation notice v1\n".to_vec();
        id_src.extend_from_slice(i.id.as_bytes());
        id_src.extend_from_slice(&hash);
        id_src.extend_from_slice(peer.name.as_bytes());
        let d = tlog::hash::sha256(&id_src);
        let id =
            uuid::Builder::from_random_bytes(d[..16].try_into().unwrap_or([0; 16])).into_uuid();
        out.push(member.sign_message(Message {
            id,
            from: line.me().to_string(),
            to: peer.name.clone(),
            sphere: Sphere::DirectLine,
            precedence: Precedence::Immediate,
            sender: member.key(),
            seq,
            created_ms: now,
            body: Body::OperationNotification {
                intent: i.id,
                extents_sha256: Some(hash),
                text: format!(
                    "operation {} (version {}, {}, manager {}) touches the line-of-contact constraint {constraint}; \
                     it will not be activated before you acknowledge this notice",
                    i.id,
                    i.version,
                    i.state.as_str(),
                    i.manager
                ),
            },
            group: None,
        }));
    }
    out
}

/// Why activating operation `id` with these extents must wait, if it must:
/// it touches the line of contact and a peer has not accepted the notice of
/// exactly these extents.
pub fn activation_hold(
    line: &LineState,
    air: &AirspaceState,
    id: &Uuid,
    extents: &[PreparedVolume],
) -> Option<String> {
    let constraint = touched(line, air, extents)?;
    let hash = extents_sha256(extents);
    for peer in line.peers() {
        let mut notices = line.operation_notices(&peer.name, id, &hash).peekable();
        if notices.peek().is_none() {
            return Some(format!(
                "operation {id} touches the line-of-contact constraint {constraint}: {} has not been notified of these extents yet (plan it as Accepted first; the node notifies the peer)",
                peer.name
            ));
        }
        if !notices.any(|(_, accepted)| accepted) {
            return Some(format!(
                "operation {id} touches the line-of-contact constraint {constraint}: {} has not acknowledged the notice of these extents with acceptance",
                peer.name
            ));
        }
    }
    None
}
