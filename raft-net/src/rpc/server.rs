//! [`RpcServer`]: accepts connections and answers requests with a user handler.
//!
//! One accept task; per connection a reader task (this file's `Conn::run`, which also runs the
//! handlers of the connection's requests) and a writer task (`write_loop`). See the module docs
//! of [`crate::rpc`] for the picture, the backpressure rule and the bounds on connections.
//!
//! The reader keeps one timer for both of its time limits (a frame under way, an idle
//! connection). It is not moved on every read: when it fires, the reader compares the time
//! with the deadline that applies now and either closes the connection or sets the timer to
//! that deadline. It is moved earlier only when a frame begins while it is set for a later
//! idle deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::{RpcServerConfig, encode_rpc, split_frame};
use crate::conn::{
    BoxRead, BoxWrite, ConnError, FrameReader, Step, gather, split_stream, split_tcp,
};
use crate::error::NetError;
use crate::frame::{FrameKind, decode_exact};
use crate::metrics::bump;
use crate::shutdown::{DoneGuard, Shutdown, done_channel, supervise};
use crate::warn_limit::WarnLimiter;

/// Counters of a running server (atomics, allowed for metric counters only: no shared locks,
/// docs/architecture.md), and the limiter of its warning lines.
#[derive(Debug)]
struct Counters {
    accepted: AtomicU64,
    /// Connections whose reader has ended (`accepted - ended` are open).
    ended: AtomicU64,
    refused: AtomicU64,
    closed_bad_frames: AtomicU64,
    closed_frame_timeout: AtomicU64,
    closed_idle: AtomicU64,
    closed_tls_handshake: AtomicU64,
    requests: AtomicU64,
    warn: WarnLimiter,
}

impl Counters {
    fn new(warn_interval: Duration) -> Self {
        Self {
            accepted: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            closed_bad_frames: AtomicU64::new(0),
            closed_frame_timeout: AtomicU64::new(0),
            closed_idle: AtomicU64::new(0),
            closed_tls_handshake: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            warn: WarnLimiter::new(warn_interval),
        }
    }
}

/// A connection's place among `max_connections`: held by its reader, counted as ended when
/// dropped.
struct Admission {
    _permit: OwnedSemaphorePermit,
    counters: Arc<Counters>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        bump(&self.counters.ended, 1);
    }
}

/// A snapshot of an [`RpcServer`]'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RpcServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now: accepted and not yet ended (at most `max_connections`).
    pub open: u64,
    /// Connections closed at accept because `max_connections` were open.
    pub refused: u64,
    /// Connections closed because of a bad frame (malformed, oversized, wrong kind/version,
    /// or cut off in the middle of a frame).
    pub closed_bad_frames: u64,
    /// Connections closed because a request frame was not complete `frame_timeout` after
    /// its first byte.
    pub closed_frame_timeout: u64,
    /// Connections closed after `idle_timeout` with nothing read or handled.
    pub closed_idle: u64,
    /// Connections closed because their TLS handshake failed (untrusted or missing client
    /// certificate, a plaintext client, garbage) or was not complete within
    /// `tls_handshake_timeout`. Always 0 without TLS.
    pub closed_tls_handshake: u64,
    /// Requests handed to the handler.
    pub requests: u64,
    /// Warning lines held back by the rate limit (`warn_interval`).
    pub warnings_suppressed: u64,
}

/// A running request/response server. Stops on [`RpcServer::shutdown`] or when dropped.
#[must_use = "the server stops when this handle is dropped"]
#[derive(Debug)]
pub struct RpcServer {
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    stopped_rx: watch::Receiver<bool>,
    shutdown_timeout: Duration,
    counters: Arc<Counters>,
}

