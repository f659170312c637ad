//! Black-box tests of the LLM gateway: provider keys and the model catalogue through the
//! API, `/v1/chat/completions`, `/v1/embeddings` and `/v1/models` against OpenAI provider doubles on
//! loopback, models on Anthropic's Messages API against an Anthropic double, the tenant's
//! policy, the interaction record, and the official OpenAI Python client end to end.

mod anthropic;
mod anthropic_double;
mod chat;
mod concurrency;
mod embeddings;
mod interactions;
mod keys;
mod limits;
mod models;
mod policy;
mod sdk;
mod stream;
mod support;
mod usage;
