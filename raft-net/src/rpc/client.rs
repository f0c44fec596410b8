//! [`RpcClient`]: many concurrent callers pipelined over one connection.
//!
//! Three parties, no shared state:
//! - callers encode their request, take an in-flight slot and queue a [`Call`];
//! - the writer task owns the write half and the id counter: it numbers a batch of calls,
//!   registers them with the reader (before writing them), then writes the batch at once;
//! - the reader task owns the read half and the map of pending ids; it completes each call's
//!   one-shot and never awaits a send, so nothing can wait on a cycle through it.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{debug, warn};

use super::tls::{is_handshake_refusal, looks_like_tls_alert};
use super::{HEADER_LEN_WITH_ID, RpcClientConfig, put_frame, split_frame};
use crate::conn::{BoxRead, BoxWrite, ConnError, FrameReader, gather, split_stream, split_tcp};
use crate::error::RpcError;
use crate::frame::{FrameKind, decode_exact};

/// How often the reader drops entries whose caller has given up (timed out): without it, ids
/// whose responses never come would stay in the map until the connection ends.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// What a caller gets back: the encoded response body, or why there is none.
type Reply = oneshot::Sender<Result<Bytes, RpcError>>;

/// A call queued for the writer.
struct Call {
    /// postcard of the request.
    payload: Vec<u8>,
    reply: Reply,
    slot: OwnedSemaphorePermit,
}

/// A call written (or about to be) whose response has not arrived.
struct Pending {
    reply: Reply,
    /// Freed when the entry leaves the map: bounds the map to `max_in_flight`.
    _slot: OwnedSemaphorePermit,
}

/// Writer → reader.
enum ToReader {
    /// These ids are about to be written.
    Register(Vec<(u64, Pending)>),
    /// The write half failed; the connection is dead.
    Failed(String),
}

struct Inner {
    submit: flume::Sender<Call>,
    slots: Arc<Semaphore>,
    config: RpcClientConfig,
    peer: SocketAddr,
    /// Set by the reader when TLS refused the connection ([`RpcError::Tls`]) before the server
    /// processed anything, and before the reader ends: calls that fail because the connection
    /// ended (`Closed`, `ConnectionLost`) get this instead, which says why.
    tls_failure: watch::Receiver<Option<RpcError>>,
}

impl Inner {
    /// `e`, or, when the connection ended because TLS refused it, that failure: nothing sent
    /// on the connection was processed, so no call of it was delivered.
    fn explain(&self, e: RpcError) -> RpcError {
        match e {
            RpcError::Closed | RpcError::ConnectionLost { .. } => {
                self.tls_failure.borrow().clone().unwrap_or(e)
            }
            e => e,
        }
    }
}

/// A client of an [`super::RpcServer`]: one TCP connection, shared by every clone and usable
/// from many tasks at once; calls are pipelined and matched to their responses by id.
///
/// The connection is not re-established: once it ends (it failed, or the server closed it:
/// after its `idle_timeout`, at shutdown), pending calls get [`RpcError::ConnectionLost`],
/// [`RpcClient::is_closed`] turns true and new calls get [`RpcError::Closed`] without being
/// sent, so retrying them on a new client is safe; connect a new client then. A call made in
/// the short time between the server's close and this client noticing it may instead fail with
/// `ConnectionLost` (`maybe_delivered`: the client cannot tell whether it was read, so a
/// non-idempotent retry needs a session id). Dropping the last clone closes the connection.
pub struct RpcClient<Req, Resp> {
    inner: Arc<Inner>,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> Clone for RpcClient<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> std::fmt::Debug for RpcClient<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("peer", &self.inner.peer)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl<Req, Resp> RpcClient<Req, Resp> {
    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
    }

    /// True once the connection has ended: every further call fails with
    /// [`RpcError::Closed`].
    pub fn is_closed(&self) -> bool {
        self.inner.submit.is_disconnected()
    }
}

