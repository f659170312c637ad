//! What a call may cost before it runs (the hold), and what it did cost after (the charge),
//! from the model's prices in credits per million tokens.

use serde_json::{Map, Value as Json};

use super::{errors::invalid_param, models::Model, providers::Usage};
use crate::error::ApiResult;

/// Tokens a chat format spends around each message (role markers, separators, a name
/// marker) beyond its text: OpenAI's published accounting is 3 or 4, other templates a few
/// more.
const PER_MESSAGE_TOKENS: i64 = 8;
/// Tokens that open the reply and frame the request.
const PER_REQUEST_TOKENS: i64 = 8;
/// Tokens a provider wraps around tool definitions or a response schema beyond their JSON.
const PER_DEFINITION_TOKENS: i64 = 64;
/// Completions one request may ask for (`n`), as OpenAI allows.
pub const MAX_CHOICES: i64 = 128;
/// Inputs one embeddings request may carry, as OpenAI allows.
pub const MAX_EMBEDDING_INPUTS: usize = 2_048;
/// Tokens an embedding model may add around each input (start and end markers).
const PER_INPUT_TOKENS: i64 = 8;

/// The worst case of one call: the prompt's and the completion's tokens at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorstCase {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

impl WorstCase {
    /// Bounds the request's tokens for `model`; 400 when it asks for more output than the
    /// model gives or for an impossible number of choices.
    pub fn of(body: &Map<String, Json>, model: &Model) -> ApiResult<Self> {
        let choices = match body.get("n") {
            None | Some(Json::Null) => 1,
            Some(n) => n
                .as_i64()
                .filter(|n| (1..=MAX_CHOICES).contains(n))
                .ok_or_else(|| {
                    invalid_param(
                        "n",
                        format!("n must be a whole number from 1 to {MAX_CHOICES}"),
                    )
                })?,
        };
        let asked = ["max_completion_tokens", "max_tokens"]
            .into_iter()
            .find_map(|field| match body.get(field) {
                None | Some(Json::Null) => None,
                Some(value) => Some((field, value)),
            });
        let per_choice = match asked {
            None => model.max_output_tokens,
            Some((field, value)) => value
                .as_i64()
                .filter(|tokens| (1..=model.max_output_tokens).contains(tokens))
                .ok_or_else(|| {
                    invalid_param(
                        field,
                        format!(
                            "{field} must be a whole number from 1 to {}, the most this model writes",
                            model.max_output_tokens
                        ),
                    )
                })?,
        };
        Ok(WorstCase {
            prompt_tokens: prompt_bound(body, model.context_window),
            completion_tokens: per_choice * choices,
        })
    }

    /// Bounds an embeddings request's tokens: each input's bytes (a text) or length (token
    /// ids), plus its markers, at most the context window; embeddings write none. 400 naming
    /// `input` unless it is a text, token ids, or a non-empty list of either.
    pub fn of_embeddings(body: &Map<String, Json>, model: &Model) -> ApiResult<Self> {
        let inputs = embedding_inputs(body.get("input")).ok_or_else(|| {
            invalid_param(
                "input",
                format!(
                    "input must be a non-empty text, a list of token ids, or a list of 1 to \
                     {MAX_EMBEDDING_INPUTS} non-empty texts or lists of token ids"
                ),
            )
        })?;
        let prompt_tokens = inputs.into_iter().fold(0i64, |sum, tokens| {
            sum.saturating_add(
                tokens
                    .saturating_add(PER_INPUT_TOKENS)
                    .min(model.context_window),
            )
        });
        Ok(WorstCase {
            prompt_tokens,
            completion_tokens: 0,
        })
    }

    /// The hold: the worst case at the model's prices, cached prompt tokens assumed to cost
    /// whichever prompt price is higher.
    pub fn credits(&self, model: &Model) -> i64 {
        let prompt_price = model.input_price.max(model.cached_input_price);
        per_million(
            i128::from(self.prompt_tokens) * i128::from(prompt_price)
                + i128::from(self.completion_tokens) * i128::from(model.output_price),
        )
    }