impl RpcServer {
    /// Serves `listener` on the current tokio runtime: each request is decoded as `Req`, given
    /// to a clone of `handler`, and the returned `Resp` sent back.
    ///
    /// The handler is cloned per request, so it should be cheap to clone (an `Arc` or a handle
    /// such as `raft_actor::Node`). Requests of one connection run concurrently, up to
    /// `config.max_in_flight`, inside the connection's task (no task per request): a handler
    /// must await, never block the thread, or it holds up its connection's other requests.
    /// A handler that panics closes its connection.
    pub fn serve<Req, Resp, H, F>(
        listener: TcpListener,
        config: RpcServerConfig,
        handler: H,
    ) -> Result<Self, NetError>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        H: Fn(Req) -> F + Clone + Send + 'static,
        F: Future<Output = Resp> + Send + 'static,
    {
        config.validate()?;
        tokio::runtime::Handle::try_current().map_err(|_| NetError::NoRuntime)?;
        let local_addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let (done, done_rx) = done_channel();
        let counters = Arc::new(Counters::new(config.warn_interval));
        let accept = Acceptor {
            listener,
            config: Arc::new(config.clone()),
            handler,
            counters: counters.clone(),
            shutdown: Shutdown::new(shutdown_rx),
            done,
        };
        tokio::spawn(accept.run::<Req, Resp, F>());
        tokio::spawn(supervise(done_rx, stopped_tx));
        Ok(Self {
            local_addr,
            shutdown_tx,
            stopped_rx,
            shutdown_timeout: config.shutdown_timeout,
            counters,
        })
    }

    /// Binds `addr` and serves it; see [`RpcServer::serve`].
    pub async fn bind<A, Req, Resp, H, F>(
        addr: A,
        config: RpcServerConfig,
        handler: H,
    ) -> Result<Self, NetError>
    where
        A: ToSocketAddrs,
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        H: Fn(Req) -> F + Clone + Send + 'static,
        F: Future<Output = Resp> + Send + 'static,
    {
        config.validate()?;
        let listener = TcpListener::bind(addr).await?;
        Self::serve(listener, config, handler)
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters since start.
    pub fn stats(&self) -> RpcServerStats {
        let g = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let c = &self.counters;
        // `ended` first: a connection that ends between the two loads is then still open,
        // never negative.
        let ended = g(&c.ended);
        let accepted = g(&c.accepted);
        RpcServerStats {
            accepted,
            open: accepted.saturating_sub(ended),
            refused: g(&c.refused),
            closed_bad_frames: g(&c.closed_bad_frames),
            closed_frame_timeout: g(&c.closed_frame_timeout),
            closed_idle: g(&c.closed_idle),
            closed_tls_handshake: g(&c.closed_tls_handshake),
            requests: g(&c.requests),
            warnings_suppressed: c.warn.suppressed(),
        }
    }

    /// Stops accepting, closes every connection (pending requests get no answer; their
    /// clients see the connection end) and waits, at most `shutdown_timeout`, for the
    /// server's tasks to end. Handler tasks already running finish on their own.
    pub async fn shutdown(&self) {
        self.shutdown_tx.send_replace(true);
        let mut stopped = self.stopped_rx.clone();
        let _ = tokio::time::timeout(self.shutdown_timeout, stopped.wait_for(|s| *s)).await;
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.shutdown_tx.send_replace(true);
    }
}

/// The accept loop.
struct Acceptor<H> {
    listener: TcpListener,
    config: Arc<RpcServerConfig>,
    handler: H,
    counters: Arc<Counters>,
    shutdown: Shutdown,
    done: DoneGuard,
}

impl<H> Acceptor<H> {
    async fn run<Req, Resp, F>(self)
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        H: Fn(Req) -> F + Clone + Send + 'static,
        F: Future<Output = Resp> + Send + 'static,
    {
        let permits = Arc::new(Semaphore::new(self.config.max_connections));
        let mut shutdown = self.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                r = self.listener.accept() => r,
            };
            let (tcp, addr) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    if let Some(held) = self.counters.warn.permit() {
                        warn!(error = %e, suppressed = held, "rpc accept failed");
                    }
                    tokio::select! {
                        biased;
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                bump(&self.counters.refused, 1);
                if let Some(held) = self.counters.warn.permit() {
                    warn!(peer = %addr, max_connections = self.config.max_connections, suppressed = held, "rpc: refused connection, max_connections reached");
                }
                drop(tcp);
                continue;
            };
            bump(&self.counters.accepted, 1);
            let admission = Admission {
                _permit: permit,
                counters: self.counters.clone(),
            };
            let _ = tcp.set_nodelay(true);
            let conn = Conn {
                addr,
                config: self.config.clone(),
                handler: self.handler.clone(),
                counters: self.counters.clone(),
                shutdown: self.shutdown.clone(),
                done: self.done.clone(),
                _admission: admission,
            };
            tokio::spawn(conn.run::<Req, Resp, F>(tcp));
        }
    }
}

