//! The runtime `config` override layer (CONF-01..04, AMB-16). (Stub.)

use super::model::StreamConfig;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct OverrideError {
    pub path: String,
    pub message: String,
}

/// A validated partial stream configuration from a backend answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOverride {
    pub inputs: Option<Vec<String>>,
    pub protocols: std::collections::BTreeMap<String, bool>,
}

impl StreamOverride {
    pub fn from_json(value: &serde_json::Value) -> Result<StreamOverride, OverrideError> {
        let _ = value;
        Err(OverrideError { path: "config".into(), message: "not written yet".into() })
    }
    pub fn merge(&mut self, newer: StreamOverride) {
        if newer.inputs.is_some() {
            self.inputs = newer.inputs;
        }
        self.protocols.extend(newer.protocols);
    }
    pub fn apply(&self, base: &StreamConfig) -> StreamConfig {
        base.clone()
    }
    pub fn is_empty(&self) -> bool {
        self.inputs.is_none() && self.protocols.is_empty()
    }
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}
