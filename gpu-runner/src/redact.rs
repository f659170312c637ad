//! What a tenant may read of ComfyUI's errors. ComfyUI's failures carry the GPU host's
//! Python traceback and absolute paths (its install, its virtualenv, the output folder);
//! those stay in the runner's log for the operator, and the tenant gets the rest.

use serde_json::Value;

/// What stands in for an absolute path.
pub const PATH: &str = "<path>";

/// `text` with every absolute path (`/opt/ComfyUI/output`, `C:\ComfyUI\output`) replaced by
/// [`PATH`]. A path starts at a `/` (or a drive letter and `:\`) at the start of the text or
/// after a space, quote or opening bracket, and runs to the next space or quote.
pub fn strip_paths(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let at_boundary = i == 0 || is_opening(chars[i - 1]);
        let len = if at_boundary {
            path_len(&chars[i..])
        } else {
            0
        };
        if len > 0 {
            out.push_str(PATH);
            i += len;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn is_opening(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\'' | '"' | '`' | '(' | '[' | '{' | '=' | ',')
}

fn is_path_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '\'' | '"' | '`' | ')' | ']' | '}' | ',' | ';')
}

/// The length of the absolute path `chars` starts with, or 0.
fn path_len(chars: &[char]) -> usize {
    let body_start = match chars {
        ['/', next, ..] if is_path_char(*next) && *next != '/' => 1,
        [drive, ':', '\\', next, ..] if drive.is_ascii_alphabetic() && is_path_char(*next) => 3,
        _ => return 0,
    };
    body_start
        + chars[body_start..]
            .iter()
            .take_while(|c| is_path_char(**c))
            .count()
}

/// `value` as a tenant may see it: every `traceback` dropped, absolute paths stripped from
/// every string.
pub fn for_tenant(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(strip_paths(text)),
        Value::Array(items) => Value::Array(items.iter().map(for_tenant).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(key, _)| key.as_str() != "traceback")
                .map(|(key, field)| (key.clone(), for_tenant(field)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absolute_paths_go_and_the_rest_stays() {
        assert_eq!(
            strip_paths(
                " full_output_folder: /home/comfy/ComfyUI\n output_dir: /home/comfy/ComfyUI/output\n"
            ),
            " full_output_folder: <path>\n output_dir: <path>\n"
        );
        assert_eq!(
            strip_paths("No such file: '/opt/models/x.safetensors' (see C:\\ComfyUI\\models)"),
            "No such file: '<path>' (see <path>)"
        );
        for kept in [
            "[enforce fail at alloc_cpu.cpp:127] err == 0. you tried to allocate 4398046511104 bytes",
            "ratio 16/9 and/or 1/2",
            "prefix ../outside escapes the output folder",
            "a / b",
        ] {
            assert_eq!(strip_paths(kept), kept);
        }
    }

    #[test]
    fn tracebacks_are_dropped_at_any_depth() {
        let rejected = json!({
            "error": {"message": "Prompt outputs failed validation"},
            "node_errors": {"2": {"errors": [{
                "details": "'9'",
                "extra_info": {"exception_type": "KeyError", "traceback": ["  File \"/opt/ComfyUI/execution.py\""]},
            }]}},
        });
        assert_eq!(
            for_tenant(&rejected),
            json!({
                "error": {"message": "Prompt outputs failed validation"},
                "node_errors": {"2": {"errors": [{
                    "details": "'9'",
                    "extra_info": {"exception_type": "KeyError"},
                }]}},
            })
        );
    }
}
