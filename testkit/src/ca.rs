//! The test certificate authority: a self-signed CA that issues leaf certificates, all as
//! PEM, for the TLS tests of the REST API, the admin API and the Raft peer transport.

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::{Path, PathBuf};

/// A CA whose key stays in memory; certificates it issues are PEM strings or files.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its private key, as PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA with the common name `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca {
            cert: p.self_signed(&key).expect("self-signed CA"),
            key,
        }
    }

    /// The CA's certificate, as PEM (what peers put in their trust store).
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA's certificate to `path`.
    pub fn write_cert(&self, path: &Path) {
        std::fs::write(path, self.cert_pem()).expect("write CA certificate");
    }

    /// A certificate for the subject alternative names `sans` (IP addresses or DNS names),
    /// with the common name `name` when given (rcgen's placeholder otherwise).
    pub fn issue(&self, name: Option<&str>, sans: &[&str]) -> Leaf {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("certificate parameters");
        if let Some(name) = name {
            p.distinguished_name.push(DnType::CommonName, name);
        }
        self.sign(p)
    }

    /// A client certificate (extended key usage clientAuth, no names) with the common name
    /// `name`.
    pub fn issue_client(&self, name: &str) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("certificate parameters");
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p)
    }

    /// Writes `<name>.pem` and `<name>.key` into `dir`: a certificate named `name` for the
    /// IP address 127.0.0.1, which serves as server and as client certificate on loopback.
    pub fn issue_loopback_files(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        self.issue(Some(name), &["127.0.0.1"]).write(dir, name)
    }

    fn sign(&self, p: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    /// Writes `<name>.pem` (the certificate) and `<name>.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&c, &self.cert_pem).expect("write certificate");
        std::fs::write(&k, &self.key_pem).expect("write key");
        (c, k)
    }
}
