//! Each PostgreSQL connection's transaction status, known without asking
//! the server. The same tap as tidewater-postgres's (`src/tap.rs` there),
//! without its TLS half: diesel-async's `AsyncPgConnection` hides its
//! socket, so this crate opens the socket itself, puts the tap on it, and
//! hands the started client to `AsyncPgConnection::try_from`.
//!
//! PostgreSQL frames every message: a type byte, a four-byte big-endian
//! length that counts itself, then the payload (only the very first
//! messages a client sends, the TLS request and the startup message, have
//! no type byte). Each `ReadyForQuery` the server sends (type `Z`) carries
//! the session's transaction status: `I` idle, `T` in a transaction block,
//! `E` in a failed one; and the startup message and each simple query
//! (`Q`) or `Sync` (`S`) the client sends are answered by exactly one
//! `ReadyForQuery`.
//!
//! A [`Tap`] wraps a connection's stream (the socket, or the TLS stream when
//! TLS is on) and follows the framing both ways: it keeps the last status,
//! and counts requests still waiting for their `ReadyForQuery`. A
//! connection comes back clean only when it is idle with nothing in
//! flight; otherwise it is rolled back before its next use. A clean one
//! costs nothing: no extra round trip, no parsing beyond the five header
//! bytes of each message.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::SeqCst};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A session's transaction status, from its last `ReadyForQuery`.
///
/// ```
/// use tidewater_diesel::TransactionStatus;
/// assert!(TransactionStatus::Idle.is_clean());
/// assert!(!TransactionStatus::Failed.is_clean());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    /// Not in a transaction block, and no request waiting for an answer.
    Idle,
    /// In a transaction block.
    InTransaction,
    /// In a failed transaction block: every statement fails until rollback.
    Failed,
    /// Requests are still waiting for the server's answer, or the session
    /// has not started yet: its state will be known when they are answered.
    Busy,
}

impl TransactionStatus {
    /// Whether the next caller can use the session as it is.
    pub fn is_clean(self) -> bool {
        self == Self::Idle
    }
}

/// What the two directions of a [`Tap`] learn, shared with the connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct StatusCell(Arc<Cell>);

#[derive(Debug, Default)]
struct Cell {
    /// The status byte of the last `ReadyForQuery`.
    status: AtomicU8,
    /// Simple queries and syncs sent.
    requested: AtomicU64,
    /// `ReadyForQuery` messages received.
    answered: AtomicU64,
}

impl StatusCell {
    pub(crate) fn get(&self) -> TransactionStatus {
        // Answers first: a request counted as sent after it cannot have
        // been answered before it.
        let answered = self.0.answered.load(SeqCst);
        let status = self.0.status.load(SeqCst);
        if self.0.requested.load(SeqCst) > answered {
            return TransactionStatus::Busy;
        }
        match status {
            b'I' => TransactionStatus::Idle,
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            _ => TransactionStatus::Busy,
        }
    }
}

/// Which way the bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// From the server: counts `ReadyForQuery` and keeps its status.
    FromServer,
    /// To the server: counts simple queries and syncs.
    ToServer,
}

/// Where one direction is in its stream of messages.
#[derive(Debug)]
struct Framing {
    direction: Direction,
    /// Bytes to pass over before messages start (the one-byte answer to a
    /// TLS request).
    skip: usize,
    /// Messages still to come without a type byte (TLS request, startup).
    untyped: usize,
    header: [u8; 5],
    header_len: usize,
    /// Payload bytes of the current message not yet seen.
    payload_left: usize,
    /// The next payload byte is a transaction status.
    status_next: bool,
}

impl Framing {
    fn new(direction: Direction, skip: usize, untyped: usize) -> Self {
        Self {
            direction,
            skip,
            untyped,
            header: [0; 5],
            header_len: 0,
            payload_left: 0,
            status_next: false,
        }
    }

