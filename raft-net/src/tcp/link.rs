//! One outbound link: the task that dials one peer for one lane, handshakes, and writes that
//! lane's queued frames, redialing with capped, jittered backoff.
//!
//! The task owns its queues' receivers, its backoff and its connection; it talks to nobody
//! else (the send path only does `try_send` into its queues), so it cannot take part in a wait
//! cycle. It stops at its next await once shutdown is signalled.
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
use tokio::time::timeout;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::conn::{BoxStream, gather};
use crate::error::HandshakeError;
use crate::handshake::{self, Hello};
use crate::metrics::{LaneCounters, PeerCounters, bump};
use crate::shutdown::{DoneGuard, Shutdown};
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
    pub(crate) addr: SocketAddr,
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
}

impl Link {
    fn counters(&self) -> &LaneCounters {
        self.counters.lane(self.lane)
    }

    /// Runs until shutdown (or until the transport handle is gone).
    pub(crate) async fn run(mut self) {
        let seed = self.local.rotate_left(32) ^ self.peer ^ ((self.lane as u64) << 63);
        let mut backoff = Backoff::new(
            self.settings.backoff_min,
            self.settings.backoff_max,
            seed ^ 0x5EED,
        );
        let mut connected_before = false;
        let mut shutdown = self.shutdown.clone();
        loop {
            let attempt = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                r = self.connect() => r,
            };
            match attempt {
                Ok(mut stream) => {
                    backoff.reset();
                    bump(&self.counters().connects, 1);
                    if connected_before {
                        bump(&self.counters().reconnects, 1);
                        info!(node = self.local, peer = self.peer, lane = %self.lane, "reconnected");
                    } else {
                        debug!(node = self.local, peer = self.peer, lane = %self.lane, "connected");
                    }
                    connected_before = true;
                    match self.pump(&mut stream).await {
                        Ended::Shutdown => {
                            let _ = stream.shutdown().await;
                            return;
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
            let delay = backoff.next_delay();
            let deadline = tokio::time::sleep(delay);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => return,
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

    /// Dials, wraps in TLS if configured, and runs the hello exchange, all time-bounded.
    async fn connect(&self) -> Result<BoxStream, HandshakeError> {
        let s = &self.settings;
        let tcp = timeout(s.connect_timeout, TcpStream::connect(self.addr))
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

    /// Writes queued frames until the connection breaks or shutdown.
    async fn pump(&mut self, stream: &mut BoxStream) -> Ended {
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

/// Next large frame, or pending forever on a lane without a bulk queue. `None`: queue closed.
async fn recv_bulk(bulk: Option<&flume::Receiver<Bytes>>) -> Option<Bytes> {
    match bulk {
        Some(rx) => rx.recv_async().await.ok(),
        None => std::future::pending().await,
    }
}
