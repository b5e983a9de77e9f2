//! tidegate's local certificate authority and the zones' workload identities.
//!
//! The control plane keeps one certificate authority (an ECDSA P-256 key and a self-signed
//! certificate) in `<data-dir>/pki/` ([`Authority::load_or_create`]). It issues itself a server
//! certificate for the names it is reached by ([`Authority::issue_server`]), and each zone's agent
//! a short-lived workload certificate ([`Authority::issue_workload_for_csr`]) whose only identity
//! is one SPIFFE URI name, `spiffe://<trust-domain>/zone/<zone>` ([`ZoneIdentity`]). Whatever a
//! certificate signing request asks for (subject, names, usages) is ignored: the authority puts
//! in the zone it was asked to issue for, and only its public key comes from the request.
//!
//! Every function that depends on time takes it (seconds since the Unix epoch); nothing here
//! reads the clock. Reading a certificate into a [`ZoneIdentity`] says nothing about its chain:
//! call it on a certificate the TLS layer has already verified against the authority.

#![warn(missing_docs, unreachable_pub)]

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _,
    SanType, SerialNumber,
};

/// The trust domain of identities when none is configured.
pub const DEFAULT_TRUST_DOMAIN: &str = "tidegate.local";

/// The authority certificate's file in the PKI directory.
pub const CA_CERT_FILE: &str = "ca.pem";

/// The authority key's file in the PKI directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// How long a new authority certificate is valid: ten years.
const CA_VALIDITY_SECS: u64 = 10 * 365 * 24 * 3600;

/// How far back a new certificate's validity starts, to absorb clock skew between machines.
const BACKDATE_SECS: u64 = 300;

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file of the authority cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The authority's files are incomplete or do not parse.
    #[error("certificate authority in {dir}: {reason}")]
    Authority {
        /// The PKI directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A zone name that cannot be an identity.
    #[error("invalid zone name {0:?}: lower-case letters, digits and '-', 1 to 63, starting and ending with a letter or digit")]
    Zone(String),
    /// A trust domain that cannot be an identity.
    #[error("invalid trust domain {0:?}: lower-case letters, digits, '.', '-' and '_', 1 to 255")]
    TrustDomain(String),
    /// A certificate signing request that does not parse or whose signature does not verify.
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    /// A validity that ends before it starts, or does not fit a certificate.
    #[error("invalid validity: {0}")]
    Validity(String),
    /// A certificate cannot be made or read.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A certificate that names no zone of this trust domain.
    #[error("not a zone identity: {0}")]
    NotZoneIdentity(String),
}

fn cert_err(e: impl fmt::Display) -> PkiError {
    PkiError::Certificate(e.to_string())
}

/// Whether `zone` is a valid zone name (the fleet's rule: `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`).
pub fn valid_zone(zone: &str) -> bool {
    let b = zone.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(ok)
        && b.last().is_some_and(ok)
        && b.iter().all(|c| ok(c) || *c == b'-')
}

/// Whether `td` is a valid trust domain (SPIFFE: lower-case letters, digits, `.`, `-`, `_`).
pub fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.len() <= 255
        && td.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_')
        })
}

/// A zone's workload identity: `spiffe://<trust-domain>/zone/<zone>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZoneIdentity {
    trust_domain: String,
    zone: String,
}

