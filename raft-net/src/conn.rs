//! Turns a byte stream into frames: a read buffer plus a [`FrameDecoder`].
//!
//! [`FrameReader::read_frame`] is cancel-safe (bytes already read stay in the buffer), so tasks
//! can race it against shutdown in a `select!`.

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::FrameError;
use crate::frame::{FrameDecoder, RawFrame};

/// Anything a connection can run over: a plain TCP stream or a TLS stream.
pub(crate) trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

/// A connection's stream, plain or TLS.
pub(crate) type BoxStream = Box<dyn AsyncStream>;

/// The read half of a connection, plain or TLS, for a task that owns only that half.
pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;

/// The write half of a connection, plain or TLS.
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Splits a plain TCP stream into halves that share nothing (the socket is full duplex).
pub(crate) fn split_tcp(tcp: TcpStream) -> (BoxRead, BoxWrite) {
    let (rd, wr) = tcp.into_split();
    (Box::new(rd), Box::new(wr))
}

/// Splits a TLS stream into halves. Both need the one TLS session (records are decrypted by
/// reads and encrypted by writes on the same state), so the stream is not shared: a pump task
/// owns it and the halves are the ends of its two bounded channels (`duplex.rs`), with no
/// lock anywhere. `write_timeout` bounds the writing of what is queued once the write half is
/// gone. Only TLS connections pay for the task and the copies: plain TCP uses [`split_tcp`].
pub(crate) fn split_stream<S>(stream: S, write_timeout: Duration) -> (BoxRead, BoxWrite)
where
    S: AsyncStream + 'static,
{
    crate::duplex::split(stream, write_timeout)
}

/// Bytes requested from the socket per read while no frame length is known.
const READ_CHUNK: usize = 16 * 1024;

/// Why reading a frame failed.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// Socket error.
    Io(io::Error),
    /// The peer sent an unacceptable frame (or stopped mid-frame).
    Frame(FrameError),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "i/o error: {e}"),
            ConnError::Frame(e) => write!(f, "{e}"),
        }
    }
}

/// Read side of a connection.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl FrameReader {
    pub(crate) fn new(max_frame_size: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(READ_CHUNK.min(max_frame_size + 4)),
            decoder: FrameDecoder::new(max_frame_size),
        }
    }

    /// Raises the frame limit once the peer is authenticated; buffered bytes are kept.
    pub(crate) fn set_max_frame_size(&mut self, max_frame_size: usize) {
        self.decoder = FrameDecoder::new(max_frame_size);
    }

    /// The next frame; `Ok(None)` on a clean end of stream at a frame boundary.
    pub(crate) async fn read_frame<S: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut S,
    ) -> Result<Option<RawFrame>, ConnError> {
        loop {
            match self.read_step(stream).await? {
                Step::Frame(frame) | Step::ReadFrame(frame) => return Ok(Some(frame)),
                Step::Eof => return Ok(None),
                Step::Read => {}
            }
        }
    }

    /// One step of [`FrameReader::read_frame`]: the next frame if the buffer holds a whole
    /// one, otherwise one read from the stream (and the frame it completed, if it did). A
    /// caller that must know when a frame began
    /// (the RPC server's frame timeout) drives this itself and looks at
    /// [`FrameReader::buffered`] after each step. Cancel-safe.
    pub(crate) async fn read_step<S: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut S,
    ) -> Result<Step, ConnError> {
        if let Some(frame) = self
            .decoder
            .decode(&mut self.buf)
            .map_err(ConnError::Frame)?
        {
            return Ok(Step::Frame(frame));
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        let n = stream
            .read_buf(&mut self.buf)
            .await
            .map_err(ConnError::Io)?;
        if n == 0 {
            self.decoder.finish(&self.buf).map_err(ConnError::Frame)?;
            return Ok(Step::Eof);
        }
        match self
            .decoder
            .decode(&mut self.buf)
            .map_err(ConnError::Frame)?
        {
            Some(frame) => Ok(Step::ReadFrame(frame)),
            None => Ok(Step::Read),
        }
    }

    /// Bytes read and not yet taken as frames: nonzero while a frame is under way.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The bytes read and not yet taken as frames.
    pub(crate) fn peek(&self) -> &[u8] {
        &self.buf
    }
}

/// What one [`FrameReader::read_step`] did.
#[derive(Debug)]
pub(crate) enum Step {
    /// A whole frame that was already in the buffer (no read).
    Frame(RawFrame),
    /// Bytes were read (at least one) and completed this frame.
    ReadFrame(RawFrame),
    /// Bytes were read (at least one); no whole frame yet.
    Read,
    /// Clean end of stream at a frame boundary.
    Eof,
}

/// Lets every task that is ready right now run before a writer takes its batch, when its
/// queue holds only the item it just took.
///
/// tokio runs a task woken by the running task next (its "LIFO slot"), so a writer woken by
/// the first of many ready producers would otherwise write that one frame alone, and the
/// next, and so on: one syscall per frame under load. Yielding once puts the writer behind
/// the producers already runnable; their frames then go out in one write. The yield costs one
/// client a little latency and buys many clients a large share of their throughput.
pub(crate) async fn gather<T>(queue: &flume::Receiver<T>) {
    if queue.is_empty() {
        crate::sched::yield_to_runnable().await;
    }
}
