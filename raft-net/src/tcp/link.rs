//! One outbound link: the task that dials one peer for one lane, handshakes, and writes that
//! lane's queued frames, redialing with capped, jittered backoff.
//!
//! The task owns its queues' receivers, its backoff and its connection; it talks to nobody
//! else (the send path only does `try_send` into its queues), so it cannot take part in a wait
//! cycle. It stops at its next await once shutdown is signalled.
//!
//! It follows its peer's target (`tcp/peers.rs`), a latest-value cell it only reads: new
//! addresses for its lane close the connection (or abandon the dial) and dial them at once; a
//! removal closes the connection, drops and counts (`dropped_removed`) what is queued, and
//! stops dialing until the peer is added again.
//!
//! Writer schedule (data lane): wait for a frame; then take queued small frames into one buffer
//! up to `write_batch_bytes` and at most one large frame from the bulk queue; write the small
//! batch with one call, then the large frame. A small frame thus waits behind at most one large
//! frame, and large frames still make progress under a flood of small ones.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::conn::{BoxStream, gather};
use crate::error::HandshakeError;
use crate::handshake::{self, Hello};
use crate::metrics::{LaneCounters, PeerCounters, bump};
use crate::shutdown::{DoneGuard, Shutdown};
use crate::tcp::peers::Target;
use crate::tls::TlsConfig;
use crate::transport::{ClusterId, Lane, NodeId};

/// Timing and sizing a link needs from the config.
#[derive(Clone, Debug)]
pub(crate) struct LinkSettings {
    pub(crate) cluster_id: ClusterId,
    pub(crate) write_batch_bytes: usize,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) tls: Option<TlsConfig>,
}

/// The outbound link task for (peer, lane).
pub(crate) struct Link {
    pub(crate) local: NodeId,
    pub(crate) peer: NodeId,
    pub(crate) lane: Lane,
    /// Small frames (every heartbeat-lane frame; data-lane frames up to the threshold).
    pub(crate) small: flume::Receiver<Bytes>,
    /// Large data-lane frames; `None` on the heartbeat lane.
    pub(crate) bulk: Option<flume::Receiver<Bytes>>,
    pub(crate) counters: Arc<PeerCounters>,
    pub(crate) settings: Arc<LinkSettings>,
    pub(crate) shutdown: Shutdown,
    pub(crate) _done: DoneGuard,
}

/// Why an established connection ended.
enum Ended {
    Shutdown,
    Broken(String),
    /// The peer was removed or moved to another address: close and follow the new target.
    Retarget,
}

/// What the link is connected to, or trying to be: its lane's address of the peer, and the
/// removal count it has acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Aim {
    addr: Option<SocketAddr>,
    removals: u64,
}

impl Aim {
    fn of(target: &Target, lane: Lane) -> Self {
        Self {
            addr: target.addr(lane),
            removals: target.removals,
        }
    }
}

impl Link {
    fn counters(&self) -> &LaneCounters {
        self.counters.lane(self.lane)
    }