impl ZoneIdentity {
    /// The identity of `zone` in `trust_domain`.
    ///
    /// # Errors
    /// An invalid zone name or trust domain.
    pub fn new(trust_domain: &str, zone: &str) -> Result<Self, PkiError> {
        if !valid_trust_domain(trust_domain) {
            return Err(PkiError::TrustDomain(trust_domain.to_owned()));
        }
        if !valid_zone(zone) {
            return Err(PkiError::Zone(zone.to_owned()));
        }
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            zone: zone.to_owned(),
        })
    }

    /// The zone.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The SPIFFE ID, `spiffe://<trust-domain>/zone/<zone>`.
    pub fn spiffe_id(&self) -> String {
        format!("spiffe://{}/zone/{}", self.trust_domain, self.zone)
    }

    /// Reads a SPIFFE ID of `trust_domain` naming a zone.
    ///
    /// # Errors
    /// Another scheme, another trust domain, another path shape, an invalid zone name.
    pub fn from_spiffe_id(id: &str, trust_domain: &str) -> Result<Self, PkiError> {
        let not = |why: &str| PkiError::NotZoneIdentity(format!("{id:?}: {why}"));
        let rest = id
            .strip_prefix("spiffe://")
            .ok_or_else(|| not("not a spiffe:// URI"))?;
        let (td, path) = rest
            .split_once('/')
            .ok_or_else(|| not("no path after the trust domain"))?;
        if td != trust_domain {
            return Err(not(&format!(
                "trust domain {td:?}, not this control plane's {trust_domain:?}"
            )));
        }
        let zone = path
            .strip_prefix("zone/")
            .ok_or_else(|| not("the path is not /zone/<zone>"))?;
        Self::new(td, zone).map_err(|e| not(&e.to_string()))
    }

    /// The zone identity a certificate (DER) carries: exactly one SPIFFE URI name, of
    /// `trust_domain`, naming a zone. The certificate's chain and validity are not checked here
    /// (the TLS layer verified them).
    ///
    /// # Errors
    /// A certificate that does not parse, has no SPIFFE URI name or several, or one of another
    /// trust domain or shape.
    pub fn from_certificate_der(der: &[u8], trust_domain: &str) -> Result<Self, PkiError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
            PkiError::NotZoneIdentity(format!("the certificate does not parse: {e}"))
        })?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| PkiError::NotZoneIdentity(format!("its names do not parse: {e}")))?
            .ok_or_else(|| PkiError::NotZoneIdentity("the certificate has no names".into()))?;
        let spiffe: Vec<&str> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .filter(|u| u.starts_with("spiffe://"))
            .collect();
        match spiffe.as_slice() {
            [one] => Self::from_spiffe_id(one, trust_domain),
            [] => Err(PkiError::NotZoneIdentity(
                "the certificate has no spiffe:// URI name".into(),
            )),
            _ => Err(PkiError::NotZoneIdentity(
                "the certificate has several spiffe:// URI names".into(),
            )),
        }
    }
}

impl fmt::Display for ZoneIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spiffe_id())
    }
}

/// When a certificate is valid: from `not_before` to `not_after`, seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First second of validity.
    pub not_before: u64,
    /// Last second of validity.
    pub not_after: u64,
}

impl Validity {
    /// Valid for `ttl_secs` from `now` (starting a few minutes before `now`, for clock skew).
    pub fn starting(now: u64, ttl_secs: u64) -> Self {
        Self {
            not_before: now.saturating_sub(BACKDATE_SECS),
            not_after: now.saturating_add(ttl_secs),
        }
    }

    /// An explicit validity.
    ///
    /// # Errors
    /// One that ends before it starts.
    pub fn between(not_before: u64, not_after: u64) -> Result<Self, PkiError> {
        if not_after <= not_before {
            return Err(PkiError::Validity(format!(
                "it ends ({not_after}) before it starts ({not_before})"
            )));
        }
        Ok(Self {
            not_before,
            not_after,
        })
    }

    fn apply(&self, params: &mut CertificateParams) -> Result<(), PkiError> {
        let at = |t: u64| {
            i64::try_from(t)
                .ok()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                .ok_or_else(|| PkiError::Validity(format!("{t} is out of range")))
        };
        params.not_before = at(self.not_before)?;
        params.not_after = at(self.not_after)?;
        Ok(())
    }
}

/// A certificate the authority issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate followed by the authority's, PEM (what a TLS peer presents).
    pub chain_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its validity.
    pub validity: Validity,
    /// The SPIFFE ID it carries (workload certificates).
    pub spiffe_id: Option<String>,
    /// Its serial number, lower-case hex.
    pub serial: String,
}

/// A certificate with the private key the authority generated for it.
pub struct IssuedWithKey {
    /// The certificate.
    pub issued: Issued,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl fmt::Debug for IssuedWithKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedWithKey")
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

/// A new key and a certificate signing request for it, made where the key is to stay (an agent
/// keeps the key in memory and sends only the request).
pub struct KeyAndCsr {
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate signing request, PEM.
    pub csr_pem: String,
}

impl fmt::Debug for KeyAndCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAndCsr")
            .field("csr_pem", &self.csr_pem)
            .finish_non_exhaustive()
    }
}

/// Generates an ECDSA P-256 key and a certificate signing request for `zone`'s workload
/// certificate (the request names the zone only as a hint: the authority decides).
///
/// # Errors
/// An invalid zone name; key generation failing.
pub fn new_key_and_csr(zone: &str) -> Result<KeyAndCsr, PkiError> {
    if !valid_zone(zone) {
        return Err(PkiError::Zone(zone.to_owned()));
    }
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("tidegate zone {zone}"));
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).map_err(cert_err)?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().map_err(cert_err)?,
    })
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| cert_err(format!("no randomness for a serial: {e}")))?;
    // Positive and never zero.
    b[0] = (b[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&b))
}