/// What a handler's answer hands to the connection's writer.
enum Out {
    /// An encoded response; its in-flight slot is freed once it is written.
    Frame(Bytes, OwnedSemaphorePermit),
    /// The handler's response could not be sent: close the connection (its client would
    /// otherwise wait for an answer that never comes).
    Fail(String),
}

/// Why a connection's reader stopped.
enum End {
    /// Clean end of stream, or `idle_timeout` with nothing in flight: answer what is in
    /// flight, then close.
    Eof,
    /// Shutdown, a bad frame, a frame past `frame_timeout`, a socket error or a dead writer:
    /// close now.
    Abort,
}

/// Moves `timer` earlier to `at` if it is set for later (never later: when it fires, the
/// reader works out the deadline that applies then).
fn pull_in(timer: std::pin::Pin<&mut tokio::time::Sleep>, at: Instant) {
    if timer.deadline() > at {
        timer.reset(at);
    }
}

/// The reader's time limits, from the config.
#[derive(Clone, Copy)]
struct Limits {
    frame: Duration,
    idle: Duration,
}

impl Limits {
    /// The deadline that applies now, and whether it is the frame's (else the idle one), if
    /// any: a frame under way has `frame_timeout` from its first byte; a connection with
    /// nothing under way and no handler running has `idle_timeout` from its last activity.
    /// Neither runs while the reader is not reading (at `max_in_flight`).
    fn deadline(
        self,
        reading: bool,
        frame_began: Option<Instant>,
        handlers_running: bool,
        last_active: Instant,
    ) -> Option<(Instant, bool)> {
        if !reading {
            return None;
        }
        match frame_began {
            Some(began) => Some((began + self.frame, true)),
            None if !handlers_running => Some((last_active + self.idle, false)),
            None => None,
        }
    }

    /// How soon to look again when no deadline applies.
    fn recheck(self) -> Duration {
        self.frame.min(self.idle)
    }
}

/// One accepted connection.
struct Conn<H> {
    addr: SocketAddr,
    config: Arc<RpcServerConfig>,
    handler: H,
    counters: Arc<Counters>,
    shutdown: Shutdown,
    done: DoneGuard,
    _admission: Admission,
}

