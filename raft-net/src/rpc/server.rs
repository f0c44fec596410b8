//! [`RpcServer`]: accepts connections and answers requests with a user handler.
//!
//! One accept task; per connection a reader task (this file's `Conn::run`, which also runs the
//! handlers of the connection's requests) and a writer task (`write_loop`). See the module docs
//! of [`crate::rpc`] for the picture and the backpressure rule.

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
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

use super::{RpcServerConfig, encode_rpc, split_frame};
use crate::conn::{ConnError, FrameReader, gather};
use crate::error::NetError;
use crate::frame::{FrameKind, decode_exact};
use crate::metrics::bump;
use crate::shutdown::{DoneGuard, Shutdown, done_channel, supervise};

/// Counters of a running server (atomics, allowed for metric counters only: no shared locks,
/// docs/architecture.md).
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    closed_bad_frames: AtomicU64,
    requests: AtomicU64,
}

/// A snapshot of an [`RpcServer`]'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RpcServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed at accept because `max_connections` were open.
    pub refused: u64,
    /// Connections closed because of a bad frame (malformed, oversized, wrong kind/version).
    pub closed_bad_frames: u64,
    /// Requests handed to the handler.
    pub requests: u64,
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
        let counters = Arc::new(Counters::default());
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
        RpcServerStats {
            accepted: g(&self.counters.accepted),
            refused: g(&self.counters.refused),
            closed_bad_frames: g(&self.counters.closed_bad_frames),
            requests: g(&self.counters.requests),
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
                    warn!(error = %e, "rpc accept failed");
                    tokio::select! {
                        biased;
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                bump(&self.counters.refused, 1);
                warn!(peer = %addr, "rpc: refused connection, max_connections reached");
                continue;
            };
            bump(&self.counters.accepted, 1);
            let _ = tcp.set_nodelay(true);
            let conn = Conn {
                addr,
                config: self.config.clone(),
                handler: self.handler.clone(),
                counters: self.counters.clone(),
                shutdown: self.shutdown.clone(),
                done: self.done.clone(),
                _permit: permit,
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
    /// Clean end of stream: answer what is in flight, then close.
    Eof,
    /// Shutdown, a bad frame, a socket error or a dead writer: close now.
    Abort,
}

/// One accepted connection.
struct Conn<H> {
    addr: SocketAddr,
    config: Arc<RpcServerConfig>,
    handler: H,
    counters: Arc<Counters>,
    shutdown: Shutdown,
    done: DoneGuard,
    _permit: OwnedSemaphorePermit,
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
        let (mut rd, wr) = tcp.into_split();
        // Every queued response holds a slot, so at most `max_in_flight` are queued: handler
        // tasks never wait on this channel.
        let (out_tx, out_rx) = flume::bounded::<Out>(self.config.max_in_flight);
        let mut writer: JoinHandle<()> = tokio::spawn(write_loop(
            wr,
            out_rx,
            self.config.clone(),
            self.shutdown.clone(),
            self.done.clone(),
            addr,
        ));
        let slots = Arc::new(Semaphore::new(self.config.max_in_flight));
        let mut reader = FrameReader::new(self.config.max_frame_size);
        let mut shutdown = self.shutdown.clone();
        // One shutdown future for the connection's life: making one per request would register
        // and remove a watch waiter twice per request.
        let stop = shutdown.wait();
        tokio::pin!(stop);
        // The handlers of this connection's requests, run by this task: a task per request
        // costs a spawn, a registration in the runtime's task list and its removal.
        let mut running = FuturesUnordered::new();
        // The in-flight slot the next request will take.
        let mut slot: Option<OwnedSemaphorePermit> = None;
        let max = self.config.max_frame_size;
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
                }
                // Backpressure: at the limit, stop reading until a response has been written.
                // (In an async block, so the semaphore handle is cloned only when it is waited
                // on, not on every turn of the loop.)
                s = async { slots.clone().acquire_owned().await }, if slot.is_none() => match s {
                    Ok(s) => slot = Some(s),
                    Err(_) => break End::Abort, // Unreachable: the semaphore is never closed.
                },
                read = reader.read_frame(&mut rd), if slot.is_some() => {
                    let frame = match read {
                        Ok(Some(frame)) => frame,
                        Ok(None) => {
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
                    running.push(answer(self.handler.clone(), req, id, taken, max, addr));
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
        warn!(peer = %self.addr, reason = %reason, "rpc: bad frame; closing connection");
    }
}

/// Runs the handler on one request and encodes its response for the writer.
async fn answer<Req, Resp, H, F>(
    handler: H,
    req: Req,
    id: u64,
    slot: OwnedSemaphorePermit,
    max: usize,
    addr: SocketAddr,
) -> Out
where
    H: Fn(Req) -> F,
    F: Future<Output = Resp>,
    Resp: Serialize,
{
    let resp = handler(req).await;
    match encode_rpc(FrameKind::Response, id, &resp, max) {
        Ok(bytes) => Out::Frame(bytes, slot),
        Err(e) => {
            error!(peer = %addr, id, error = %e, "rpc response not sendable; closing connection");
            Out::Fail(e.to_string())
        }
    }
}

/// The writer: owns the write half; writes every ready response with one call.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    out: flume::Receiver<Out>,
    config: Arc<RpcServerConfig>,
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
        // Err: the reader ended at EOF and every handler has answered.
        let Ok(mut item) = first else { return };
        gather(&out).await;
        loop {
            match item {
                Out::Frame(bytes, slot) => {
                    buf.extend_from_slice(&bytes);
                    slots.push(slot);
                }
                Out::Fail(reason) => {
                    debug!(peer = %addr, %reason, "rpc writer closing the connection");
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
                warn!(peer = %addr, timeout = ?config.write_timeout, "rpc client stopped reading; closing connection");
                return;
            }
        }
        buf.clear();
        // The responses are in the socket: their requests' slots are free again.
        slots.clear();
    }
}