/// The local certificate authority.
pub struct Authority {
    trust_domain: String,
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

fn pem_to_der(pem_text: &str) -> Result<Vec<u8>, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| cert_err(format!("not a PEM certificate: {e}")))?;
    Ok(pem.contents)
}

impl Authority {
    /// A new authority for `trust_domain`, valid for ten years from `now`.
    ///
    /// # Errors
    /// An invalid trust domain; key generation failing.
    pub fn create(trust_domain: &str, now: u64) -> Result<Self, PkiError> {
        if !valid_trust_domain(trust_domain) {
            return Err(PkiError::TrustDomain(trust_domain.to_owned()));
        }
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "tidegate");
        dn.push(
            DnType::CommonName,
            format!("tidegate local certificate authority ({trust_domain})"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        Validity::starting(now, CA_VALIDITY_SECS).apply(&mut params)?;
        let cert = params.self_signed(&key).map_err(cert_err)?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().to_vec();
        let issuer = Issuer::new(params, key);
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// The authority whose certificate and key are these PEM texts.
    ///
    /// # Errors
    /// Either does not parse, or the key is not the certificate's.
    pub fn from_pem(cert_pem: &str, key_pem: &str, trust_domain: &str) -> Result<Self, PkiError> {
        if !valid_trust_domain(trust_domain) {
            return Err(PkiError::TrustDomain(trust_domain.to_owned()));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| cert_err(format!("the key: {e}")))?;
        let cert_der = pem_to_der(cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| cert_err(format!("the certificate: {e}")))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(cert_err("the key is not the certificate's"));
        }
        if !cert.is_ca() {
            return Err(cert_err("the certificate is not a certificate authority's"));
        }
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(cert_err)?;
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    /// The authority in `dir` (`ca.pem`, `ca.key`).
    ///
    /// # Errors
    /// Files missing, unreadable or not an authority.
    pub fn load(dir: &Path, trust_domain: &str) -> Result<Self, PkiError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })
        };
        let cert = read(CA_CERT_FILE)?;
        let key = read(CA_KEY_FILE)?;
        Self::from_pem(&cert, &key, trust_domain).map_err(|e| PkiError::Authority {
            dir: dir.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The authority in `dir`, created there (directory mode 0700, key mode 0600) when `dir`
    /// holds neither file; `true` when it was created. One file without the other is an error:
    /// nothing is overwritten.
    ///
    /// # Errors
    /// Files unreadable, half present or not an authority; the directory not writable.
    pub fn load_or_create(
        dir: &Path,
        trust_domain: &str,
        now: u64,
    ) -> Result<(Self, bool), PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => return Ok((Self::load(dir, trust_domain)?, false)),
            (false, false) => {}
            (c, _) => {
                return Err(PkiError::Authority {
                    dir: dir.to_owned(),
                    reason: format!(
                        "{} is there but {} is not; restore it, or remove both to start a new authority (every certificate it issued is then untrusted)",
                        if c { CA_CERT_FILE } else { CA_KEY_FILE },
                        if c { CA_KEY_FILE } else { CA_CERT_FILE }
                    ),
                })
            }
        }
        let authority = Self::create(trust_domain, now)?;
        create_private_dir(dir)?;
        write_new(
            &key_path,
            authority.issuer.key().serialize_pem().as_bytes(),
            0o600,
        )?;
        write_new(&cert_path, authority.cert_pem.as_bytes(), 0o644)?;
        Ok((authority, true))
    }

    /// The trust domain of the identities it issues.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Its certificate, PEM (what clients trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Its certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    fn finish(
        &self,
        cert: &rcgen::Certificate,
        validity: Validity,
        spiffe_id: Option<String>,
        params: &CertificateParams,
    ) -> Issued {
        let cert_pem = cert.pem();
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| s.to_bytes().iter().map(|b| format!("{b:02x}")).collect())
            .unwrap_or_default();
        Issued {
            serial,
            chain_pem: format!("{cert_pem}{}", self.cert_pem),
            cert_pem,
            cert_der: cert.der().to_vec(),
            validity,
            spiffe_id,
        }
    }

    /// A server certificate (server authentication) for `names`: each an IP address or a DNS
    /// name, with a new key.
    ///
    /// # Errors
    /// No names, or a name that is neither an IP address nor a DNS name.
    pub fn issue_server(
        &self,
        names: &[String],
        validity: Validity,
    ) -> Result<IssuedWithKey, PkiError> {
        if names.is_empty() {
            return Err(cert_err("a server certificate needs at least one name"));
        }
        let mut params = CertificateParams::default();
        let mut sans = Vec::with_capacity(names.len());
        for n in names {
            sans.push(match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    n.clone()
                        .try_into()
                        .map_err(|e| cert_err(format!("server name {n:?}: {e}")))?,
                ),
            });
        }
        params.subject_alt_names = sans;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "tidegate control plane");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        validity.apply(&mut params)?;
        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        Ok(IssuedWithKey {
            issued: self.finish(&cert, validity, None, &params),
            key_pem: key.serialize_pem(),
        })
    }

    fn workload_params(
        &self,
        zone: &str,
        validity: Validity,
    ) -> Result<(CertificateParams, String), PkiError> {
        let id = ZoneIdentity::new(&self.trust_domain, zone)?;
        let spiffe = id.spiffe_id();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(
            spiffe
                .clone()
                .try_into()
                .map_err(|e| cert_err(format!("{spiffe}: {e}")))?,
        )];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "tidegate");
        dn.push(DnType::CommonName, format!("zone {zone}"));
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        validity.apply(&mut params)?;
        Ok((params, spiffe))
    }

    /// A workload certificate (client authentication) for `zone` over the public key of a
    /// certificate signing request (PEM) whose signature verifies. Only the request's key is
    /// used; the identity is the zone given here.
    ///
    /// # Errors
    /// An invalid zone name, a request that does not parse or whose signature does not verify.
    pub fn issue_workload_for_csr(
        &self,
        csr_pem: &str,
        zone: &str,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let (params, spiffe) = self.workload_params(zone, validity)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Csr(e.to_string()))?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(cert_err)?;
        Ok(self.finish(&cert, validity, Some(spiffe), &params))
    }

    /// A workload certificate for `zone` with a new key (for machines bootstrapped offline).
    ///
    /// # Errors
    /// An invalid zone name; key generation failing.
    pub fn issue_workload(
        &self,
        zone: &str,
        validity: Validity,
    ) -> Result<IssuedWithKey, PkiError> {
        let (params, spiffe) = self.workload_params(zone, validity)?;
        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        Ok(IssuedWithKey {
            issued: self.finish(&cert, validity, Some(spiffe), &params),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The validity of a certificate (PEM or DER is detected), seconds since the Unix epoch.
///
/// # Errors
/// A certificate that does not parse.
pub fn certificate_validity(cert: &[u8]) -> Result<Validity, PkiError> {
    let der = if cert.starts_with(b"-----") {
        let text = std::str::from_utf8(cert).map_err(cert_err)?;
        pem_to_der(text)?
    } else {
        cert.to_vec()
    };
    let (_, c) = x509_parser::parse_x509_certificate(&der).map_err(cert_err)?;
    let secs = |t: i64| u64::try_from(t).unwrap_or(0);
    Ok(Validity {
        not_before: secs(c.validity().not_before.timestamp()),
        not_after: secs(c.validity().not_after.timestamp()),
    })
}

fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let io = |source| PkiError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Writes `bytes` to a new file `path` with `mode` (never over an existing one), synced.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn ca() -> Authority {
        Authority::create(DEFAULT_TRUST_DOMAIN, NOW).unwrap()
    }

    #[test]
    fn a_workload_certificate_carries_its_zone_and_nothing_the_request_asked_for() {
        let ca = ca();
        let req = new_key_and_csr("public-eu").unwrap();
        let issued = ca
            .issue_workload_for_csr(&req.csr_pem, "public-us", Validity::starting(NOW, 3600))
            .unwrap();
        let id =
            ZoneIdentity::from_certificate_der(&issued.cert_der, DEFAULT_TRUST_DOMAIN).unwrap();
        assert_eq!(id.zone(), "public-us", "the authority decides the zone");
        assert_eq!(id.spiffe_id(), "spiffe://tidegate.local/zone/public-us");
        assert_eq!(
            issued.spiffe_id.as_deref(),
            Some("spiffe://tidegate.local/zone/public-us")
        );
        assert!(issued.chain_pem.ends_with(ca.cert_pem()));
        // The certificate is over the request's key.
        let (_, cert) = x509_parser::parse_x509_certificate(&issued.cert_der).unwrap();
        let key = KeyPair::from_pem(&req.key_pem).unwrap();
        assert_eq!(
            cert.public_key().raw,
            key.subject_public_key_info().as_slice()
        );
    }

    #[test]
    fn expiry_is_what_was_asked() {
        let ca = ca();
        let issued = ca
            .issue_workload("edge-clinic", Validity::starting(NOW, 3600))
            .unwrap()
            .issued;
        let v = certificate_validity(&issued.cert_der).unwrap();
        assert_eq!(v.not_after, NOW + 3600);
        assert_eq!(v.not_before, NOW - BACKDATE_SECS);
        assert_eq!(certificate_validity(issued.cert_pem.as_bytes()).unwrap(), v);
        let past = Validity::between(NOW - 7200, NOW - 3600).unwrap();
        let old = ca.issue_workload("edge-clinic", past).unwrap().issued;
        assert_eq!(certificate_validity(&old.cert_der).unwrap(), past);
        assert!(Validity::between(NOW, NOW).is_err());
    }

    #[test]
    fn another_trust_domain_or_no_spiffe_name_is_no_zone_identity() {
        let other = Authority::create("other.example", NOW).unwrap();
        let foreign = other
            .issue_workload("public-eu", Validity::starting(NOW, 60))
            .unwrap()
            .issued;
        assert!(matches!(
            ZoneIdentity::from_certificate_der(&foreign.cert_der, DEFAULT_TRUST_DOMAIN),
            Err(PkiError::NotZoneIdentity(_))
        ));
        let server = ca()
            .issue_server(
                &["127.0.0.1".into(), "localhost".into()],
                Validity::starting(NOW, 60),
            )
            .unwrap()
            .issued;
        assert!(matches!(
            ZoneIdentity::from_certificate_der(&server.cert_der, DEFAULT_TRUST_DOMAIN),
            Err(PkiError::NotZoneIdentity(_))
        ));
        assert!(
            ZoneIdentity::from_certificate_der(b"not a certificate", DEFAULT_TRUST_DOMAIN).is_err()
        );
        for bad in [
            "spiffe://tidegate.local/zone/",
            "spiffe://tidegate.local/zone/Public",
            "spiffe://tidegate.local/team/public-eu",
            "spiffe://tidegate.local/zone/a/b",
            "https://tidegate.local/zone/public-eu",
            "spiffe://evil.local/zone/public-eu",
        ] {
            assert!(
                ZoneIdentity::from_spiffe_id(bad, DEFAULT_TRUST_DOMAIN).is_err(),
                "{bad}"
            );
        }
        let id = ZoneIdentity::new(DEFAULT_TRUST_DOMAIN, "public-eu").unwrap();
        assert_eq!(
            ZoneIdentity::from_spiffe_id(&id.spiffe_id(), DEFAULT_TRUST_DOMAIN).unwrap(),
            id
        );
        assert!(ZoneIdentity::new(DEFAULT_TRUST_DOMAIN, "-x").is_err());
        assert!(ZoneIdentity::new("Upper", "x").is_err());
    }

    #[test]
    fn a_request_whose_signature_does_not_verify_is_refused() {
        let req = new_key_and_csr("public-eu").unwrap();
        assert!(matches!(
            ca().issue_workload_for_csr(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                "public-eu",
                Validity::starting(NOW, 60)
            ),
            Err(PkiError::Csr(_))
        ));
        assert!(ca()
            .issue_workload_for_csr(&req.csr_pem, "Not A Zone", Validity::starting(NOW, 60))
            .is_err());
    }

    #[test]
    fn the_authority_is_created_once_with_a_private_key_file_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let (first, created) = Authority::load_or_create(&pki, DEFAULT_TRUST_DOMAIN, NOW).unwrap();
        assert!(created);
        let mode = std::fs::metadata(pki.join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(&pki).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let (again, created) =
            Authority::load_or_create(&pki, DEFAULT_TRUST_DOMAIN, NOW + 10).unwrap();
        assert!(!created);
        assert_eq!(first.cert_pem(), again.cert_pem());
        // A certificate the reloaded authority issues names the same issuer.
        let issued = again
            .issue_workload("public-eu", Validity::starting(NOW, 60))
            .unwrap()
            .issued;
        let (_, leaf) = x509_parser::parse_x509_certificate(&issued.cert_der).unwrap();
        let (_, root) = x509_parser::parse_x509_certificate(first.cert_der()).unwrap();
        assert_eq!(leaf.issuer(), root.subject());
        leaf.verify_signature(Some(root.public_key())).unwrap();
        // Half an authority is refused, never replaced.
        std::fs::remove_file(pki.join(CA_KEY_FILE)).unwrap();
        assert!(matches!(
            Authority::load_or_create(&pki, DEFAULT_TRUST_DOMAIN, NOW),
            Err(PkiError::Authority { .. })
        ));
    }

    #[test]
    fn another_key_is_not_the_authority() {
        let a = ca();
        let b = ca();
        let b_key = b.issuer.key().serialize_pem();
        assert!(Authority::from_pem(a.cert_pem(), &b_key, DEFAULT_TRUST_DOMAIN).is_err());
    }
}