impl<Req, Resp> RpcClient<Req, Resp>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    /// Connects to `addr` and, with `config.tls`, completes the TLS handshake (both within
    /// `config.connect_timeout`), then starts the connection's writer and reader tasks on the
    /// current runtime. A failed handshake is [`RpcError::Tls`].
    pub async fn connect(addr: SocketAddr, config: RpcClientConfig) -> Result<Self, RpcError> {
        config.validate()?;
        let deadline = Instant::now() + config.connect_timeout;
        let connect_error = |reason: String| RpcError::Connect { addr, reason };
        let tcp = match timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(connect_error(e.to_string())),
            Err(_) => {
                return Err(connect_error(format!(
                    "no connection within {:?}",
                    config.connect_timeout
                )));
            }
        };
        let _ = tcp.set_nodelay(true);
        let (rd, wr) = match &config.tls {
            None => split_tcp(tcp),
            Some(tls) => {
                let tls_error = |reason: String| RpcError::Tls { addr, reason };
                let name = tls.server_name_for(addr);
                match timeout_at(deadline, tls.connector().connect(name, tcp)).await {
                    Ok(Ok(stream)) => split_stream(stream, config.write_timeout),
                    Ok(Err(e)) => return Err(tls_error(format!("handshake failed: {e}"))),
                    Err(_) => {
                        return Err(tls_error(format!(
                            "handshake not complete within connect_timeout ({:?})",
                            config.connect_timeout
                        )));
                    }
                }
            }
        };
        let (tls_failure_tx, tls_failure) = watch::channel(None);
        let (submit, calls) = flume::bounded(config.queue_capacity);
        let (to_reader, from_writer) = flume::bounded(config.queue_capacity);
        let (reader_gone_tx, reader_gone_rx) = oneshot::channel::<()>();
        tokio::spawn(write_loop(
            wr,
            calls,
            to_reader,
            reader_gone_rx,
            config.clone(),
            addr,
        ));
        tokio::spawn(read_loop(
            rd,
            from_writer,
            reader_gone_tx,
            tls_failure_tx,
            config.max_frame_size,
            config.tls.is_some(),
            addr,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                submit,
                slots: Arc::new(Semaphore::new(config.max_in_flight)),
                config,
                peer: addr,
                tls_failure,
            }),
            _types: PhantomData,
        })
    }

    /// Sends `req` and waits for its response, at most `call_timeout` of the config.
    pub async fn call(&self, req: &Req) -> Result<Resp, RpcError> {
        self.call_timeout(req, self.inner.config.call_timeout).await
    }

    /// Sends `req` and waits for its response, at most `limit` (from now until the response,
    /// including any wait for an in-flight slot or queue space).
    pub async fn call_timeout(&self, req: &Req, limit: Duration) -> Result<Resp, RpcError> {
        self.call_inner(req, limit)
            .await
            .map_err(|e| self.inner.explain(e))
    }

    async fn call_inner(&self, req: &Req, limit: Duration) -> Result<Resp, RpcError> {
        let deadline = Instant::now() + limit;
        let payload = postcard::to_allocvec(req).map_err(|e| RpcError::Encode(e.to_string()))?;
        let max = self.inner.config.max_frame_size;
        // Counted with the longest possible id, so the writer never has to refuse it.
        let size = HEADER_LEN_WITH_ID + payload.len();
        if size > max {
            return Err(RpcError::TooLarge { size, max });
        }
        let not_sent = RpcError::Timeout { sent: false };
        let slot = match timeout_at(deadline, self.inner.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(RpcError::Closed),
            Err(_) => return Err(not_sent),
        };
        let (reply, answer) = oneshot::channel();
        let call = Call {
            payload,
            reply,
            slot,
        };
        match timeout_at(deadline, self.inner.submit.send_async(call)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(RpcError::Closed),
            Err(_) => return Err(not_sent),
        }
        let body = match timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result?,
            // The call was dropped unanswered: the connection's tasks ended.
            Ok(Err(_)) => {
                return Err(RpcError::ConnectionLost {
                    reason: "connection closed".into(),
                });
            }
            Err(_) => return Err(RpcError::Timeout { sent: true }),
        };
        decode_exact::<Resp>(&body).map_err(|e| RpcError::Decode(e.to_string()))
    }
}

