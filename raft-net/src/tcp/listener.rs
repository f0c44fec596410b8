//! One lane's listener: accepts connections, authenticates them (TLS, then the hello), and
//! runs one reader task per connection that decodes frames into the lane's inbound channel.
//!
//! A reader never waits on the consumer: a full inbound channel drops the message and counts
//! it. Any bad frame closes that connection only, with a warning naming the peer (address, and
//! node id once known) and the reason; the listener and the other connections carry on.
//!
//! A hello is accepted only from a node that is an active peer at that moment (the peer
//! table, `tcp/peers.rs`). Each reader then watches its peer's target and closes its
//! connection as soon as the peer is removed, whether or not the peer is sending.
//!
//! What anyone who can reach the port can cause, one line per connection (refused at
//! `max_inbound_connections`, refused handshakes, failed accepts), is logged at most once per
//! `TcpConfig::warn_interval` for both lanes together; each line says how many were held back
//! and `MetricsSnapshot::warnings_suppressed` counts them (`warn_limit.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tracing::{debug, error, info, warn};

use crate::conn::{BoxStream, ConnError, FrameReader};
use crate::error::HandshakeError;
use crate::frame::{HANDSHAKE_MAX_FRAME, decode_message};
use crate::handshake::{self, ListenerIdentity};
use crate::metrics::{Metrics, bump};
use crate::shutdown::{DoneGuard, Shutdown};
use crate::tcp::peers::PeerTable;
use crate::tls::TlsConfig;
use crate::transport::{Envelope, NodeId};
use crate::warn_limit::WarnLimiter;

/// Settings shared by a listener and its connections.
pub(crate) struct ListenerSettings {
    /// Its `peers` set is left empty: the hello is judged against `table`.
    pub(crate) identity: ListenerIdentity,
    pub(crate) table: Arc<PeerTable>,
    pub(crate) max_frame_size: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) max_connections: usize,
    /// Shared by both lanes' listeners: at most one line per `TcpConfig::warn_interval` for
    /// refused connections, refused handshakes and failed accepts.
    pub(crate) warn: Arc<WarnLimiter>,
}

/// The accept loop of one lane.
pub(crate) struct ListenerTask<M> {
    pub(crate) listener: std::net::TcpListener,
    pub(crate) settings: Arc<ListenerSettings>,
    pub(crate) inbound: flume::Sender<Envelope<M>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: Shutdown,
    pub(crate) done: DoneGuard,
}

impl<M: DeserializeOwned + Send + 'static> ListenerTask<M> {
    /// Accepts until shutdown. Must run on the lane's runtime: the listener and every
    /// connection it accepts are registered with that runtime's reactor.
    pub(crate) async fn run(self) {
        let lane = self.settings.identity.lane;
        let node = self.settings.identity.node_id;
        let listener = match TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                error!(node, %lane, error = %e, "cannot register listener; lane receives nothing");
                return;
            }
        };
        let permits = Arc::new(Semaphore::new(self.settings.max_connections));
        let mut shutdown = self.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                r = listener.accept() => r,
            };
            let (tcp, addr) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    if let Some(held) = self.settings.warn.permit() {
                        warn!(node, %lane, error = %e, suppressed = held, "accept failed");
                    }
                    tokio::select! {
                        biased;
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                bump(&self.metrics.global.refused_connections, 1);
                if let Some(held) = self.settings.warn.permit() {
                    warn!(node, %lane, peer = %addr, suppressed = held, "refused connection: max_inbound_connections reached");
                }
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let conn = InboundConn {
                addr,
                settings: self.settings.clone(),
                inbound: self.inbound.clone(),
                metrics: self.metrics.clone(),
                shutdown: self.shutdown.clone(),
                _done: self.done.clone(),
                _permit: permit,
            };
            tokio::spawn(conn.run(tcp));
        }
    }
}

/// One accepted connection.
struct InboundConn<M> {
    addr: SocketAddr,
    settings: Arc<ListenerSettings>,
    inbound: flume::Sender<Envelope<M>>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    _done: DoneGuard,
    _permit: OwnedSemaphorePermit,
}

