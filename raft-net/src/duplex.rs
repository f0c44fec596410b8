//! One stream, a reader task and a writer task, and no lock: a pump task owns the stream and
//! moves bytes between it and two bounded channels, one per direction.
//!
//! A TLS stream cannot be split like a socket: reads decrypt and writes encrypt on the one
//! session. Instead of sharing it behind a lock (`tokio::io::split`), [`split`] hands it to a
//! pump task, the only code that touches it, and gives the caller two channel ends that
//! implement `AsyncRead` and `AsyncWrite`. The pump makes progress in both directions within
//! one poll (it writes what the writer queued, flushes, and reads), so a peer that writes
//! while it waits for us to read never stalls our writes, and the other way round.
//!
//! Bounds (I2, docs/architecture.md): [`INBOUND_CHUNKS`] chunks of at most [`READ_CHUNK`]
//! bytes read ahead of the reader (when they are queued the pump stops reading: the peer is
//! slowed by flow control, as with a split socket), and [`OUTBOUND_CHUNKS`] write calls queued
//! ahead of the stream, plus one held by the write half. They are fixed, as a socket's own
//! buffers are: they stand between the connection's tasks and the stream, and the settings
//! that bound a connection (frames in flight, write batches, timeouts) apply unchanged. A write is done once the pump has
//! it; `flush` and `shutdown` return once it has everything before them (the pump flushes the
//! stream whenever its queue runs dry, and shuts it down when asked).
//!
//! Ending: once the write half is dropped (after a `shutdown` or not), the pump writes what is
//! queued, within `write_timeout`; once the read half is dropped or the stream ends or fails,
//! it stops reading. When both are done it drops the stream. A write that fails ends the
//! writing: the write half's next call fails (`BrokenPipe`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use flume::r#async::{RecvStream, SendFut};
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Sleep;

use crate::conn::{AsyncStream, BoxRead, BoxWrite};

/// Chunks read from the stream that may wait for the reader.
pub(crate) const INBOUND_CHUNKS: usize = 4;

/// Write calls that may wait for the stream.
pub(crate) const OUTBOUND_CHUNKS: usize = 2;

/// Most bytes the pump reads from the stream at once.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// What the write half sends the pump.
enum Piece {
    Data(Bytes),
    Shutdown,
}

/// Hands `stream` to a pump task on the current runtime and returns its read and write halves;
/// see the module docs. `write_timeout` bounds the writing of what is still queued once the
/// write half is gone.
pub(crate) fn split<S>(stream: S, write_timeout: Duration) -> (BoxRead, BoxWrite)
where
    S: AsyncStream + 'static,
{
    let (in_tx, in_rx) = flume::bounded(INBOUND_CHUNKS);
    let (out_tx, out_rx) = flume::bounded(OUTBOUND_CHUNKS);
    let (read_half_alive, read_half_gone) = oneshot::channel();
    let pump = Pump {
        stream,
        inbound: Some(in_tx),
        sending: None,
        read_half_gone,
        reading: true,
        read_buf: BytesMut::new(),
        outbound: Some(out_rx.into_stream()),
        current: Bytes::new(),
        unflushed: false,
        shutdown_asked: false,
        writer_gone: false,
        writing: true,
        write_timeout,
        deadline: None,
    };
    tokio::spawn(pump);
    let read = ReadHalf {
        chunks: in_rx.into_stream(),
        current: Bytes::new(),
        _alive: read_half_alive,
    };
    let write = WriteHalf {
        tx: out_tx,
        sending: None,
        shutdown_queued: false,
    };
    (Box::new(read), Box::new(write))
}

