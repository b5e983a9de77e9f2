//! DSSE (Dead Simple Signing Envelope) v1: envelope format and pre-authentication encoding.
//!
//! The signature covers `PAE(payloadType, payload)`, never the raw payload, so the type cannot
//! be swapped. Spec: <https://github.com/secure-systems-lab/dsse/blob/master/protocol.md>.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::ArtifactError;

/// The payload type of in-toto statements.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Id of the signing key in the signing keyring.
    pub keyid: String,
    /// Base64 ed25519 signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope, serialized exactly as the spec's JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the payload bytes.
    pub payload: String,
    /// Media type of the payload.
    pub payload_type: String,
    /// Signatures over the PAE.
    pub signatures: Vec<Signature>,
}

/// The DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths as ASCII decimal.
#[must_use]
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// The decoded payload bytes.
    ///
    /// # Errors
    /// [`ArtifactError::Signature`] if the payload is not valid base64.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, ArtifactError> {
        B64.decode(&self.payload)
            .map_err(|e| ArtifactError::Signature(format!("envelope payload is not base64: {e}")))
    }

    /// Parses an envelope from JSON.
    ///
    /// # Errors
    /// [`ArtifactError::Signature`] if it is not a DSSE envelope.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ArtifactError> {
        serde_json::from_slice(bytes)
            .map_err(|e| ArtifactError::Signature(format!("not a DSSE envelope: {e}")))
    }

    /// Serializes the envelope as pretty JSON.
    ///
    /// # Errors
    /// [`ArtifactError::Invalid`] if serialization fails.
    pub fn to_json(&self) -> Result<Vec<u8>, ArtifactError> {
        serde_json::to_vec_pretty(self).map_err(|e| ArtifactError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }
}
