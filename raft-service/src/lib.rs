//! # raft-service: a replicated service in front of a raft-actor node, and its client
//!
//! A [`Server`] serves one [`raft_actor::Node`]'s groups to clients over raft-net's RPC:
//! commands, three kinds of read, sessions, and admin calls (status, members, add and remove
//! node, transfer leader). A [`Client`] takes any one server address, finds each group's
//! leader, follows hints, retries with jittered backoff under a deadline, and stamps the
//! `(client, sequence)` session ids that make retried writes apply exactly once; its errors
//! say whether a write is in doubt.
//!
//! ```
//! use std::io::{self, Read, Write};
//!
//! use raft_actor::{MemConfig, MemNetwork, MemStore, Membership, Node, NodeConfig};
//! use raft_actor::{SnapshotMeta, StateMachine, WireMsg};
//! use raft_service::{Client, ClientConfig, Server, ServerConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default)]
//! struct Counter(i64);
//!
//! #[derive(Serialize, Deserialize)]
//! struct Add(i64);
//!
//! impl StateMachine for Counter {
//!     type Command = Add;
//!     type Query = ();
//!     type Response = i64;
//!     fn apply(&mut self, _index: u64, Add(n): Add) -> i64 {
//!         self.0 += n;
//!         self.0
//!     }
//!     fn query(&self, _: ()) -> i64 {
//!         self.0
//!     }
//!     fn snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
//!         out.write_all(&self.0.to_le_bytes())
//!     }
//!     fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
//!         let mut bytes = [0u8; 8];
//!         data.read_exact(&mut bytes)?;
//!         self.0 = i64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     // Three nodes in one process, each served on its own loopback port.
//!     let ids = [1, 2, 3];
//!     let network = MemNetwork::<WireMsg>::direct(&ids, &MemConfig::default())?;
//!     let (mut nodes, mut servers) = (Vec::new(), Vec::new());
//!     for (id, (transport, inbound)) in ids.into_iter().zip(network) {
//!         let node = Node::<Counter>::builder(NodeConfig::new(id))
//!             .transport(transport, inbound)
//!             .storage(MemStore::new())
//!             .start()
//!             .await?;
//!         node.add_partition(1, Membership::new(ids), Counter::default()).await?;
//!         servers.push(Server::bind(node.clone(), "127.0.0.1:0", ServerConfig::default()).await?);
//!         nodes.push(node);
//!     }
//!     // The client is given every server; it finds the leader and retries across elections.
//!     let addrs = servers.iter().map(|s| s.local_addr());
//!     let mut client = Client::<Counter>::new(ClientConfig::new(addrs))?;
//!     let applied = client.propose(1, Add(5)).await?;
//!     assert_eq!(applied.response, 5);
//!     assert_eq!(client.read(1, ()).await?, 5);
//!     for (server, node) in servers.iter().zip(&nodes) {
//!         server.shutdown().await;
//!         node.shutdown().await;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! ## TLS
//!
//! Clients and servers talk over one listener per server, in plaintext by default. For TLS,
//! give the server an `RpcTlsServer` in [`ServerConfig::rpc`] (`rpc.tls`: its certificate
//! chain and key; with a client CA, client certificates are required) and the client an
//! `RpcTlsClient` in [`ClientConfig::rpc`] (`rpc.tls`: the CA to trust; its own certificate
//! for mutual TLS). Each server's certificate must name the address clients reach it at (an
//! IP subject alternative name, as leader hints carry addresses), or every server's must
//! carry one name that clients are told with `RpcTlsClient::with_server_name`. Certificates
//! and keys come from PEM files or PEM or DER in memory (`raft_net::TlsSource`). A handshake
//! that fails (an untrusted or missing certificate, a plaintext end meeting a TLS one) ends
//! that connection only; the client's call then fails like one to an unreachable server,
//! never in doubt (nothing reached the state machine), and the server counts it
//! (`Server::stats().closed_tls_handshake`) and keeps serving.
//!
//! ```no_run
//! use raft_net::{RpcTlsClient, RpcTlsServer, TlsSource};
//! use raft_service::{ClientConfig, ServerConfig};
//!
//! # fn main() -> anyhow::Result<()> {
//! let mut server = ServerConfig::default();
//! server.rpc.tls = Some(RpcTlsServer::new(
//!     TlsSource::PemFile("server-chain.pem".into()),
//!     TlsSource::PemFile("server-key.pem".into()),
//!     Some(TlsSource::PemFile("client-ca.pem".into())), // None: no client certificates
//! )?);
//! let mut client = ClientConfig::new(["10.0.0.1:7000".parse()?]);
//! client.rpc.tls = Some(RpcTlsClient::new(
//!     TlsSource::PemFile("ca.pem".into()),
//!     Some((
//!         TlsSource::PemFile("client-chain.pem".into()),
//!         TlsSource::PemFile("client-key.pem".into()),
//!     )),
//! )?);
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - [`protocol`] — the [`Request`] and [`Answer`] types on the wire, [`ReadKind`],
//!   [`GroupStatus`] and [`ServiceError`].
//! - [`server`] — [`Server`], [`ServerConfig`] and [`Servable`], the state machines a server
//!   can serve.
//! - [`client`] — [`Client`], [`ClientConfig`], [`ClientError`], [`Applied`], [`ReadResult`].
//! - [`mod@join`] — [`join()`]: a node started empty becomes a member of a running cluster.
//! - [`local`] — [`local::LocalCluster`]: a whole cluster in one process, for tests and
//!   examples.

pub mod client;
pub mod join;
pub mod local;
pub mod protocol;
pub mod server;

#[doc(hidden)]
pub mod doc_support;

mod calls;

pub use client::{Applied, Client, ClientConfig, ClientError, ReadResult};
pub use join::{JoinError, join};
pub use protocol::{
    Admin, Answer, Encoded, GroupStatus, GroupSummary, NodeStatus, ReadKind, Request, ServiceError,
};
pub use server::{AnswerOf, RequestOf, Servable, Server, ServerConfig};
