//! Optional mutual TLS between nodes (rustls with the ring provider), and [`TlsSource`], where
//! the certificates and keys of the RPC's TLS ([`crate::rpc::RpcTlsServer`],
//! [`crate::rpc::RpcTlsClient`]) come from.
//!
//! Every node holds a certificate signed by the cluster's CA, and every node certificate
//! carries one cluster-wide DNS name (`server_name`) in its subject alternative names. The
//! listener requires a client certificate chaining to the CA; the dialer verifies the
//! listener's certificate against the CA and `server_name`. Only holders of the cluster's
//! certificates complete the TLS handshake; the Raft hello (node id, cluster id) then runs
//! inside the encrypted stream. The provider is passed explicitly: no process-wide default is
//! installed or relied on.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::NetError;

/// Mutual-TLS material for one node. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

pub(crate) fn tls_err(what: &str, e: impl fmt::Display) -> NetError {
    NetError::Tls(format!("{what}: {e}"))
}

/// The crypto provider every TLS configuration of this crate uses (ring), passed explicitly.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where certificates or a private key come from, for the RPC's TLS settings
/// ([`crate::rpc::RpcTlsServer`], [`crate::rpc::RpcTlsClient`]).
///
/// Read once, when the TLS setting is built; a file that changes later is not reread.
#[derive(Clone)]
pub enum TlsSource {
    /// PEM text in memory: one or more `CERTIFICATE` blocks (a chain: leaf first), or one
    /// private key block (PKCS#8, PKCS#1 or SEC1).
    Pem(Vec<u8>),
    /// A PEM file holding what [`TlsSource::Pem`] would.
    PemFile(PathBuf),
    /// DER in memory: one entry per certificate (a chain: leaf first), or exactly one entry
    /// holding a private key (PKCS#8, PKCS#1 or SEC1).
    Der(Vec<Vec<u8>>),
}

impl fmt::Debug for TlsSource {
    /// Names the source without its bytes (a key must not end up in a log).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSource::Pem(pem) => write!(f, "Pem({} bytes)", pem.len()),
            TlsSource::PemFile(path) => f.debug_tuple("PemFile").field(path).finish(),
            TlsSource::Der(items) => write!(f, "Der({} items)", items.len()),
        }
    }
}

impl TlsSource {
    /// The PEM text of this source (read from its file), or `None` for DER.
    fn pem(&self, what: &str) -> Result<Option<std::borrow::Cow<'_, [u8]>>, NetError> {
        match self {
            TlsSource::Pem(pem) => Ok(Some(pem.as_slice().into())),
            TlsSource::PemFile(path) => std::fs::read(path)
                .map(|bytes| Some(bytes.into()))
                .map_err(|e| tls_err(&format!("{what} file {}", path.display()), e)),
            TlsSource::Der(_) => Ok(None),
        }
    }

    /// Every certificate of this source, in order; at least one.
    pub(crate) fn certs(&self, what: &str) -> Result<Vec<CertificateDer<'static>>, NetError> {
        let certs = match (self, self.pem(what)?) {
            (_, Some(pem)) => CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_err(what, e))?,
            (TlsSource::Der(items), None) => items
                .iter()
                .map(|der| CertificateDer::from(der.clone()))
                .collect(),
            // `pem` returns None only for DER.
            (_, None) => Vec::new(),
        };
        if certs.is_empty() {
            return Err(NetError::Tls(format!("{what}: no certificate found")));
        }
        Ok(certs)
    }

    /// The one private key of this source.
    pub(crate) fn key(&self, what: &str) -> Result<PrivateKeyDer<'static>, NetError> {
        match (self, self.pem(what)?) {
            (_, Some(pem)) => PrivateKeyDer::from_pem_slice(&pem).map_err(|e| tls_err(what, e)),
            (TlsSource::Der(items), None) => match items.as_slice() {
                [der] => PrivateKeyDer::try_from(der.clone()).map_err(|e| tls_err(what, e)),
                _ => Err(NetError::Tls(format!(
                    "{what}: expected one DER private key, got {} items",
                    items.len()
                ))),
            },
            (_, None) => Err(NetError::Tls(format!("{what}: no private key found"))),
        }
    }

    /// A root store of every certificate of this source (the CAs to trust).
    pub(crate) fn roots(&self, what: &str) -> Result<Arc<RootCertStore>, NetError> {
        let mut roots = RootCertStore::empty();
        for cert in self.certs(what)? {
            roots.add(cert).map_err(|e| tls_err(what, e))?;
        }
        Ok(Arc::new(roots))
    }
}

impl TlsConfig {
    /// Builds the configuration from PEM: the cluster CA certificate(s), this node's
    /// certificate chain, its private key, and the cluster-wide name every node certificate
    /// carries.
    pub fn from_pem(
        ca_pem: &[u8],
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        server_name: &str,
    ) -> Result<Self, NetError> {
        let provider = provider();
        let roots = TlsSource::Pem(ca_pem.to_vec()).roots("CA certificate")?;
        let chain = TlsSource::Pem(cert_chain_pem.to_vec()).certs("certificate chain")?;
        let key = TlsSource::Pem(key_pem.to_vec()).key("private key")?;

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_err("client verifier", e))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("server protocol versions", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| tls_err("server certificate", e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("client protocol versions", e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_err("client certificate", e))?;
        let server_name =
            ServerName::try_from(server_name.to_owned()).map_err(|e| tls_err("server name", e))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    pub(crate) fn server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }
}
