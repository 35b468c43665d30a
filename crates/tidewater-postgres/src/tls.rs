//! TLS: used only when asked for (`sslmode=require`), and then always with
//! certificate verification, against the system's roots plus an optional
//! CA file. Unlike libpq's `sslmode=prefer`, this crate never encrypts
//! without checking who it talks to: `prefer` and `disable` connect in
//! plain text.

use tokio::net::TcpStream;
use tokio_postgres::CancelToken;
#[cfg(not(feature = "rustls"))]
use tokio_postgres::NoTls;

use crate::error::PgError;

/// The TLS connector of one connection attempt.
#[cfg(feature = "rustls")]
pub(crate) type Connector =
    <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<TcpStream>>::TlsConnect;
/// Without the `rustls` feature no connector exists; `NoTls` stands in.
#[cfg(not(feature = "rustls"))]
pub(crate) type Connector = NoTls;

/// How a manager secures its connections.
#[derive(Clone)]
pub(crate) enum Tls {
    /// Plain text.
    None,
    /// TLS with verified certificates.
    #[cfg(feature = "rustls")]
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl Tls {
    /// The TLS setup for `sslmode`: verified TLS for `require`, none
    /// otherwise. `root_cert` adds a CA file (PEM) to the system's roots.
    pub(crate) fn for_mode(
        mode: tokio_postgres::config::SslMode,
        root_cert: Option<&std::path::Path>,
    ) -> Result<Self, PgError> {
        if mode != tokio_postgres::config::SslMode::Require {
            return Ok(Self::None);
        }
        #[cfg(feature = "rustls")]
        return rustls_setup(root_cert).map(Self::Rustls);
        #[cfg(not(feature = "rustls"))]
        {
            let _ = root_cert;
            Err(PgError::Config(
                "sslmode=require needs TLS: build tidewater-postgres with the `rustls` feature"
                    .into(),
            ))
        }
    }

    /// A connector for one attempt on `hostname`, or `None` for plain text.
    pub(crate) fn connector(&self, hostname: Option<&str>) -> Result<Option<Connector>, PgError> {
        match self {
            Self::None => {
                let _ = hostname;
                Ok(None)
            }
            #[cfg(feature = "rustls")]
            Self::Rustls(make) => {
                use tokio_postgres::tls::MakeTlsConnect;
                let name = hostname
                    .ok_or_else(|| PgError::Config("TLS needs a host name to verify".into()))?;
                let connector =
                    MakeTlsConnect::<TcpStream>::make_tls_connect(&mut make.clone(), name)
                        .map_err(|error| {
                            PgError::Config(format!("invalid host name for TLS: {error}"))
                        })?;
                Ok(Some(connector))
            }
        }
    }

    /// Sends a cancel request over `socket`, with TLS when the session has it.
    pub(crate) async fn cancel(
        &self,
        token: &CancelToken,
        socket: TcpStream,
        hostname: Option<&str>,
    ) -> Result<(), PgError> {
        match self.connector(hostname)? {
            None => Ok(token
                .cancel_query_raw(socket, tokio_postgres::NoTls)
                .await?),
            Some(connector) => Ok(token.cancel_query_raw(socket, connector).await?),
        }
    }
}

#[cfg(feature = "rustls")]
fn rustls_setup(
    root_cert: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgError> {
    use std::sync::Arc;

    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = root_cert {
        let pem = std::fs::read(path).map_err(|error| {
            PgError::Config(format!(
                "cannot read sslrootcert {}: {error}",
                path.display()
            ))
        })?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|error| {
                PgError::Config(format!("bad certificate in {}: {error}", path.display()))
            })?;
            roots.add(cert).map_err(|error| {
                PgError::Config(format!("bad certificate in {}: {error}", path.display()))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| PgError::Config(format!("TLS setup: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Whether a connect error is a TLS failure (a certificate that does not
/// verify, a server without TLS): retrying will not help.
pub(crate) fn is_tls_failure(error: &tokio_postgres::Error) -> bool {
    let text = error.to_string();
    text.starts_with("error performing TLS handshake")
        || text.contains("server does not support TLS")
}
