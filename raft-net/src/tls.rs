//! Optional mutual TLS (rustls with the ring provider).
//!
//! Every node holds a certificate signed by the cluster's CA, and every node certificate
//! carries one cluster-wide DNS name (`server_name`) in its subject alternative names. The
//! listener requires a client certificate chaining to the CA; the dialer verifies the
//! listener's certificate against the CA and `server_name`. Only holders of the cluster's
//! certificates complete the TLS handshake; the Raft hello (node id, cluster id) then runs
//! inside the encrypted stream. The provider is passed explicitly: no process-wide default is
//! installed or relied on.

use std::fmt;
use std::sync::Arc;

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

fn tls_err(what: &str, e: impl fmt::Display) -> NetError {
    NetError::Tls(format!("{what}: {e}"))
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
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| tls_err("CA certificate", e))?;
            roots.add(cert).map_err(|e| tls_err("CA certificate", e))?;
        }
        if roots.is_empty() {
            return Err(NetError::Tls("no CA certificate in the CA PEM".into()));
        }
        let roots = Arc::new(roots);

        let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_err("certificate chain", e))?;
        if chain.is_empty() {
            return Err(NetError::Tls("no certificate in the chain PEM".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| tls_err("private key", e))?;

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
