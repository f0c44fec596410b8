//! A fault-injecting TCP proxy for one direction of one link: the network of proxy mode.
//!
//! It listens on two adjacent loopback ports and forwards them to the target node's Raft data
//! port and the heartbeat port after it. While stalled it moves no bytes and holds new
//! connections without connecting them: to the processes the link is silent, as a cut cable
//! is, and what they wrote arrives once it is restored (as TCP retransmission would deliver
//! it), unless they gave up on the connection first.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::debug;

use crate::net::{NetError, free_port_pair};

/// One direction of one link. Dropping it closes its listeners and connections.
pub(crate) struct Proxy {
    addr: SocketAddr,
    stalled: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to `target` (and `target`'s port + 1). Must run inside a tokio runtime.
    pub(crate) fn start(target: SocketAddr) -> Result<Proxy, NetError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            NetError::Port(std::io::Error::other(format!(
                "proxy mode needs a tokio runtime: {e}"
            )))
        })?;
        let addr = free_port_pair()?;
        let (stalled, _) = watch::channel(false);
        let mut tasks = Vec::new();
        for offset in 0..2u16 {
            let listen = SocketAddr::new(addr.ip(), addr.port() + offset);
            let to = SocketAddr::new(target.ip(), target.port() + offset);
            let std = std::net::TcpListener::bind(listen).map_err(NetError::Port)?;
            std.set_nonblocking(true).map_err(NetError::Port)?;
            let listener = {
                let _guard = runtime.enter();
                TcpListener::from_std(std).map_err(NetError::Port)?
            };
            tasks.push(runtime.spawn(accept(listener, to, stalled.subscribe())));
        }
        Ok(Proxy {
            addr,
            stalled,
            tasks,
        })
    }

    /// Where the node using this link connects.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stalls or restores the link.
    pub(crate) fn set_stalled(&self, stalled: bool) {
        self.stalled.send_replace(stalled);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Accepts connections and forwards each to `to`; the connections end with this task.
async fn accept(listener: TcpListener, to: SocketAddr, stalled: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((conn, _)) => {
                    conns.spawn(forward(conn, to, stalled.clone()));
                }
                Err(e) => debug!(error = %e, "proxy accept failed"),
            },
        }
    }
}

/// Waits while the link is stalled. False if the proxy is gone.
async fn open(stalled: &mut watch::Receiver<bool>) -> bool {
    stalled.wait_for(|s| !*s).await.is_ok()
}

async fn forward(inbound: TcpStream, to: SocketAddr, mut stalled: watch::Receiver<bool>) {
    if !open(&mut stalled).await {
        return;
    }
    let Ok(outbound) = TcpStream::connect(to).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = outbound.into_split();
    tokio::select! {
        _ = pump(ri, wo, stalled.clone()) => {}
        _ = pump(ro, wi, stalled) => {}
    }
}

/// Copies `from` to `to`, holding each read's bytes while the link is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !open(&mut stalled).await {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !open(&mut stalled).await {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