/// The task that owns the stream.
struct Pump<S> {
    stream: S,
    /// To the read half; `None` once reading has ended (dropping it is the reader's EOF).
    inbound: Option<flume::Sender<io::Result<Bytes>>>,
    /// A chunk (or the error that ended reading) waiting for room in `inbound`.
    sending: Option<SendFut<'static, io::Result<Bytes>>>,
    /// Resolves once the read half is dropped.
    read_half_gone: oneshot::Receiver<()>,
    reading: bool,
    /// Where reads land; each read's bytes are split off as the chunk for the read half.
    read_buf: BytesMut,
    /// From the write half; `None` once writing has ended.
    outbound: Option<RecvStream<'static, Piece>>,
    /// What is left of the chunk being written.
    current: Bytes,
    /// Bytes were written since the last flush.
    unflushed: bool,
    shutdown_asked: bool,
    writer_gone: bool,
    writing: bool,
    write_timeout: Duration,
    /// Armed once the write half is gone: what is queued must be written by then.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S: AsyncStream> Pump<S> {
    /// Moves outbound bytes as far as the stream takes them. True if anything happened.
    fn poll_write_side(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            if self.current.is_empty() && !self.shutdown_asked && !self.writer_gone {
                let Some(outbound) = self.outbound.as_mut() else {
                    break;
                };
                match Pin::new(outbound).poll_next(cx) {
                    Poll::Ready(Some(Piece::Data(bytes))) => self.current = bytes,
                    Poll::Ready(Some(Piece::Shutdown)) => self.shutdown_asked = true,
                    Poll::Ready(None) => self.writer_gone = true,
                    Poll::Pending => {}
                }
                if self.shutdown_asked || self.writer_gone || !self.current.is_empty() {
                    progress = true;
                }
            }
            if !self.current.is_empty() {
                match Pin::new(&mut self.stream).poll_write(cx, &self.current) {
                    Poll::Ready(Ok(0)) => return self.end_writing(),
                    Poll::Ready(Ok(n)) => {
                        self.current.advance(n);
                        self.unflushed = true;
                        progress = true;
                        continue;
                    }
                    Poll::Ready(Err(_)) => return self.end_writing(),
                    Poll::Pending => return progress,
                }
            }
            // Nothing left to write right now.
            if self.unflushed {
                match Pin::new(&mut self.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.unflushed = false;
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => return self.end_writing(),
                    Poll::Pending => return progress,
                }
            }
            if self.shutdown_asked {
                return match Pin::new(&mut self.stream).poll_shutdown(cx) {
                    Poll::Ready(_) => self.end_writing(),
                    Poll::Pending => progress,
                };
            }
            if self.writer_gone {
                return self.end_writing();
            }
            return progress;
        }
        progress
    }

    /// Writing is over (done, failed, or given up): the write half's next call fails.
    fn end_writing(&mut self) -> bool {
        self.writing = false;
        self.outbound = None;
        self.current = Bytes::new();
        true
    }

    /// Moves inbound bytes to the read half while it has room. True if anything happened.
    fn poll_read_side(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        if Pin::new(&mut self.read_half_gone).poll(cx).is_ready() {
            self.end_reading();
            return true;
        }
        loop {
            if let Some(sending) = self.sending.as_mut() {
                match Pin::new(sending).poll(cx) {
                    Poll::Ready(Ok(())) => {
                        self.sending = None;
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => {
                        self.end_reading();
                        return true;
                    }
                    Poll::Pending => return progress,
                }
            }
            let Some(inbound) = self.inbound.as_ref() else {
                // The error that ended reading has been delivered.
                self.reading = false;
                return true;
            };
            // Zeroed once and refilled only by what reads take: no allocation while idle.
            self.read_buf.resize(READ_CHUNK, 0);
            let mut read = ReadBuf::new(&mut self.read_buf);
            let chunk = match Pin::new(&mut self.stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    self.end_reading(); // End of stream: dropping the sender tells the reader.
                    return true;
                }
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    Ok(self.read_buf.split_to(n).freeze())
                }
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => return progress,
            };
            progress = true;
            let failed = chunk.is_err();
            match inbound.try_send(chunk) {
                Ok(()) => {}
                Err(flume::TrySendError::Full(chunk)) => {
                    self.sending = Some(inbound.clone().into_send_async(chunk));
                }
                Err(flume::TrySendError::Disconnected(_)) => {
                    self.end_reading();
                    return true;
                }
            }
            if failed {
                // Delivered (or queued to be): the reader sees the error, then the end.
                self.inbound = None;
                if self.sending.is_none() {
                    self.reading = false;
                    return true;
                }
            }
        }
    }

    fn end_reading(&mut self) {
        self.reading = false;
        self.inbound = None;
        self.sending = None;
    }
}

impl<S: AsyncStream> Future for Pump<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let mut progress = false;
            if this.writing {
                progress |= this.poll_write_side(cx);
            }
            if this.reading {
                progress |= this.poll_read_side(cx);
            }
            if this.writing && (this.writer_gone || this.shutdown_asked) && this.deadline.is_none()
            {
                this.deadline = Some(Box::pin(tokio::time::sleep(this.write_timeout)));
            }
            if let Some(deadline) = this.deadline.as_mut() {
                if this.writing && deadline.as_mut().poll(cx).is_ready() {
                    // The peer does not take what is left: give it up.
                    this.end_writing();
                    progress = true;
                }
            }
            if !this.writing && !this.reading {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

/// The read half: the chunks the pump read, in order; the end of stream once the pump stops
/// reading (after an error, which is returned first).
struct ReadHalf {
    chunks: RecvStream<'static, io::Result<Bytes>>,
    current: Bytes,
    /// Dropped with this half: tells the pump to stop reading.
    _alive: oneshot::Sender<()>,
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.current.is_empty() {
            match ready!(Pin::new(&mut this.chunks).poll_next(cx)) {
                Some(Ok(chunk)) => this.current = chunk,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())), // End of stream.
            }
        }
        let n = this.current.len().min(buf.remaining());
        buf.put_slice(&this.current[..n]);
        this.current.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// The write half: each write call's bytes go to the pump as one chunk.
struct WriteHalf {
    tx: flume::Sender<Piece>,
    /// A piece waiting for room in the queue (the one write call it came from returned).
    sending: Option<SendFut<'static, Piece>>,
    /// The shutdown was queued (a repeated `poll_shutdown` waits for it, once).
    shutdown_queued: bool,
}

