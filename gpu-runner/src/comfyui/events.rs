//! ComfyUI WebSocket text messages (`{"type", "data"}`), as the runner reads them.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// Queue size broadcast; `sid` only in the first message after connect.
    Status {
        queue_remaining: Option<u64>,
        sid: Option<String>,
    },
    ExecutionStart {
        prompt_id: String,
    },
    /// Nodes served from cache (they will not get `executing`).
    ExecutionCached {
        prompt_id: String,
        nodes: Vec<String>,
    },
    /// A node starts; `node: None` is the end of the prompt (after history is written).
    /// `prompt_id` is absent in the one `executing` replayed on reconnect.
    Executing {
        prompt_id: Option<String>,
        node: Option<String>,
    },
    Progress {
        prompt_id: Option<String>,
        node: Option<String>,
        value: f64,
        max: f64,
    },
    Executed {
        prompt_id: String,
        node: String,
    },
    ExecutionSuccess {
        prompt_id: String,
    },
    ExecutionError {
        prompt_id: String,
        data: Value,
    },
    ExecutionInterrupted {
        prompt_id: String,
        data: Value,
    },
    /// Everything else (`progress_state`, `feature_flags`, unknown types).
    Other {
        kind: String,
    },
}

fn s(data: &Value, key: &str) -> Option<String> {
    data.get(key).and_then(Value::as_str).map(str::to_string)
}

impl WsEvent {
    pub fn parse(text: &str) -> WsEvent {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return WsEvent::Other {
                kind: "unparsable".into(),
            };
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        let data = v.get("data").cloned().unwrap_or(Value::Null);
        let pid = || s(&data, "prompt_id").unwrap_or_default();
        match kind {
            "status" => WsEvent::Status {
                queue_remaining: data
                    .pointer("/status/exec_info/queue_remaining")
                    .and_then(Value::as_u64),
                sid: s(&data, "sid"),
            },
            "execution_start" => WsEvent::ExecutionStart { prompt_id: pid() },
            "execution_cached" => WsEvent::ExecutionCached {
                prompt_id: pid(),
                nodes: data
                    .get("nodes")
                    .and_then(Value::as_array)
                    .map(|n| {
                        n.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            "executing" => WsEvent::Executing {
                prompt_id: s(&data, "prompt_id"),
                node: s(&data, "node"),
            },
            "progress" => WsEvent::Progress {
                prompt_id: s(&data, "prompt_id"),
                node: s(&data, "node"),
                value: data.get("value").and_then(Value::as_f64).unwrap_or(0.0),
                max: data.get("max").and_then(Value::as_f64).unwrap_or(0.0),
            },
            "executed" => WsEvent::Executed {
                prompt_id: pid(),
                node: s(&data, "node").unwrap_or_default(),
            },
            "execution_success" => WsEvent::ExecutionSuccess { prompt_id: pid() },
            "execution_error" => WsEvent::ExecutionError {
                prompt_id: pid(),
                data,
            },
            "execution_interrupted" => WsEvent::ExecutionInterrupted {
                prompt_id: pid(),
                data,
            },
            other => WsEvent::Other {
                kind: other.to_string(),
            },
        }
    }

    /// The prompt this event is about, when it names one.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            WsEvent::ExecutionStart { prompt_id }
            | WsEvent::ExecutionCached { prompt_id, .. }
            | WsEvent::Executed { prompt_id, .. }
            | WsEvent::ExecutionSuccess { prompt_id }
            | WsEvent::ExecutionError { prompt_id, .. }
            | WsEvent::ExecutionInterrupted { prompt_id, .. } => Some(prompt_id),
            WsEvent::Executing { prompt_id, .. } | WsEvent::Progress { prompt_id, .. } => {
                prompt_id.as_deref()
            }
            WsEvent::Status { .. } | WsEvent::Other { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_marker_and_reconnect_replay() {
        let end = WsEvent::parse(r#"{"type":"executing","data":{"node":null,"prompt_id":"p"}}"#);
        assert_eq!(
            end,
            WsEvent::Executing {
                prompt_id: Some("p".into()),
                node: None
            }
        );
        // After a reconnect the server replays one `executing` without a prompt id.
        let replay = WsEvent::parse(r#"{"type":"executing","data":{"node":"3"}}"#);
        assert_eq!(replay.prompt_id(), None);
        let hello = WsEvent::parse(
            r#"{"type":"status","data":{"status":{"exec_info":{"queue_remaining":0}},"sid":"s1"}}"#,
        );
        assert_eq!(
            hello,
            WsEvent::Status {
                queue_remaining: Some(0),
                sid: Some("s1".into())
            }
        );
        assert_eq!(
            WsEvent::parse("not json"),
            WsEvent::Other {
                kind: "unparsable".into()
            }
        );
    }
}
