//! Reading request bodies and query strings into typed commands.

use axum::body::Body;
use kappa_core::ServiceError;
use serde::de::DeserializeOwned;

use crate::aws_error::ApiError;

/// Largest whole request CreateFunction and UpdateFunctionCode accept (a 50 MB zip in base64 and
/// the rest of the JSON).
pub const MAX_CODE_REQUEST_BYTES: usize = 70_167_211;
/// Largest body of the other control-plane operations.
pub const MAX_CONTROL_REQUEST_BYTES: usize = 6 * 1024 * 1024;

/// Read at most `limit` bytes of body; larger bodies get AWS's 413.
pub async fn read_body(
    body: Body,
    limit: usize,
    operation: &'static str,
) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::BodyTooLarge { limit, operation })
}

/// Parse a JSON body into a command; an empty body is an empty object.
pub fn parse_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|err| {
        ApiError::Service(ServiceError::InvalidRequestContent(format!(
            "Could not parse request body into json: {err}"
        )))
    })
}

/// Read and parse a JSON body in one step.
pub async fn json_body<T: DeserializeOwned + Default>(
    body: Body,
    limit: usize,
    operation: &'static str,
) -> Result<T, ApiError> {
    let bytes = read_body(body, limit, operation).await?;
    parse_json(&bytes)
}

/// Every value of `key` in a raw query string, percent-decoded.
pub fn query_values(query: Option<&str>, key: &str) -> Vec<String> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == key).then(|| decode(v))
        })
        .collect()
}

/// The first value of `key` in a raw query string.
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query_values(query, key).into_iter().next()
}

/// An integer query parameter such as `MaxItems`; a non-integer is a validation error on
/// `member`.
pub fn query_integer(
    query: Option<&str>,
    key: &str,
    member: &str,
) -> Result<Option<i64>, ApiError> {
    query_value(query, key)
        .map(|text| {
            text.parse::<i64>().map_err(|_| {
                ApiError::Service(ServiceError::constraint(
                    &text,
                    member,
                    "Member must be an integer",
                ))
            })
        })
        .transpose()
}

fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_query_keys_are_all_read() {
        let q = Some("tagKeys=a&tagKeys=b%20c&other=1");
        assert_eq!(query_values(q, "tagKeys"), vec!["a", "b c"]);
        assert_eq!(query_value(q, "other").as_deref(), Some("1"));
        assert_eq!(query_value(q, "missing"), None);
        assert_eq!(
            query_value(Some("Qualifier=%24LATEST"), "Qualifier").as_deref(),
            Some("$LATEST")
        );
    }

    #[test]
    fn malformed_json_is_invalid_request_content() {
        #[derive(Debug, Default, serde::Deserialize)]
        struct Empty {}
        let err = parse_json::<Empty>(b"{not json").unwrap_err();
        assert!(matches!(
            err,
            ApiError::Service(ServiceError::InvalidRequestContent(_))
        ));
        assert!(parse_json::<Empty>(b"").is_ok());
    }
}
