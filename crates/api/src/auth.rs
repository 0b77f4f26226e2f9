//! Who is calling. The seam where SigV4 verification will go.
//!
//! Today every request is accepted: signed requests from any credentials and unsigned ones alike.
//! The caller's access key id is read from the `Authorization` header for the logs.

use axum::http::HeaderMap;

/// The identity of a caller, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub access_key_id: Option<String>,
}

/// Decides whether a request may proceed.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(&self, headers: &HeaderMap) -> Caller;
}

/// Accepts every request; reads the access key id of SigV4-signed ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAnyCredentials;

impl Authenticator for AcceptAnyCredentials {
    fn authenticate(&self, headers: &HeaderMap) -> Caller {
        let access_key_id = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(sigv4_access_key_id);
        Caller { access_key_id }
    }
}

/// The access key id of `AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request, …`.
fn sigv4_access_key_id(authorization: &str) -> Option<String> {
    let rest = authorization.strip_prefix("AWS4-HMAC-SHA256")?;
    let credential = rest
        .split(',')
        .find_map(|part| part.trim().strip_prefix("Credential="))?;
    credential.split('/').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_access_key_of_a_signed_request() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(sigv4_access_key_id(header).as_deref(), Some("AKIDEXAMPLE"));
        assert_eq!(sigv4_access_key_id("Bearer x"), None);
    }
}