    /// What the counters count for a call whose provider reported no usage: the bound, as
    /// its charge is the hold.
    pub fn tokens(&self) -> i64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// What a call cost by the provider's own count: uncached prompt tokens, cached ones and
/// completion tokens each at their price, rounded up to a whole credit.
pub fn cost(usage: &Usage, model: &Model) -> i64 {
    let cached = usage.cached_tokens.clamp(0, usage.prompt_tokens);
    per_million(
        i128::from(usage.prompt_tokens - cached) * i128::from(model.input_price)
            + i128::from(cached) * i128::from(model.cached_input_price)
            + i128::from(usage.completion_tokens) * i128::from(model.output_price),
    )
}

/// Credits for an amount priced per million tokens, rounded up; saturates far above any
/// amount the credits module accepts, so an absurd figure is refused there, not wrapped.
fn per_million(micro_credits: i128) -> i64 {
    let credits = (micro_credits.max(0) + 999_999) / 1_000_000;
    i64::try_from(credits).unwrap_or(i64::MAX)
}

/// The bound of each input of an embeddings request (its bytes, or its count of token
/// ids), or `None` when `input` has none of OpenAI's four shapes.
fn embedding_inputs(input: Option<&Json>) -> Option<Vec<i64>> {
    let length = |count: usize| i64::try_from(count).unwrap_or(i64::MAX);
    let text = |value: &Json| value.as_str().filter(|text| !text.is_empty()).map(str::len);
    let token_ids = |value: &Json| {
        value
            .as_array()
            .filter(|ids| !ids.is_empty() && ids.iter().all(|id| id.as_u64().is_some()))
            .map(Vec::len)
    };
    match input? {
        Json::String(_) => Some(vec![length(text(input?)?)]),
        Json::Array(items) if items.is_empty() || items.len() > MAX_EMBEDDING_INPUTS => None,
        Json::Array(items) if items[0].is_string() => {
            items.iter().map(|item| text(item).map(length)).collect()
        }
        Json::Array(items) if items[0].is_array() => items
            .iter()
            .map(|item| token_ids(item).map(length))
            .collect(),
        ids => Some(vec![length(token_ids(ids)?)]),
    }
}

/// An upper bound on the prompt's tokens.
///
/// Byte-level BPE tokenizers (OpenAI's tiktoken encodings, Llama 3's, and SentencePiece
/// models with byte fallback) start from the text's UTF-8 bytes and only ever merge
/// neighbours, so no text becomes more tokens than it has bytes. The bound therefore adds
/// up the bytes of every text the provider renders into the prompt — each string in the
/// messages (contents, names, tool calls and their arguments) and the JSON of the tool
/// definitions and response format — plus a few tokens per message and per definition for
/// the chat format's own markers. A part that is not text (an image, audio, a file) costs
/// tokens its bytes do not bound; the context window bounds any prompt, so a request with
/// one holds the whole window, as does any prompt whose bound passes it.
pub fn prompt_bound(body: &Map<String, Json>, context_window: i64) -> i64 {
    let mut tokens = PER_REQUEST_TOKENS;
    let mut media = false;
    if let Some(Json::Array(messages)) = body.get("messages") {
        for message in messages {
            tokens += PER_MESSAGE_TOKENS;
            tokens = tokens.saturating_add(text_bytes(message, &mut media));
        }
    }
    for field in ["tools", "functions", "tool_choice", "response_format"] {
        if let Some(definition) = body.get(field).filter(|value| !value.is_null()) {
            let bytes = i64::try_from(definition.to_string().len()).unwrap_or(i64::MAX);
            tokens = tokens.saturating_add(bytes.saturating_add(PER_DEFINITION_TOKENS));
        }
    }
    if media {
        context_window
    } else {
        tokens.min(context_window)
    }
}

/// The UTF-8 bytes of every text inside `value`; sets `media` on a content part that is not
/// text.
fn text_bytes(value: &Json, media: &mut bool) -> i64 {
    match value {
        Json::String(text) => i64::try_from(text.len()).unwrap_or(i64::MAX),
        Json::Array(items) => items.iter().fold(0i64, |sum, item| {
            sum.saturating_add(text_bytes(item, media))
        }),
        Json::Object(fields) => {
            if let Some(Json::String(kind)) = fields.get("type")
                && !matches!(kind.as_str(), "text" | "refusal" | "function")
            {
                *media = true;
            }
            fields.values().fold(0i64, |sum, item| {
                sum.saturating_add(text_bytes(item, media))
            })
        }
        Json::Number(number) => i64::try_from(number.to_string().len()).unwrap_or(i64::MAX),
        Json::Bool(_) | Json::Null => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn model() -> Model {
        Model {
            id: "m".into(),
            name: "acme-chat".into(),
            tenant_id: None,
            aliases: Vec::new(),
            deployments: Vec::new(),
            context_window: 128_000,
            max_output_tokens: 4_096,
            input_price: 2_500_000,
            output_price: 10_000_000,
            cached_input_price: 1_250_000,
            plans: None,
            created_at: 0,
        }
    }

    fn body(value: Json) -> Map<String, Json> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn an_embeddings_bound_is_each_inputs_bytes_or_ids_plus_markers_within_the_window() {
        let bound = |input: Json| {
            WorstCase::of_embeddings(&body(json!({ "input": input })), &model())
                .map(|worst| (worst.prompt_tokens, worst.completion_tokens))
        };
        assert_eq!(bound(json!("héllo")).unwrap(), (6 + 8, 0));
        assert_eq!(bound(json!(["ab", "cde"])).unwrap(), (2 + 8 + 3 + 8, 0));
        assert_eq!(bound(json!([1, 2, 3])).unwrap(), (3 + 8, 0));
        assert_eq!(bound(json!([[1], [2, 3]])).unwrap(), (1 + 8 + 2 + 8, 0));
        let long = "x".repeat(200_000);
        assert_eq!(bound(json!([long, "a"])).unwrap(), (128_000 + 1 + 8, 0));
        for refused in [
            json!(""),
            json!([]),
            json!(["a", ""]),
            json!(["a", 1]),
            json!([1, -2]),
            json!([[1], []]),
            json!([[1], "a"]),
            json!({"text": "a"}),
            json!(7),
            Json::Null,
            json!(vec!["a"; MAX_EMBEDDING_INPUTS + 1]),
        ] {
            let error = bound(refused.clone()).unwrap_err();
            assert_eq!(error.status, http::StatusCode::BAD_REQUEST, "{refused}");
        }
        assert!(WorstCase::of_embeddings(&body(json!({})), &model()).is_err());
    }

    #[test]
    fn the_prompt_bound_is_the_texts_bytes_plus_the_formats_markers() {
        let request = body(json!({
            "model": "acme-chat",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "héllo"},
            ],
        }));
        // "system" 6 + "Be brief." 9, "user" 4 + "héllo" 6 (é is two bytes).
        assert_eq!(prompt_bound(&request, 128_000), 8 + 2 * 8 + 6 + 9 + 4 + 6);
    }

