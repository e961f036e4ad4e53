//! The cluster's certificate authority and the members' certificates.
//!
//! Every key is ECDSA P-256. A joining member generates its own key and sends only the
//! public half ([`MemberKey`]); the CA signs a certificate for it with the SANs the join
//! server decides (the member's address, loopback and `localhost`, so that the same
//! certificate serves Raft mutual TLS and the local admin API). The CA's pin in a join token
//! is the SHA-256 of its DER certificate ([`ca_pin`]).

use super::JoinError;
use chrono::Datelike;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SignatureAlgorithm,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// How long a member certificate is valid. Renewal is not automated yet; ten years keeps a
/// cluster from stopping on a forgotten date while that is so.
const MEMBER_YEARS: i32 = 10;
/// How long the CA is valid: beyond every certificate it signs.
const CA_YEARS: i32 = 20;

fn pki(e: impl std::fmt::Display) -> JoinError {
    JoinError::Pki(e.to_string())
}

/// A P-256 public key as the raw uncompressed point, which is what `rcgen` puts into a
/// certificate's SubjectPublicKeyInfo for that algorithm.
pub struct MemberKey {
    raw: Vec<u8>,
}

impl MemberKey {
    /// From the raw point a joiner sent; refuses anything that is not an uncompressed P-256
    /// point (65 bytes, tag 4) so that a malformed key never reaches a certificate.
    pub fn from_raw(raw: Vec<u8>) -> Result<MemberKey, JoinError> {
        if raw.len() != 65 || raw[0] != 4 {
            return Err(JoinError::Pki(
                "the public key is not an uncompressed P-256 point".into(),
            ));
        }
        Ok(MemberKey { raw })
    }
}

impl PublicKeyData for MemberKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }
    fn algorithm(&self) -> &SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// A new private key for a member or the CA.
pub fn new_key() -> Result<KeyPair, JoinError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(pki)
}

/// The SHA-256 of the first certificate of a PEM text, in lower-case hex.
pub fn ca_pin(ca_pem: &str) -> Result<String, JoinError> {
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(pki)?;
    Ok(sha256_hex(der.as_ref()))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ca_params(scope: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("pgwarden CA ({scope})"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn validity(p: &mut CertificateParams, years: i32) {
    let now = chrono::Utc::now();
    // A day back: hosts whose clocks lag a little still accept a fresh certificate.
    let from = now - chrono::Duration::days(1);
    p.not_before = rcgen::date_time_ymd(from.year(), from.month() as u8, from.day() as u8);
    p.not_after = rcgen::date_time_ymd(now.year() + years, now.month() as u8, 1);
}

/// The cluster's CA: its certificate (PEM) and key, and the issuer `rcgen` signs with.
pub struct Ca {
    pub cert_pem: String,
    key: KeyPair,
    issuer: Certificate,
}

impl Ca {
    /// A new CA for `scope`.
    pub fn create(scope: &str) -> Result<Ca, JoinError> {
        let key = new_key()?;
        let mut p = ca_params(scope);
        validity(&mut p, CA_YEARS);
        let issuer = p.self_signed(&key).map_err(pki)?;
        Ok(Ca {
            cert_pem: issuer.pem(),
            key,
            issuer,
        })
    }

    /// The CA of `scope` from its files' contents. `rcgen` signs with the issuer's name and
    /// key only (the authority key identifier comes from the key), so the issuer is rebuilt
    /// from the same name and key; the stored certificate stays the one members trust.
    pub fn load(scope: &str, cert_pem: &str, key_pem: &str) -> Result<Ca, JoinError> {
        let key = KeyPair::from_pem(key_pem).map_err(pki)?;
        let issuer = ca_params(scope).self_signed(&key).map_err(pki)?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            key,
            issuer,
        })
    }

    /// The CA's private key (PEM), for its file.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A member certificate for `name`, valid for `hosts` (IP addresses become IP SANs,
    /// other names DNS SANs), usable as server and client, for the public key `key`.
    pub fn issue(&self, name: &str, hosts: &[String], key: &impl PublicKeyData) -> Result<String, JoinError> {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        let mut sans = Vec::new();
        for h in hosts {
            let san = match h.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(h.clone().try_into().map_err(pki)?),
            };
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut p, MEMBER_YEARS);
        let cert = p.signed_by(key, &self.issuer, &self.key).map_err(pki)?;
        Ok(cert.pem())
    }
}

/// The SANs of a member's certificate: its address, and loopback for its own admin API.
pub fn member_hosts(address: &str) -> Vec<String> {
    vec![address.to_string(), "127.0.0.1".into(), "localhost".into()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    /// A certificate the CA issues verifies against the CA as rustls sees it, also after
    /// the CA was reloaded from its files (the issuer is rebuilt, not stored).
    #[test]
    fn issued_certificates_chain_to_a_reloaded_ca() {
        let ca = Ca::create("s1").unwrap();
        let again = Ca::load("s1", &ca.cert_pem, &ca.key_pem()).unwrap();
        let member = new_key().unwrap();
        let raw = MemberKey::from_raw(member.public_key_raw().to_vec()).unwrap();
        let pem = again.issue("n1", &member_hosts("10.1.2.3"), &raw).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .unwrap();
        let leaf = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let name = rustls::pki_types::ServerName::try_from("10.1.2.3").unwrap();
        v.verify_server_cert(&leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .expect("the member certificate verifies against the CA");
        assert_eq!(ca_pin(&ca.cert_pem).unwrap().len(), 64);
        assert!(MemberKey::from_raw(vec![4; 10]).is_err());
    }
}