/// The writer: numbers calls, registers them with the reader, writes them in batches.
async fn write_loop(
    mut wr: BoxWrite,
    calls: flume::Receiver<Call>,
    to_reader: flume::Sender<ToReader>,
    mut reader_gone: oneshot::Receiver<()>,
    config: RpcClientConfig,
    addr: SocketAddr,
) {
    let mut next_id: u64 = 1;
    let mut buf = BytesMut::with_capacity(config.write_batch_bytes.min(64 << 10));
    loop {
        let first = tokio::select! {
            biased;
            _ = &mut reader_gone => break,
            c = calls.recv_async() => c,
        };
        // Err: every client handle is gone. Close our side cleanly (with TLS, a close_notify
        // the server reads as a clean end of stream).
        let Ok(mut call) = first else {
            let _ = timeout(config.write_timeout, wr.shutdown()).await;
            return;
        };
        gather(&calls).await;
        let mut batch = Vec::new();
        buf.clear();
        loop {
            // A caller that gave up already (timed out) needs no frame.
            if !call.reply.is_closed() {
                let id = next_id;
                next_id = next_id.wrapping_add(1);
                put_frame(&mut buf, FrameKind::Request, id, &call.payload);
                batch.push((
                    id,
                    Pending {
                        reply: call.reply,
                        _slot: call.slot,
                    },
                ));
            }
            if buf.len() >= config.write_batch_bytes {
                break;
            }
            match calls.try_recv() {
                Ok(next) => call = next,
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        // Registered before written: the reader knows every id before its response arrives.
        if let Err(flume::SendError(ToReader::Register(batch))) =
            to_reader.send_async(ToReader::Register(batch)).await
        {
            // The reader has ended: the connection is dead and these were not written.
            for (_, p) in batch {
                let _ = p.reply.send(Err(RpcError::Closed));
            }
            break;
        }
        match timeout(config.write_timeout, wr.write_all(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(peer = %addr, error = %e, "rpc write failed");
                let _ = to_reader
                    .send_async(ToReader::Failed(format!("write failed: {e}")))
                    .await;
                break;
            }
            Err(_) => {
                warn!(peer = %addr, timeout = ?config.write_timeout, "rpc server stopped reading; closing connection");
                let _ = to_reader
                    .send_async(ToReader::Failed("write timed out".into()))
                    .await;
                break;
            }
        }
    }
    // The connection is dead. Calls still queued were never written.
    drop(wr);
    for call in calls.drain() {
        let _ = call.reply.send(Err(RpcError::Closed));
    }
}

/// Why a connection ended: for its pending calls, [`RpcError::ConnectionLost`], or
/// [`RpcError::Tls`] when TLS refused the connection before the server processed anything.
enum Lost {
    Connection(String),
    Tls(String),
}

/// The reader: matches responses to pending calls. Never awaits a send.
async fn read_loop(
    mut rd: BoxRead,
    from_writer: flume::Receiver<ToReader>,
    _gone: oneshot::Sender<()>,
    tls_failure: watch::Sender<Option<RpcError>>,
    max_frame_size: usize,
    tls: bool,
    addr: SocketAddr,
) {
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut reader = FrameReader::new(max_frame_size);
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether a frame has come from the server: before one, a TLS refusal can be told apart.
    let mut answered = false;
    let lost = loop {
        tokio::select! {
            biased;
            msg = from_writer.recv_async() => match msg {
                Ok(ToReader::Register(batch)) => pending.extend(batch),
                Ok(ToReader::Failed(reason)) => break Lost::Connection(reason),
                // Every client handle is gone and the writer has ended.
                Err(_) => break Lost::Connection("client closed".to_string()),
            },
            read = reader.read_frame(&mut rd) => {
                let frame = match read {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break Lost::Connection("server closed the connection".to_string()),
                    Err(ConnError::Frame(_)) if !answered && !tls && looks_like_tls_alert(reader.peek()) => {
                        break Lost::Tls("the server speaks TLS and refused this plaintext client (set RpcClientConfig::tls)".to_string());
                    }
                    Err(ConnError::Frame(e)) => {
                        warn!(peer = %addr, reason = %e, "rpc: bad frame from server; closing connection");
                        break Lost::Connection(format!("bad frame from server: {e}"));
                    }
                    Err(ConnError::Io(e)) if !answered && tls && is_handshake_refusal(&e) => {
                        break Lost::Tls(format!("the server refused the handshake: {e}"));
                    }
                    Err(ConnError::Io(e)) => break Lost::Connection(format!("read failed: {e}")),
                };
                answered = true;
                let (id, body) = match split_frame(frame, FrameKind::Response) {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(peer = %addr, reason = %e, "rpc: bad frame from server; closing connection");
                        break Lost::Connection(format!("bad frame from server: {e}"));
                    }
                };
                let mut entry = pending.remove(&id);
                if entry.is_none() {
                    // Its registration may still be queued: the writer registers before it
                    // writes, so after draining the queue every written id is known.
                    while let Ok(msg) = from_writer.try_recv() {
                        match msg {
                            ToReader::Register(batch) => pending.extend(batch),
                            ToReader::Failed(_) => {}
                        }
                    }
                    entry = pending.remove(&id);
                }
                match entry {
                    Some(p) => {
                        let _ = p.reply.send(Ok(body));
                    }
                    // A caller that timed out and was swept, or an id we never sent.
                    None => debug!(peer = %addr, id, "rpc response for no pending call; ignored"),
                }
            },
            _ = sweep.tick() => pending.retain(|_, p| !p.reply.is_closed()),
        }
    };
    let lost = match lost {
        Lost::Connection(reason) => {
            debug!(peer = %addr, %reason, pending = pending.len(), "rpc connection ended");
            RpcError::ConnectionLost { reason }
        }
        Lost::Tls(reason) => {
            debug!(peer = %addr, %reason, "rpc: TLS refused the connection");
            let e = RpcError::Tls { addr, reason };
            // Before `_gone` is dropped: the writer then fails queued calls with `Closed`, which
            // callers see as this.
            tls_failure.send_replace(Some(e.clone()));
            e
        }
    };
    for (_, p) in pending.drain() {
        let _ = p.reply.send(Err(lost.clone()));
    }
    while let Ok(msg) = from_writer.try_recv() {
        if let ToReader::Register(batch) = msg {
            for (_, p) in batch {
                let _ = p.reply.send(Err(lost.clone()));
            }
        }
    }
}
