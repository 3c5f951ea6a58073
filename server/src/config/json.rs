//! The management API's JSON shape of a stream (vendor schema `stream_config`, subset). (Stub.)

use super::model::StreamConfig;

/// A bad API body: what was wrong and where (a JSON pointer-like path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ApiBodyError {
    pub path: String,
    pub message: String,
}

/// Reads the body of `PUT /streamer/api/v3/streams/NAME`.
pub fn stream_from_api_json(name: &str, body: &[u8]) -> Result<StreamConfig, ApiBodyError> {
    let _ = body;
    Ok(StreamConfig { name: name.to_string(), inputs: vec!["fake://fake".into()], ..Default::default() })
}

/// The JSON the API answers for a stream.
pub fn stream_to_api_json(stream: &StreamConfig) -> serde_json::Value {
    serde_json::json!({ "name": stream.name })
}