impl<H> Conn<H> {
    /// The reader: one request per in-flight slot.
    async fn run<Req, Resp, F>(self, tcp: TcpStream)
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        H: Fn(Req) -> F + Clone + Send + 'static,
        F: Future<Output = Resp> + Send + 'static,
    {
        let addr = self.addr;
        let mut shutdown = self.shutdown.clone();
        // One shutdown future for the connection's life: making one per request would register
        // and remove a watch waiter twice per request.
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let secured = secure(tcp, &self.config, &self.counters, addr, stop.as_mut()).await;
        let Some((mut rd, wr)) = secured else {
            return;
        };
        // Every queued response holds a slot, so at most `max_in_flight` are queued: handler
        // tasks never wait on this channel.
        let (out_tx, out_rx) = flume::bounded::<Out>(self.config.max_in_flight);
        let mut writer: JoinHandle<()> = tokio::spawn(write_loop(
            wr,
            out_rx,
            self.config.clone(),
            self.counters.clone(),
            self.shutdown.clone(),
            self.done.clone(),
            addr,
        ));
        let slots = Arc::new(Semaphore::new(self.config.max_in_flight));
        let mut reader = FrameReader::new(self.config.max_frame_size);
        // The handlers of this connection's requests, run by this task: a task per request
        // costs a spawn, a registration in the runtime's task list and its removal.
        let mut running = FuturesUnordered::new();
        // The in-flight slot the next request will take.
        let mut slot: Option<OwnedSemaphorePermit> = None;
        let max = self.config.max_frame_size;
        let limits = Limits {
            frame: self.config.frame_timeout,
            idle: self.config.idle_timeout,
        };
        // When the frame being read began (the read that brought its first byte), if one is
        // under way; when the connection last did something (a read, its last handler
        // answering); when the last read was.
        let mut frame_began: Option<Instant> = None;
        let mut last_active = Instant::now();
        let mut last_read = last_active;
        let timer = tokio::time::sleep_until(last_active + limits.recheck());
        tokio::pin!(timer);
        let end = loop {
            if slot.is_none() {
                slot = slots.clone().try_acquire_owned().ok();
            }
            tokio::select! {
                biased;
                _ = &mut stop => break End::Abort,
                _ = &mut writer => break End::Abort,
                Some(out) = running.next(), if !running.is_empty() => {
                    // Never full (every queued item holds one of its slots); fails only if
                    // the writer is gone.
                    if out_tx.try_send(out).is_err() {
                        break End::Abort;
                    }
                    if running.is_empty() {
                        last_active = Instant::now();
                    }
                }
                // Backpressure: at the limit, stop reading until a response has been written.
                // (In an async block, so the semaphore handle is cloned only when it is waited
                // on, not on every turn of the loop.)
                s = async { slots.clone().acquire_owned().await }, if slot.is_none() => match s {
                    Ok(s) => {
                        slot = Some(s);
                        // The frame's clock stood still while the server was not reading.
                        if frame_began.is_some() {
                            let now = Instant::now();
                            frame_began = Some(now);
                            pull_in(timer.as_mut(), now + limits.frame);
                        }
                    }
                    Err(_) => break End::Abort, // Unreachable: the semaphore is never closed.
                },
                () = &mut timer => {
                    let now = Instant::now();
                    let due = limits.deadline(
                        slot.is_some(),
                        frame_began,
                        !running.is_empty(),
                        last_active,
                    );
                    match due {
                        Some((at, true)) if at <= now => {
                            bump(&self.counters.closed_frame_timeout, 1);
                            if let Some(held) = self.counters.warn.permit() {
                                warn!(peer = %addr, buffered = reader.buffered(), timeout = ?limits.frame, suppressed = held, "rpc: request frame not complete within frame_timeout; closing connection");
                            }
                            break End::Abort;
                        }
                        Some((at, false)) if at <= now => {
                            bump(&self.counters.closed_idle, 1);
                            debug!(peer = %addr, timeout = ?limits.idle, "rpc connection idle; closing it");
                            break End::Eof;
                        }
                        Some((at, _)) => timer.as_mut().reset(at),
                        None => timer.as_mut().reset(now + limits.recheck()),
                    }
                }
                step = reader.read_step(&mut rd), if slot.is_some() => {
                    let (frame, read) = match step {
                        Ok(Step::Frame(frame)) => (frame, false),
                        Ok(Step::ReadFrame(frame)) => (frame, true),
                        Ok(Step::Read) => {
                            let now = Instant::now();
                            last_active = now;
                            last_read = now;
                            if frame_began.is_none() {
                                frame_began = Some(now);
                                pull_in(timer.as_mut(), now + limits.frame);
                            }
                            continue;
                        }
                        Ok(Step::Eof) => {
                            debug!(peer = %addr, "rpc client closed the connection");
                            break End::Eof;
                        }
                        Err(ConnError::Frame(e)) => {
                            self.bad_frame(&e);
                            break End::Abort;
                        }
                        Err(ConnError::Io(e)) => {
                            debug!(peer = %addr, error = %e, "rpc connection error");
                            break End::Abort;
                        }
                    };
                    if read {
                        last_read = Instant::now();
                        last_active = last_read;
                    }
                    // Bytes after this frame belong to the next one, which began no later
                    // than the last read.
                    frame_began = (reader.buffered() > 0).then_some(last_read);
                    if let Some(began) = frame_began {
                        pull_in(timer.as_mut(), began + limits.frame);
                    }
                    let (id, req) = match split_frame(frame, FrameKind::Request)
                        .and_then(|(id, body)| Ok((id, decode_exact::<Req>(&body)?)))
                    {
                        Ok(x) => x,
                        Err(e) => {
                            self.bad_frame(&e);
                            break End::Abort;
                        }
                    };
                    bump(&self.counters.requests, 1);
                    let Some(taken) = slot.take() else {
                        break End::Abort; // Unreachable: the branch runs only with a slot.
                    };
                    running.push(answer(
                        self.handler.clone(),
                        req,
                        id,
                        taken,
                        max,
                    ));
                }
            }
        };
        match end {
            // Answer what is in flight, then let the writer finish: it ends once every
            // answer is queued and written.
            End::Eof => {
                while !running.is_empty() {
                    tokio::select! {
                        biased;
                        _ = &mut stop => return writer.abort(),
                        _ = &mut writer => return,
                        Some(out) = running.next() => {
                            if out_tx.try_send(out).is_err() {
                                return writer.abort();
                            }
                        }
                    }
                }
                drop(out_tx);
            }
            End::Abort => writer.abort(),
        }
    }

