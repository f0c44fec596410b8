//! Optional TLS of the RPC: [`RpcTlsServer`] (a server's certificate, and optionally the CA
//! its clients' certificates must chain to) and [`RpcTlsClient`] (the CA a client trusts, and
//! optionally its own certificate).
//!
//! Unlike node-to-node TLS ([`crate::TlsConfig`], one cluster-wide name, always mutual), the
//! RPC serves clients that are not cluster members: server authentication is the default and
//! client certificates are asked for only when the server is given a client CA. A client
//! checks the server's certificate against the address it dialed (an IP address subject
//! alternative name), unless told a DNS name to check instead
//! ([`RpcTlsClient::with_server_name`]), so the servers of a cluster, each at its own address,
//! need no shared name. rustls with the ring provider, passed explicitly.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::NetError;
use crate::tls::{TlsSource, provider, tls_err};

/// TLS of an [`super::RpcServer`] (`RpcServerConfig::tls`): its certificate chain and
/// private key and, for mutual TLS, the CA client certificates must chain to. Cheap to clone.
#[derive(Clone)]
pub struct RpcTlsServer {
    acceptor: TlsAcceptor,
    client_auth: bool,
}

impl fmt::Debug for RpcTlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcTlsServer")
            .field("requires_client_cert", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl RpcTlsServer {
    /// The server presents `cert_chain` (leaf first) and proves it holds `key`. With
    /// `client_ca`, every client must present a certificate chaining to one of its
    /// certificates (mutual TLS); a client without one, or with another CA's, fails its
    /// handshake. Without it, clients are not asked for certificates.
    pub fn new(
        cert_chain: TlsSource,
        key: TlsSource,
        client_ca: Option<TlsSource>,
    ) -> Result<Self, NetError> {
        let provider = provider();
        let chain = cert_chain.certs("server certificate chain")?;
        let key = key.key("server private key")?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("server protocol versions", e))?;
        let builder = match &client_ca {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(ca.roots("client CA")?, provider)
                        .build()
                        .map_err(|e| tls_err("client verifier", e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| tls_err("server certificate", e))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            client_auth: client_ca.is_some(),
        })
    }

    /// [`RpcTlsServer::new`] from PEM in memory.
    pub fn from_pem(
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: Option<&[u8]>,
    ) -> Result<Self, NetError> {
        Self::new(
            TlsSource::Pem(cert_chain_pem.to_vec()),
            TlsSource::Pem(key_pem.to_vec()),
            client_ca_pem.map(|ca| TlsSource::Pem(ca.to_vec())),
        )
    }

    /// Whether clients must present a certificate (mutual TLS).
    pub fn requires_client_cert(&self) -> bool {
        self.client_auth
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// TLS of an [`super::RpcClient`] (`RpcClientConfig::tls`): the CA(s) the server's
/// certificate must chain to and, for servers that require one, the client's own certificate.
/// Cheap to clone.
///
/// The server's certificate must name the IP address the client dials (an IP subject
/// alternative name), or the DNS name given with [`RpcTlsClient::with_server_name`].
#[derive(Clone)]
pub struct RpcTlsClient {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
    identity: bool,
}

impl fmt::Debug for RpcTlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcTlsClient")
            .field("server_name", &self.server_name)
            .field("client_cert", &self.identity)
            .finish_non_exhaustive()
    }
}

impl RpcTlsClient {
    /// Trusts servers whose certificate chains to a certificate of `ca`. With `identity`
    /// (a certificate chain, leaf first, and its private key) the client presents it when a
    /// server asks (mutual TLS).
    pub fn new(ca: TlsSource, identity: Option<(TlsSource, TlsSource)>) -> Result<Self, NetError> {
        let roots = ca.roots("CA certificate")?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("client protocol versions", e))?
            .with_root_certificates(roots);
        let config = match &identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(
                    chain.certs("client certificate chain")?,
                    key.key("client private key")?,
                )
                .map_err(|e| tls_err("client certificate", e))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: None,
            identity: identity.is_some(),
        })
    }

    /// [`RpcTlsClient::new`] from PEM in memory: the CA, and optionally the client's
    /// `(certificate chain, private key)`.
    pub fn from_pem(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<Self, NetError> {
        Self::new(
            TlsSource::Pem(ca_pem.to_vec()),
            identity
                .map(|(chain, key)| (TlsSource::Pem(chain.to_vec()), TlsSource::Pem(key.to_vec()))),
        )
    }

    /// Checks every server's certificate against `name` (a DNS name, or an IP address)
    /// instead of the IP address dialed: for certificates issued to a name shared by the
    /// servers, or to reach servers through addresses their certificates do not name.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, NetError> {
        let name = ServerName::try_from(name.to_owned()).map_err(|e| tls_err("server name", e))?;
        self.server_name = Some(name);
        Ok(self)
    }

    /// Whether the client presents a certificate when asked.
    pub fn has_client_cert(&self) -> bool {
        self.identity
    }

    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The name the certificate of the server at `addr` must carry.
    pub(crate) fn server_name_for(&self, addr: SocketAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }
}

/// Whether `e` (a read of a TLS stream) is a fatal alert by which the server refused the
/// handshake: it then processed nothing sent on the connection. With TLS 1.3 a client learns
/// that its certificate was refused only after its side of the handshake is done, from the
/// first read.
pub(crate) fn is_handshake_refusal(e: &std::io::Error) -> bool {
    let Some(rustls::Error::AlertReceived(alert)) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return false;
    };
    matches!(
        alert,
        AlertDescription::HandshakeFailure
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired
            | AlertDescription::ProtocolVersion
            | AlertDescription::InsufficientSecurity
            | AlertDescription::DecryptError
    )
}

/// Whether `bytes`, the first a plaintext client received, begin a TLS alert record (content
/// type 21, version 3.x, length 2): the server speaks TLS, refused our plaintext as a
/// malformed handshake and processed nothing. Never a frame of ours: a frame's fifth byte is
/// its protocol version (`PROTOCOL_VERSION`, 1), where an alert record has the 2 of its length.
pub(crate) fn looks_like_tls_alert(bytes: &[u8]) -> bool {
    const _: () = assert!(crate::frame::PROTOCOL_VERSION != 2);
    matches!(bytes, [0x15, 0x03, 0x00..=0x04, 0x00, 0x02, ..])
}
