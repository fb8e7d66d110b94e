//! What a handler leaves of a request body.
//!
//! A handler that answers before reading the body (a 401, a 403, a 404
//! found from the path alone) leaves the rest of it on the connection.
//! HTTP/1.1 then needs one of two things before the next request can be
//! read: the rest read and dropped, or the connection closed *and the
//! answer saying so*. hyper closes such a connection without saying so
//! when the rest has not arrived yet, and a client that reuses the
//! kept-alive connection a moment later finds it closed under its next
//! request ("remote end closed connection without response"). So every
//! request body goes to the router as [`Tracked`]; what the handler leaves
//! comes back through [`Leftover`] and [`settle`] reads it before the answer
//! goes out, or marks the answer `Connection: close` where reading it would
//! cost too much.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;

/// How much of a body left unread is read and dropped (counting only what
/// is left): past it the connection is closed instead. The same bound as a
/// body that is refused without being read, so a client that sends its whole
/// body before reading the answer — most do — gets its 413 or 403 rather
/// than a broken pipe.
pub const DRAIN_AT_MOST: u64 = crate::extract::REFUSE_UNREAD_ABOVE;

/// How long the rest of a body may take to arrive once its handler has
/// answered; past it the connection is closed instead.
pub const DRAIN_WITHIN: Duration = Duration::from_secs(10);

/// A request body that hands whatever its reader left of it to the
/// [`Leftover`] made with it.
pub struct Tracked {
    inner: Option<Incoming>,
    back: Option<oneshot::Sender<Incoming>>,
}

/// What a [`Tracked`] body's reader left, once the body is dropped.
pub struct Leftover(oneshot::Receiver<Incoming>);

/// `body` wrapped, and the receiver of what its reader leaves.
pub fn track(body: Incoming) -> (Tracked, Leftover) {
    let (tx, rx) = oneshot::channel();
    (
        Tracked {
            inner: Some(body),
            back: Some(tx),
        },
        Leftover(rx),
    )
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        // Read to its end, or broken: nothing is left to give back.
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.inner = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take())
            && !inner.is_end_stream()
        {
            let _ = back.send(inner);
        }
    }
}

/// Makes `answer` safe to send on a kept-alive connection: what the
/// handler left of the request body is read and dropped (within
/// [`DRAIN_AT_MOST`] and [`DRAIN_WITHIN`]); where it cannot be, `answer`
/// says `Connection: close` and the connection ends after it. A request
/// that asked `Expect: 100-continue` is not invited to send a body its
/// handler did not want: its answer closes the connection instead.
pub async fn settle<B>(
    answer: &mut hyper::Response<B>,
    mut left: Leftover,
    expects_continue: bool,
) {
    let rest = match left.0.try_recv() {
        Ok(rest) => rest,
        // Read whole, or nothing to read; or still held (a reader that
        // outlives its answer), in which case hyper settles it alone.
        Err(_) => return,
    };
    let drained = !expects_continue
        && answer.status() != hyper::StatusCode::REQUEST_TIMEOUT
        && rest.size_hint().lower() <= DRAIN_AT_MOST
        && tokio::time::timeout(DRAIN_WITHIN, drain(rest))
            .await
            .unwrap_or(false);
    if !drained {
        answer.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
}

/// Reads `rest` to its end, dropping it; false if it breaks or runs past
/// [`DRAIN_AT_MOST`].
async fn drain(mut rest: Incoming) -> bool {
    use http_body_util::BodyExt;
    let mut read = 0u64;
    while let Some(frame) = rest.frame().await {
        let Ok(frame) = frame else { return false };
        if let Some(data) = frame.data_ref() {
            read += data.len() as u64;
            if read > DRAIN_AT_MOST {
                return false;
            }
        }
    }
    true
}
