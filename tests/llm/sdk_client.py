"""Drives the gateway with the official OpenAI Python client, as a user's code would.

Run by tests/llm/sdk.rs with the venv's python (scripts/tools/openai.sh). Reads
TOLLGATE_V1_URL (the gateway's /v1 base), TOLLGATE_API_KEY (a funded tenant's key),
TOLLGATE_MEMBER_API_KEY (a key of a member of that tenant whose allow-list holds `chat`
only) and TOLLGATE_BROKE_API_KEY (a key of a tenant without credits, allowed one gateway
call a minute); prints one JSON object with what the SDK returned and which of its
exception classes each refusal raised. Any other exception ends the script with a non-zero
status and its traceback.
"""

import json
import os

import openai

HELLO = [{"role": "user", "content": "Hello!"}]
WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def client(api_key):
    # No retries: a refusal must surface as it was answered, once.
    return openai.OpenAI(
        base_url=os.environ["TOLLGATE_V1_URL"], api_key=api_key, max_retries=0, timeout=30
    )


def refusal(error):
    return {
        "class": type(error).__name__,
        "status": error.status_code,
        "code": error.code,
        "type": error.type,
        "param": error.param,
    }


def main():
    funded = client(os.environ["TOLLGATE_API_KEY"])
    result = {}

    completion = funded.chat.completions.create(
        model="chat", messages=HELLO, max_tokens=100, user="sdk-user"
    )
    result["completion"] = {
        "object": completion.object,
        "model": completion.model,
        "content": completion.choices[0].message.content,
        "finish_reason": completion.choices[0].finish_reason,
        "total_tokens": completion.usage.total_tokens,
    }
    pieces, models, total_tokens = [], set(), None
    for chunk in funded.chat.completions.create(
        model="chat",
        messages=HELLO,
        max_tokens=100,
        stream=True,
        stream_options={"include_usage": True},
    ):
        models.add(chunk.model)
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            total_tokens = chunk.usage.total_tokens
    result["stream"] = {
        "content": "".join(pieces),
        "pieces": len(pieces),
        "models": sorted(models),
        "total_tokens": total_tokens,
    }

    # The SDK asks for base64 unless told otherwise, and decodes it into floats itself.
    packed = funded.embeddings.create(model="chat", input=["one", "two"])
    floats = funded.embeddings.create(model="chat", input="three", encoding_format="float")
    result["embeddings"] = {
        "model": packed.model,
        "vectors": [item.embedding for item in packed.data],
        "prompt_tokens": packed.usage.prompt_tokens,
        "float_vector": floats.data[0].embedding,
    }
    # Tools, on a model Anthropic serves: the tool call comes back in OpenAI's shape, whole
    # and streamed.
    called = funded.chat.completions.create(
        model="claude", messages=HELLO, max_tokens=100, tools=WEATHER
    )
    call = called.choices[0].message.tool_calls[0]
    streamed_arguments, streamed_name, finish = "", None, None
    for chunk in funded.chat.completions.create(
        model="claude", messages=HELLO, max_tokens=100, tools=WEATHER, stream=True
    ):
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            streamed_name = streamed_name or delta.function.name
            streamed_arguments += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    result["tools"] = {
        "name": call.function.name,
        "arguments": json.loads(call.function.arguments),
        "finish_reason": called.choices[0].finish_reason,
        "streamed_name": streamed_name,
        "streamed_arguments": json.loads(streamed_arguments),
        "streamed_finish_reason": finish,
    }
    result["models"] = [model.id for model in funded.models.list().data]
    result["retrieved"] = funded.models.retrieve("chat").id

    try:
        funded.chat.completions.create(model="no-such-model", messages=HELLO)
    except openai.NotFoundError as error:
        result["unknown_model"] = refusal(error)

    try:
        client(os.environ["TOLLGATE_BROKE_API_KEY"]).chat.completions.create(
            model="chat", messages=HELLO, max_tokens=100
        )
    except openai.APIStatusError as error:
        result["no_credits"] = refusal(error)

    try:
        client(os.environ["TOLLGATE_BROKE_API_KEY"]).chat.completions.create(
            model="chat", messages=HELLO, max_tokens=100
        )
    except openai.RateLimitError as error:
        result["rate_limited"] = refusal(error)

    try:
        client("tg_not_a_key").models.list()
    except openai.AuthenticationError as error:
        result["bad_key"] = refusal(error)

    try:
        funded.chat.completions.create(model="chat", messages=[])
    except openai.BadRequestError as error:
        result["bad_request"] = refusal(error)

    try:
        client(os.environ["TOLLGATE_MEMBER_API_KEY"]).chat.completions.create(
            model="claude", messages=HELLO, max_tokens=100
        )
    except openai.PermissionDeniedError as error:
        result["not_allowed"] = refusal(error)

    try:
        funded.chat.completions.create(model="unreachable", messages=HELLO, max_tokens=100)
    except openai.InternalServerError as error:
        result["provider_down"] = refusal(error)

    print(json.dumps(result))


if __name__ == "__main__":
    main()