    fn bad_frame(&self, reason: &dyn std::fmt::Display) {
        bump(&self.counters.closed_bad_frames, 1);
        if let Some(held) = self.counters.warn.permit() {
            warn!(peer = %self.addr, reason = %reason, suppressed = held, "rpc: bad frame; closing connection");
        }
    }
}

/// A connection's halves: the TCP stream's own, or, with TLS, those of the TLS stream once
/// its handshake is done (`None`: it failed, timed out, or the server is stopping; the
/// connection is closed).
async fn secure(
    tcp: TcpStream,
    config: &RpcServerConfig,
    counters: &Counters,
    addr: SocketAddr,
    stop: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<(BoxRead, BoxWrite)> {
    let Some(tls) = &config.tls else {
        return Some(split_tcp(tcp));
    };
    let limit = config.tls_handshake_timeout;
    let handshake = tokio::select! {
        biased;
        _ = stop => return None,
        r = tokio::time::timeout(limit, tls.acceptor().accept(tcp)) => r,
    };
    let reason = match handshake {
        Ok(Ok(stream)) => return Some(split_stream(stream, config.write_timeout)),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("not complete within tls_handshake_timeout ({limit:?})"),
    };
    bump(&counters.closed_tls_handshake, 1);
    if let Some(held) = counters.warn.permit() {
        warn!(peer = %addr, %reason, suppressed = held, "rpc: TLS handshake failed; closing connection");
    }
    None
}

/// Runs the handler on one request and encodes its response for the writer.
async fn answer<Req, Resp, H, F>(
    handler: H,
    req: Req,
    id: u64,
    slot: OwnedSemaphorePermit,
    max: usize,
) -> Out
where
    H: Fn(Req) -> F,
    F: Future<Output = Resp>,
    Resp: Serialize,
{
    let resp = handler(req).await;
    match encode_rpc(FrameKind::Response, id, &resp, max) {
        Ok(bytes) => Out::Frame(bytes, slot),
        // Logged by the writer, which closes the connection.
        Err(e) => Out::Fail(format!("response to request {id} not sendable: {e}")),
    }
}

/// The writer: owns the write half; writes every ready response with one call.
async fn write_loop(
    mut wr: BoxWrite,
    out: flume::Receiver<Out>,
    config: Arc<RpcServerConfig>,
    counters: Arc<Counters>,
    mut shutdown: Shutdown,
    _done: DoneGuard,
    addr: SocketAddr,
) {
    let mut buf = BytesMut::with_capacity(config.write_batch_bytes.min(64 << 10));
    let mut slots: Vec<OwnedSemaphorePermit> = Vec::new();
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let first = tokio::select! {
            biased;
            _ = &mut stop => return,
            r = out.recv_async() => r,
        };
        // Err: the reader ended at EOF and every handler has answered. Close our side cleanly
        // (with TLS, a close_notify the client reads as a clean end of stream).
        let Ok(mut item) = first else {
            tokio::select! {
                biased;
                _ = &mut stop => {}
                _ = tokio::time::timeout(config.write_timeout, wr.shutdown()) => {}
            }
            return;
        };
        gather(&out).await;
        loop {
            match item {
                Out::Frame(bytes, slot) => {
                    buf.extend_from_slice(&bytes);
                    slots.push(slot);
                }
                Out::Fail(reason) => {
                    if let Some(held) = counters.warn.permit() {
                        error!(peer = %addr, %reason, suppressed = held, "rpc: closing the connection");
                    }
                    return;
                }
            }
            if buf.len() >= config.write_batch_bytes {
                break;
            }
            match out.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        let written = tokio::select! {
            biased;
            _ = &mut stop => return,
            r = tokio::time::timeout(config.write_timeout, wr.write_all(&buf)) => r,
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(peer = %addr, error = %e, "rpc write failed; closing connection");
                return;
            }
            Err(_) => {
                if let Some(held) = counters.warn.permit() {
                    warn!(peer = %addr, timeout = ?config.write_timeout, suppressed = held, "rpc client stopped reading; closing connection");
                }
                return;
            }
        }
        buf.clear();
        // The responses are in the socket: their requests' slots are free again.
        slots.clear();
    }
}