impl<M: DeserializeOwned + Send + 'static> InboundConn<M> {
    async fn run(self, tcp: TcpStream) {
        let lane = self.settings.identity.lane;
        let node = self.settings.identity.node_id;
        let addr = self.addr;
        let mut reader = FrameReader::new(HANDSHAKE_MAX_FRAME);
        let authenticate = async {
            let mut stream: BoxStream = match &self.settings.tls {
                Some(tls) => Box::new(
                    tls.acceptor()
                        .accept(tcp)
                        .await
                        .map_err(|e| HandshakeError::Tls(e.to_string()))?,
                ),
                None => Box::new(tcp),
            };
            let table = &self.settings.table;
            let is_peer = |id| table.get(id).is_some_and(|slot| slot.is_active());
            let from =
                handshake::accept(&mut stream, &mut reader, &self.settings.identity, is_peer)
                    .await?;
            Ok::<_, HandshakeError>((stream, from))
        };
        let mut shutdown = self.shutdown.clone();
        let outcome = tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            r = timeout(self.settings.handshake_timeout, authenticate) => {
                r.unwrap_or(Err(HandshakeError::Timeout))
            }
        };
        let (mut stream, from) = match outcome {
            Ok(x) => x,
            Err(e) => {
                self.count_rejection(&e);
                if let Some(held) = self.settings.warn.permit() {
                    warn!(node, %lane, peer = %addr, reason = %e, suppressed = held, "refused handshake; closing connection");
                }
                return;
            }
        };
        let Some(slot) = self.settings.table.get(from) else {
            return; // Unreachable: the handshake only admits peers with a slot.
        };
        // Subscribe first, then look at the flag: a removal after this load changes the
        // target this receiver watches, and one before it is seen by the load.
        let mut target = slot.watch();
        let removals = target.borrow().removals;
        if !slot.is_active() {
            debug!(node, %lane, peer = %addr, from, "peer removed during its handshake; closing");
            return;
        }
        debug!(node, %lane, peer = %addr, from, "inbound connection authenticated");
        reader.set_max_frame_size(self.settings.max_frame_size);
        let counters = slot.counters.clone();
        let counters = counters.lane(lane);
        loop {
            let read = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                r = target.changed() => {
                    // Err: the slot is gone, so is the transport.
                    if r.is_err() || target.borrow().removals != removals {
                        info!(node, %lane, peer = %addr, from, "peer removed; closing its inbound connection");
                        return;
                    }
                    continue;
                }
                r = reader.read_frame(&mut stream) => r,
            };
            match read {
                Ok(Some(frame)) => match decode_message::<M>(&frame) {
                    Ok((group, msg)) => {
                        bump(&counters.frames_received, 1);
                        bump(&counters.bytes_received, frame.wire_len() as u64);
                        if self
                            .inbound
                            .try_send(Envelope { from, group, msg })
                            .is_err()
                        {
                            bump(&counters.dropped_inbound_full, 1);
                        }
                    }
                    Err(e) => {
                        self.bad_frame(from, &e);
                        return;
                    }
                },
                Ok(None) => {
                    debug!(node, %lane, peer = %addr, from, "peer closed the connection");
                    return;
                }
                Err(ConnError::Frame(e)) => {
                    self.bad_frame(from, &e);
                    return;
                }
                Err(ConnError::Io(e)) => {
                    debug!(node, %lane, peer = %addr, from, error = %e, "connection error");
                    return;
                }
            }
        }
    }

    fn bad_frame(&self, from: NodeId, reason: &dyn std::fmt::Display) {
        bump(&self.metrics.global.closed_bad_frames, 1);
        warn!(
            node = self.settings.identity.node_id,
            lane = %self.settings.identity.lane,
            peer = %self.addr,
            from,
            reason = %reason,
            "bad frame; closing connection"
        );
    }

    fn count_rejection(&self, _e: &HandshakeError) {
        // The dialer's id is not trustworthy before the handshake succeeds, so refusals are
        // counted globally; the dialing node counts them per peer on its side.
        bump(&self.metrics.global.rejected_handshakes, 1);
    }
}
