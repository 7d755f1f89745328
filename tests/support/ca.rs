//! A certificate authority for tests, and serverAuth certificates it signs for domains.

/// The authority: its signing key and its certificate as PEM.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The authority's certificate, for `ca_files` and peers' trust stores.
    pub pem: String,
}

impl TestCa {
    /// A new authority with a fresh key.
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Starling test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa { issuer: rcgen::Issuer::new(params, key), pem: cert.pem() }
    }

    /// Writes `<domain>.crt` and `<domain>.key` (a serverAuth certificate) into `dir`.
    pub fn issue(&self, domain: &str, dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.distinguished_name.push(rcgen::DnType::CommonName, domain);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{domain}.crt")), dir.join(format!("{domain}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}