    fn feed(&mut self, mut bytes: &[u8], cell: &Cell) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                if self.status_next {
                    cell.status.store(bytes[0], SeqCst);
                    cell.answered.fetch_add(1, SeqCst);
                    self.status_next = false;
                }
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let size = if self.untyped > 0 { 4 } else { 5 };
                let n = (size - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == size {
                    self.header_len = 0;
                    self.begin_message(size, cell);
                }
            }
        }
    }

    fn begin_message(&mut self, size: usize, cell: &Cell) {
        let length = &self.header[size - 4..size];
        let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
        self.payload_left = length.saturating_sub(4);
        if size == 4 {
            // The last untyped message is the startup message, which the
            // server answers with a ReadyForQuery once the session is up.
            self.untyped -= 1;
            if self.untyped == 0 && self.direction == Direction::ToServer {
                cell.requested.fetch_add(1, SeqCst);
            }
            return;
        }
        match (self.direction, self.header[0]) {
            (Direction::FromServer, b'Z') => self.status_next = self.payload_left > 0,
            (Direction::ToServer, b'Q' | b'S') => {
                cell.requested.fetch_add(1, SeqCst);
            }
            _ => {}
        }
    }
}

/// A stream that watches the messages going through it both ways.
#[derive(Debug)]
pub(crate) struct Tap<S> {
    inner: S,
    /// `None` once TLS runs on top of this stream: the tap on the TLS
    /// stream reads the messages then.
    framing: Option<(Framing, Framing)>,
    cell: StatusCell,
}

impl<S> Tap<S> {
    /// Watches `inner`. `tls_request`: the session starts by asking for TLS
    /// on this stream (one untyped request, a one-byte answer).
    pub(crate) fn new(inner: S, cell: StatusCell, tls_request: bool) -> Self {
        let asks = usize::from(tls_request);
        let reads = Framing::new(Direction::FromServer, asks, 0);
        let writes = Framing::new(Direction::ToServer, 0, 1 + asks);
        Self {
            inner,
            framing: Some((reads, writes)),
            cell,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        if let Some((reads, _)) = &mut this.framing {
            reads.feed(&buf.filled()[before..], &this.cell.0);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        let this = &mut *self;
        if let Some((_, writes)) = &mut this.framing {
            writes.feed(&buf[..written], &this.cell.0);
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: Option<u8>, payload: &[u8]) -> Vec<u8> {
        let mut bytes: Vec<u8> = kind.into_iter().collect();
        bytes.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn feed_in_chunks(framing: &mut Framing, bytes: &[u8], chunk: usize, cell: &StatusCell) {
        for piece in bytes.chunks(chunk) {
            framing.feed(piece, &cell.0);
        }
    }

    #[test]
    fn follows_both_directions_across_any_split() {
        // The client asks for TLS (declined), starts up, sends one simple
        // query; the server answers it and ends in a failed transaction.
        let mut sent = message(None, &80877103u32.to_be_bytes());
        sent.extend(message(None, b"\0\x03\0\0user\0postgres\0\0"));
        sent.extend(message(Some(b'Q'), b"BEGIN; SELECT 1/0\0"));
        let mut answered = vec![b'N'];
        answered.extend(message(Some(b'R'), &[0, 0, 0, 0]));
        answered.extend(message(Some(b'Z'), b"I"));
        answered.extend(message(Some(b'C'), b"BEGIN\0"));
        answered.extend(message(Some(b'D'), &[0, 1, 0, 0, 0, 1, b'Z']));
        answered.extend(message(Some(b'E'), b"SERROR\0\0"));
        for chunk in 1..answered.len() {
            let cell = StatusCell::default();
            let mut writes = Framing::new(Direction::ToServer, 0, 2);
            let mut reads = Framing::new(Direction::FromServer, 1, 0);
            feed_in_chunks(&mut writes, &sent, chunk, &cell);
            feed_in_chunks(&mut reads, &answered, chunk, &cell);
            assert_eq!(
                cell.get(),
                TransactionStatus::Busy,
                "the query is not answered yet (chunks of {chunk})"
            );
            reads.feed(&message(Some(b'Z'), b"E"), &cell.0);
            assert_eq!(cell.get(), TransactionStatus::Failed, "chunks of {chunk}");
        }
    }

    #[test]
    fn busy_until_the_first_ready_for_query() {
        let cell = StatusCell::default();
        let mut reads = Framing::new(Direction::FromServer, 0, 0);
        reads.feed(&message(Some(b'R'), &[0, 0, 0, 0]), &cell.0);
        assert_eq!(cell.get(), TransactionStatus::Busy);
        reads.feed(&message(Some(b'Z'), b"I"), &cell.0);
        assert_eq!(cell.get(), TransactionStatus::Idle);
    }
}