    /// Runs until shutdown (or until the transport handle is gone), following `target`: the
    /// peer's addresses, or `None` while it is removed (see `tcp/peers.rs`).
    pub(crate) async fn run(mut self, mut target: watch::Receiver<Target>) {
        let seed = self.local.rotate_left(32) ^ self.peer ^ ((self.lane as u64) << 63);
        let mut backoff = Backoff::new(
            self.settings.backoff_min,
            self.settings.backoff_max,
            seed ^ 0x5EED,
        );
        let mut connected_before = false;
        let mut shutdown = self.shutdown.clone();
        // A new slot's target: no address, no removal yet.
        let mut removals = 0;
        loop {
            let aim = Aim::of(&target.borrow_and_update(), self.lane);
            if aim.removals != removals {
                // Removed since we last looked (perhaps added again already): what is queued
                // was meant for the connection the removal closed.
                removals = aim.removals;
                self.drop_queued();
                backoff.reset();
            }
            let Some(addr) = aim.addr else {
                // Removed: dial nobody; drop what still reaches the queues until re-added.
                if self.wait_while_removed(&mut shutdown, &mut target).await {
                    return;
                }
                continue;
            };
            // Retargeted while dialing: dial the new target at once; the slot gone (`false`):
            // the transport was dropped.
            let attempt = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                moved = retargeted(&mut target, self.lane, aim) => if moved { None } else { return },
                r = self.connect(addr) => Some(r),
            };
            let Some(attempt) = attempt else {
                continue;
            };
            match attempt {
                Ok(mut stream) => {
                    backoff.reset();
                    bump(&self.counters().connects, 1);
                    if connected_before {
                        bump(&self.counters().reconnects, 1);
                        info!(node = self.local, peer = self.peer, lane = %self.lane, %addr, "reconnected");
                    } else {
                        debug!(node = self.local, peer = self.peer, lane = %self.lane, %addr, "connected");
                    }
                    connected_before = true;
                    match self.pump(&mut stream, &mut target, aim).await {
                        Ended::Shutdown => {
                            let _ = stream.shutdown().await;
                            return;
                        }
                        Ended::Retarget => {
                            // Closed by dropping it: a polite TLS close could wait on a peer
                            // that does not read.
                            drop(stream);
                            debug!(node = self.local, peer = self.peer, lane = %self.lane, "peer removed or moved; connection closed");
                            continue;
                        }
                        Ended::Broken(reason) => {
                            bump(&self.counters().disconnects, 1);
                            info!(node = self.local, peer = self.peer, lane = %self.lane, %reason, "connection lost; redialing");
                        }
                    }
                }
                Err(e) => {
                    bump(&self.counters().connect_failures, 1);
                    if matches!(e, HandshakeError::Rejected(_)) {
                        bump(&self.counters().rejected_handshakes, 1);
                        warn!(node = self.local, peer = self.peer, lane = %self.lane, reason = %e, "handshake refused by peer");
                    } else {
                        debug!(node = self.local, peer = self.peer, lane = %self.lane, reason = %e, "connect failed");
                    }
                }
            }
            // The peer is unreachable: wait, discarding (and counting) what is queued so the
            // senders see fresh queue space and the next connection carries fresh messages.
            // A new target ends the wait at once.
            let delay = backoff.next_delay();
            let deadline = tokio::time::sleep(delay);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => return,
                    moved = retargeted(&mut target, self.lane, aim) => if moved { break } else { return },
                    _ = &mut deadline => break,
                    r = self.small.recv_async() => match r {
                        Ok(_) => bump(&self.counters().dropped_disconnected, 1),
                        Err(_) => return,
                    },
                    r = recv_bulk(self.bulk.as_ref()) => match r {
                        Some(_) => bump(&self.counters().dropped_disconnected, 1),
                        None => return,
                    },
                }
            }
        }
    }

    /// Drops (and counts as `dropped_removed`) everything queued now.
    fn drop_queued(&self) {
        let mut dropped = 0;
        while self.small.try_recv().is_ok() {
            dropped += 1;
        }
        if let Some(bulk) = &self.bulk {
            while bulk.try_recv().is_ok() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            bump(&self.counters().dropped_removed, dropped);
            debug!(node = self.local, peer = self.peer, lane = %self.lane, dropped, "peer removed; dropped what was queued for it");
        }
    }

    /// Waits for the peer to be added again, dropping (and counting) whatever reaches the
    /// queues meanwhile (a `send` that raced with the removal). True: stop the task.
    async fn wait_while_removed(
        &self,
        shutdown: &mut Shutdown,
        target: &mut watch::Receiver<Target>,
    ) -> bool {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => return true,
                r = target.changed() => return r.is_err(),
                r = self.small.recv_async() => match r {
                    Ok(_) => bump(&self.counters().dropped_removed, 1),
                    Err(_) => return true,
                },
                r = recv_bulk(self.bulk.as_ref()) => match r {
                    Some(_) => bump(&self.counters().dropped_removed, 1),
                    None => return true,
                },
            }
        }
    }

    /// Dials `addr`, wraps in TLS if configured, and runs the hello exchange, all
    /// time-bounded.
    async fn connect(&self, addr: SocketAddr) -> Result<BoxStream, HandshakeError> {
        let s = &self.settings;
        let tcp = timeout(s.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| HandshakeError::Timeout)?
            .map_err(|e| HandshakeError::Io(e.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|e| HandshakeError::Io(e.to_string()))?;
        let hello = Hello {
            cluster_id: s.cluster_id,
            from: self.local,
            to: self.peer,
            lane: self.lane,
        };
        let exchange = async {
            let mut stream: BoxStream = match &s.tls {
                Some(tls) => Box::new(
                    tls.connector()
                        .connect(tls.server_name(), tcp)
                        .await
                        .map_err(|e| HandshakeError::Tls(e.to_string()))?,
                ),
                None => Box::new(tcp),
            };
            handshake::dial(&mut stream, &hello).await?;
            Ok(stream)
        };
        timeout(s.handshake_timeout, exchange)
            .await
            .map_err(|_| HandshakeError::Timeout)?
    }

    /// Writes queued frames until the connection breaks, shutdown, or the target moves away
    /// from `aim` (the peer was removed or given another address for this lane).
    async fn pump(
        &mut self,
        stream: &mut BoxStream,
        target: &mut watch::Receiver<Target>,
        aim: Aim,
    ) -> Ended {
        let batch_limit = self.settings.write_batch_bytes;
        let mut batch = BytesMut::with_capacity(batch_limit.min(64 << 10));
        let mut probe = [0u8; 256];
        let mut shutdown = self.shutdown.clone();
        // One shutdown future for the connection's life, not one per batch.
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            // Wait for work, watching the socket so a peer that closes is noticed while idle.
            let mut large: Option<Bytes> = None;
            let mut frames = 1u64;
            tokio::select! {
                biased;
                _ = &mut stop => return Ended::Shutdown,
                moved = retargeted(target, self.lane, aim) => {
                    return if moved {
                        Ended::Retarget
                    } else {
                        Ended::Shutdown // The slot is gone: the transport was dropped.
                    };
                }
                r = stream.read(&mut probe) => {
                    return Ended::Broken(match r {
                        Ok(0) => "peer closed the connection".into(),
                        Ok(_) => "peer sent bytes on a send-only connection".into(),
                        Err(e) => format!("i/o error: {e}"),
                    });
                }
                r = self.small.recv_async() => match r {
                    Ok(frame) => batch.extend_from_slice(&frame),
                    Err(_) => return Ended::Shutdown,
                },
                r = recv_bulk(self.bulk.as_ref()) => match r {
                    Some(frame) => large = Some(frame),
                    None => return Ended::Shutdown,
                },
            }
            // Coalesce: every queued small frame up to the batch limit, then one large frame.
            gather(&self.small).await;
            while batch.len() < batch_limit {
                match self.small.try_recv() {
                    Ok(frame) => {
                        batch.extend_from_slice(&frame);
                        frames += 1;
                    }
                    Err(_) => break,
                }
            }
            if large.is_none() {
                if let Some(bulk) = &self.bulk {
                    if let Ok(frame) = bulk.try_recv() {
                        large = Some(frame);
                        frames += 1;
                    }
                }
            }
            let bytes = batch.len() + large.as_ref().map_or(0, Bytes::len);
            let write = async {
                if !batch.is_empty() {
                    stream.write_all(&batch).await?;
                }
                if let Some(frame) = &large {
                    stream.write_all(frame).await?;
                }
                stream.flush().await
            };
            let result = tokio::select! {
                biased;
                _ = &mut stop => return Ended::Shutdown,
                r = timeout(self.settings.write_timeout, write) => r,
            };
            match result {
                Ok(Ok(())) => {
                    bump(&self.counters().frames_sent, frames);
                    bump(&self.counters().write_batches, 1);
                    bump(&self.counters().bytes_sent, bytes as u64);
                }
                Ok(Err(e)) => {
                    bump(&self.counters().dropped_disconnected, frames);
                    return Ended::Broken(format!("write failed: {e}"));
                }
                Err(_) => {
                    bump(&self.counters().dropped_disconnected, frames);
                    return Ended::Broken("write timed out: peer is not reading".into());
                }
            }
            batch.clear();
            if batch.capacity() > 4 * batch_limit.max(64 << 10) {
                batch = BytesMut::with_capacity(batch_limit.min(64 << 10));
            }
        }
    }
}

/// Waits until `target` moves `lane` away from `aim` (the peer was removed, or given another
/// address for this lane): true; false once the slot is gone (the transport was dropped).
/// Changes that leave this lane's aim as it was are passed over. Cancel-safe, as
/// `watch::Receiver::changed` is: a `select!` may drop it and call it again.
async fn retargeted(target: &mut watch::Receiver<Target>, lane: Lane, aim: Aim) -> bool {
    loop {
        if target.changed().await.is_err() {
            return false;
        }
        if Aim::of(&target.borrow(), lane) != aim {
            return true;
        }
    }
}

/// Next large frame, or pending forever on a lane without a bulk queue. `None`: queue closed.
async fn recv_bulk(bulk: Option<&flume::Receiver<Bytes>>) -> Option<Bytes> {
    match bulk {
        Some(rx) => rx.recv_async().await.ok(),
        None => std::future::pending().await,
    }
}
