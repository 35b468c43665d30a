//! Certificates for TLS tests: a throw-away certificate authority and a
//! server certificate for `localhost` that it signed.

/// A test CA and a `localhost` server certificate, in PEM.
///
/// ```
/// let certificates = tidewater_testkit::TestCertificates::for_localhost();
/// assert!(certificates.ca.starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(certificates.server_key.contains("PRIVATE KEY"));
/// ```
#[derive(Clone, Debug)]
pub struct TestCertificates {
    /// The CA's certificate: what a client trusts.
    pub ca: String,
    /// The server's certificate, for `localhost`, signed by the CA.
    pub server_certificate: String,
    /// The server certificate's private key.
    pub server_key: String,
}

impl TestCertificates {
    /// A fresh CA and a certificate for `localhost`.
    ///
    /// # Panics
    /// If key generation fails (it does not, with rcgen's defaults).
    pub fn for_localhost() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).expect("empty names are valid");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("a key"))
            .expect("a CA");
        let key = KeyPair::generate().expect("a key");
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("localhost is a valid name")
            .signed_by(&key, &ca)
            .expect("a certificate");
        Self {
            ca: ca.pem(),
            server_certificate: server.pem(),
            server_key: key.serialize_pem(),
        }
    }
}
