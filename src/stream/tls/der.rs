//! Just enough DER to find a certificate's signature algorithm (RFC 5280 §4.1.1.2), which
//! decides the `tls-server-end-point` hash (RFC 5929 §4.1). A full X.509 parser would be a
//! new dependency for three fields.

/// Hashes that change the RFC 5929 default of SHA-256.
#[derive(Debug, PartialEq, Eq)]
pub enum Hash {
    Sha384,
    Sha512,
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const EXPLICIT_0: u8 = 0xa0;

// Object identifier contents (without tag and length).
const SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

/// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }.
pub fn signature_hash(cert: &[u8]) -> Option<Hash> {
    let (certificate, _) = element(cert, SEQUENCE)?;
    let (_tbs, rest) = element(certificate, SEQUENCE)?;
    let (algorithm, _) = element(rest, SEQUENCE)?;
    let (oid, params) = element(algorithm, OID)?;
    match oid {
        SHA384_RSA | ECDSA_SHA384 => Some(Hash::Sha384),
        SHA512_RSA | ECDSA_SHA512 => Some(Hash::Sha512),
        RSA_PSS => pss_hash(params),
        _ => None,
    }
}

/// RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] AlgorithmIdentifier DEFAULT sha1, … }
fn pss_hash(params: &[u8]) -> Option<Hash> {
    let (params, _) = element(params, SEQUENCE)?;
    let (hash_algorithm, _) = element(params, EXPLICIT_0)?;
    let (identifier, _) = element(hash_algorithm, SEQUENCE)?;
    match element(identifier, OID)?.0 {
        SHA384 => Some(Hash::Sha384),
        SHA512 => Some(Hash::Sha512),
        _ => None,
    }
}

/// Splits one TLV with the expected tag off `input`: (contents, remainder).
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if found != tag {
        return None;
    }
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    rest.split_at_checked(len)
}