impl WriteHalf {
    /// Waits until the piece waiting for room (if any) is queued.
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(sending) = self.sending.as_mut() {
            let sent = ready!(Pin::new(sending).poll(cx));
            self.sending = None;
            if sent.is_err() {
                return Poll::Ready(Err(closed()));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Queues `piece`, holding it if the queue is full. `Err`: the pump stopped writing.
    fn queue(&mut self, cx: &mut Context<'_>, piece: Piece) -> io::Result<()> {
        match self.tx.try_send(piece) {
            Ok(()) => Ok(()),
            Err(flume::TrySendError::Full(piece)) => {
                let mut sending = self.tx.clone().into_send_async(piece);
                match Pin::new(&mut sending).poll(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Err(closed()),
                    Poll::Pending => self.sending = Some(sending),
                }
                Ok(())
            }
            Err(flume::TrySendError::Disconnected(_)) => Err(closed()),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed")
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_sent(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.queue(cx, Piece::Data(Bytes::copy_from_slice(buf)))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_sent(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shutdown_queued {
            ready!(this.poll_sent(cx))?;
            this.queue(cx, Piece::Shutdown)?;
            this.shutdown_queued = true;
        }
        this.poll_sent(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes `n` bytes (a counting pattern) in calls of at most 10,000 bytes.
    async fn write_pattern(w: &mut (impl AsyncWrite + Unpin), n: usize) {
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(10_000) {
            w.write_all(piece).await.unwrap();
        }
        w.flush().await.unwrap();
    }

    /// Reads to the end and checks the counting pattern; returns how many bytes came.
    async fn read_pattern(r: &mut (impl AsyncRead + Unpin)) -> usize {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        got.len()
    }

    /// Both ends write 4 MiB at once over a pipe that holds 64 KiB, each reading only through
    /// its halves: neither write waits for the other side to stop writing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_directions_flow_at_once() {
        const N: usize = 4 << 20;
        let (a, b) = tokio::io::duplex(64 << 10);
        let (mut ar, mut aw) = split(a, Duration::from_secs(10));
        let (mut br, mut bw) = split(b, Duration::from_secs(10));
        let a_writes = tokio::spawn(async move {
            write_pattern(&mut aw, N).await;
            aw.shutdown().await.unwrap();
        });
        let b_writes = tokio::spawn(async move {
            write_pattern(&mut bw, N).await;
            bw.shutdown().await.unwrap();
        });
        let a_reads = tokio::spawn(async move { read_pattern(&mut ar).await });
        let all = async {
            assert_eq!(read_pattern(&mut br).await, N);
            assert_eq!(a_reads.await.unwrap(), N);
            a_writes.await.unwrap();
            b_writes.await.unwrap();
        };
        // A pump that stopped reading while its writes wait would hang both ends.
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("both directions flow");
    }

    /// What was written before the write half was dropped still reaches the peer, without a
    /// shutdown; once both halves are gone the stream is closed.
    #[tokio::test]
    async fn written_bytes_outlive_the_halves() {
        let (a, mut peer) = tokio::io::duplex(1 << 20);
        let (r, mut w) = split(a, Duration::from_secs(10));
        w.write_all(b"hello").await.unwrap();
        drop(w);
        drop(r);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
    }

    /// A peer that never reads: once the write half is gone, what is left is given up after
    /// `write_timeout` and the stream is closed.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_does_not_read_is_given_up_after_the_write_timeout() {
        let (a, mut peer) = tokio::io::duplex(1024);
        let (r, mut w) = split(a, Duration::from_secs(5));
        drop(r);
        // More than the pipe, the queue and the held piece take: the writer waits.
        let big = vec![7u8; 4096];
        let mut queued = 0;
        while tokio::time::timeout(Duration::from_millis(10), w.write_all(&big))
            .await
            .is_ok()
        {
            queued += 1;
            assert!(queued < 100, "the queue is bounded");
        }
        drop(w);
        // Within the timeout the pump still writes what is queued, as the peer makes room.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut first = vec![0u8; 2048];
        peer.read_exact(&mut first).await.unwrap();
        // Past it, the rest is given up and the stream closed: the peer reads to the end.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert!(
            first.len() + rest.len() < queued * big.len(),
            "the rest was given up"
        );
    }

    /// A read error reaches the reader, and then the end of the stream; writes fail once the
    /// pump has stopped writing.
    #[tokio::test]
    async fn errors_reach_the_halves() {
        struct Broken;
        impl AsyncRead for Broken {
            fn poll_read(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                _: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Poll::Ready(Err(io::Error::other("broken")))
            }
        }
        impl AsyncWrite for Broken {
            fn poll_write(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                _: &[u8],
            ) -> Poll<io::Result<usize>> {
                Poll::Ready(Err(io::Error::other("broken")))
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
        let (mut r, mut w) = split(Broken, Duration::from_secs(10));
        let mut buf = [0u8; 16];
        let err = r.read(&mut buf).await.unwrap_err();
        assert_eq!(err.to_string(), "broken");
        assert_eq!(r.read(&mut buf).await.unwrap(), 0);
        // The first write is taken; the pump's failure closes the queue; a later one fails.
        let mut failed = false;
        for _ in 0..10 {
            if w.write_all(b"x").await.is_err() {
                failed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(failed);
    }
}