    #[test]
    fn the_bound_is_never_below_what_a_bpe_tokenizer_can_make_of_the_text() {
        // Every byte its own token is the most any byte-level BPE produces.
        let text = "日本語のテキスト and emoji 🎉 mixed";
        let request = body(json!({"messages": [{"role": "user", "content": text}]}));
        assert!(prompt_bound(&request, 1_000_000) >= text.len() as i64 + 4);
    }

    #[test]
    fn tools_and_tool_calls_count_toward_the_prompt() {
        let plain = body(json!({"messages": [{"role": "user", "content": "weather?"}]}));
        let tools = json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
        let mut with_tools = plain.clone();
        with_tools.insert("tools".into(), tools.clone());
        assert_eq!(
            prompt_bound(&with_tools, 1_000_000),
            prompt_bound(&plain, 1_000_000) + tools.to_string().len() as i64 + 64
        );
    }

    #[test]
    fn an_image_or_a_long_prompt_holds_the_whole_context_window() {
        let image = body(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]}]}));
        assert_eq!(prompt_bound(&image, 128_000), 128_000);
        let long = body(json!({"messages": [{"role": "user", "content": "x".repeat(5_000)}]}));
        assert_eq!(prompt_bound(&long, 1_000), 1_000);
    }

    #[test]
    fn the_completion_is_max_tokens_times_n_or_the_models_max_output() {
        let model = model();
        let asked = body(json!({"messages": [], "max_tokens": 100, "n": 3}));
        assert_eq!(
            WorstCase::of(&asked, &model).unwrap().completion_tokens,
            300
        );
        let newer = body(json!({"messages": [], "max_completion_tokens": 50, "max_tokens": 9}));
        assert_eq!(WorstCase::of(&newer, &model).unwrap().completion_tokens, 50);
        let open = body(json!({"messages": []}));
        assert_eq!(
            WorstCase::of(&open, &model).unwrap().completion_tokens,
            4_096
        );
    }

    #[test]
    fn impossible_output_sizes_and_choices_answer_400_naming_the_parameter() {
        let model = model();
        for (request, param) in [
            (json!({"max_tokens": 4_097}), "max_tokens"),
            (json!({"max_completion_tokens": 0}), "max_completion_tokens"),
            (json!({"max_tokens": "10"}), "max_tokens"),
            (json!({"n": 129}), "n"),
            (json!({"n": 0}), "n"),
        ] {
            let error = WorstCase::of(&body(request), &model).unwrap_err();
            assert_eq!(error.status, http::StatusCode::BAD_REQUEST);
            assert_eq!(error.details["param"], param);
        }
    }

    #[test]
    fn the_hold_prices_the_worst_case_and_the_charge_the_reported_usage_rounded_up() {
        let model = model();
        let worst = WorstCase {
            prompt_tokens: 1_000,
            completion_tokens: 100,
        };
        // 1000 prompt tokens at 2.5 credits each, 100 completion tokens at 10.
        assert_eq!(worst.credits(&model), 3_500);
        let usage = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 1,
            cached_tokens: 400,
        };
        // 600 × 2.5 + 400 × 1.25 + 1 × 10 = 1500 + 500 + 10.
        assert_eq!(cost(&usage, &model), 2_010);
        let tiny = Usage {
            prompt_tokens: 1,
            completion_tokens: 0,
            cached_tokens: 0,
        };
        let cheap = Model {
            input_price: 1,
            ..model
        };
        assert_eq!(
            cost(&tiny, &cheap),
            1,
            "a fraction of a credit is charged as one"
        );
        assert_eq!(cost(&Usage::default(), &cheap), 0);
    }
}
