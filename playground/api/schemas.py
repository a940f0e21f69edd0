"""Request bodies of /v1/chat/completions and /v1/completions, checked into one `Job` (or an `ApiError` naming the field).

The knobs are checked by `playground.settings.validation` (the same checks, limits and messages as the UI and the CLI),
under the OpenAI names: `max_tokens` (or `max_completion_tokens`) is the chat's max_new_tokens, `lambda` /
`kl_strength` the realignment knobs (exactly one, for an adapter model; neither: the chat tab's default λ).
A chat request's `messages` become the chat tab's conversation (earlier turns as history, the last user message as
the prompt) and are encoded by `Playground.encode`, so user text stays plain text. `/v1/completions` takes its
`prompt` as one user turn, exactly like the CLI's `--prompt`: these are chat models, and the answer then equals the
CLI's. Fields OpenAI defines that this server cannot honour are refused when set to anything but their no-op value;
unknown fields are refused by name (a misspelt `lamda` must not be ignored silently).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from playground.api.config import API, BASE_MODEL
from playground.api.errors import ApiError, invalid
from playground.chat.conversation import USEFUL_PROMPT_CHARS
from playground.settings.request import DEFAULT_DECODE, LIMITS, MODES, DecodeSettings, nominal_beta
from playground.settings.validation import InputError, check_choice, check_int, check_number, check_prompt, decode_settings, lambda_from

# Accepted and without effect here (bookkeeping fields clients send).
IGNORED = frozenset({"user", "metadata", "store", "service_tier", "parallel_tool_calls", "prompt_cache_key",
                     "safety_identifier"})
COMMON = frozenset({"model", "temperature", "top_p", "max_tokens", "seed", "stop", "n", "stream", "stream_options",
                    "lambda", "kl_strength", "mode", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs"})
CHAT_FIELDS = COMMON | {"messages", "max_completion_tokens", "top_logprobs", "response_format", "tools", "tool_choice",
                        "functions", "function_call", "modalities", "audio", "prediction", "reasoning_effort",
                        "web_search_options"}
TEXT_FIELDS = COMMON | {"prompt", "echo", "suffix", "best_of"}
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


@dataclass(frozen=True)
class Job:
    """One checked request: what to decode (choice i uses seed + i) and how to answer."""

    kind: str  # "chat" or "text" (/v1/completions)
    model: str  # as requested: "base", an adapter name, or one with its knobs ("upbeat-b0.1@lambda=2")
    adapter: str | None  # None for the base model
    beta_train: float | None
    kl_strength: float | None  # β as given (None when λ was given or defaulted)
    decode: DecodeSettings  # choice 0's settings; for the base model λ = 0, mode logits (the UI's base column)
    history: tuple[dict, ...]  # earlier messages, {"role", "content"}
    prompt: str  # the last user message
    n: int
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    logprobs: int | None  # None: off; k >= 0: each token's log-probability and the k most likely alternatives

    def choice(self, i: int) -> DecodeSettings:
        """Choice i's settings: the next seeds, as the chat's Regenerate and the sweep's samples use them."""
        return replace(self.decode, seed=self.decode.seed + i)

    @property
    def beta(self) -> float | None:
        """Nominal β = β_train / λ of the policy decoded (None for the base model; inf for λ = 0)."""
        if self.beta_train is None:
            return None
        return self.kl_strength if self.kl_strength is not None else nominal_beta(self.beta_train, self.decode.lam)


def _given(body: Mapping, name: str) -> bool:
    return body.get(name) is not None


def _field(name: str, check, *args):
    """Run one validation check; its InputError becomes a 400 naming `name`."""
    try:
        return check(*args)
    except InputError as err:
        raise invalid(str(err), name) from None


def _bool(body: Mapping, name: str, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"{name} must be true or false; got {value!r}"[:200], name)
    return value


def _unsupported(name: str, why: str) -> ApiError:
    return invalid(f"{name} is not supported here: {why}", name, code="unsupported_parameter")


def check_fields(body: Mapping, allowed: frozenset) -> None:
    if not isinstance(body, Mapping):
        raise invalid("the request body must be a JSON object", None)
    unknown = sorted(k for k in body if k not in allowed and k not in IGNORED)
    if unknown:
        shown = unknown[0] if len(unknown[0]) <= 40 else unknown[0][:37] + "..."
        raise invalid(f"unknown parameter {shown!r}; this server takes: {', '.join(sorted(allowed))}",
                      shown, code="unknown_parameter")
    for name, neutral in (("frequency_penalty", 0), ("presence_penalty", 0)):
        if _given(body, name) and body[name] != neutral:
            raise _unsupported(name, f"the realigned policy is sampled as is; send 0 or leave it out (got {body[name]!r})")
    if body.get("logit_bias"):
        raise _unsupported("logit_bias", "the realigned distribution is sampled as is; leave it out")


MODEL_KNOBS = ("lambda", "kl_strength", "mode")


def split_model(body: Mapping) -> tuple[str, dict]:
    """`upbeat-b0.1@lambda=2` → ("upbeat-b0.1", {"lambda": "2"}): the realignment knobs in the model id, for tools
    that cannot send extra body fields (model pickers). Knobs: lambda, kl_strength, mode, separated by "," or ";";
    "key:value" reads as "key=value" (for tools that split their own settings at "=")."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model is required: 'base' or an adapter name (GET /v1/models lists them)", "model",
                      code="missing_required_parameter")
    name, at, spec = model.partition("@")
    knobs: dict = {}
    if at:
        for item in spec.replace(";", ",").split(","):
            key, eq, value = (x.strip() for x in item.replace(":", "=", 1).partition("="))
            if not eq or key not in MODEL_KNOBS or not value:
                raise invalid(f"model {model[:80]!r}: after '@' give {', '.join(k + '=…' for k in MODEL_KNOBS)} "
                              "(comma-separated), e.g. upbeat-b0.1@lambda=2", "model")
            if _given(body, key):
                raise invalid(f"{key} is given both in the model id and in the body; give it once", key)
            knobs[key] = value
    return name, knobs


def check_model(body: Mapping, adapters: Mapping) -> str:
    model = body["model"]
    if model != BASE_MODEL and model not in adapters:
        names = ", ".join([BASE_MODEL, *sorted(adapters)])
        shown = model if len(model) <= 60 else model[:57] + "..."
        raise ApiError(404, f"the model {shown!r} does not exist; available: {names}", param="model",
                       code="model_not_found")
    return model


def _decode(body: Mapping, model: str, adapters: Mapping, max_tokens_names: tuple[str, ...]) -> tuple[DecodeSettings, float | None, float | None]:
    """(settings, β_train, β as given) from the sampling and realignment fields."""
    given = [n for n in max_tokens_names if _given(body, n)]
    if len(given) > 1 and body[given[0]] != body[given[1]]:
        raise invalid(f"give max_tokens or max_completion_tokens, not both with different values "
                      f"({body[given[0]]!r} and {body[given[1]]!r})", given[1])
    name = given[0] if given else "max_tokens"
    max_new = _field(name, check_int, name, body[name], 1, LIMITS.max_new_tokens) if given else DEFAULT_DECODE.max_new_tokens
    temperature = (_field("temperature", check_number, "temperature", body["temperature"], 0.0, LIMITS.max_temperature)
                   if _given(body, "temperature") else DEFAULT_DECODE.temperature)
    top_p = (_field("top_p", lambda v: check_number("top_p", v, 0.0, 1.0, low_open=True), body["top_p"])
             if _given(body, "top_p") else DEFAULT_DECODE.top_p)
    seed = _field("seed", check_int, "seed", body["seed"], 0, LIMITS.max_seed) if _given(body, "seed") else DEFAULT_DECODE.seed
    lam_in, beta_in = body.get("lambda"), body.get("kl_strength")
    if model == BASE_MODEL:
        for knob in ("lambda", "kl_strength", "mode"):
            if _given(body, knob):
                raise invalid(f"{knob} applies to an adapter's realigned policy; the model 'base' is the base model "
                              "(λ = 0): leave it out or choose an adapter model", knob)
        lam, mode, beta_train, beta = 0.0, "logits", None, None
    else:
        beta_train = float(adapters[model].beta_train)
        if lam_in is not None and beta_in is not None:
            raise invalid(f"give exactly one of lambda (λ) or kl_strength (β = β_train/λ), not both; got lambda={lam_in!r} "
                          f"and kl_strength={beta_in!r}", "kl_strength")
        mode = _field("mode", check_choice, "mode", body["mode"], MODES) if _given(body, "mode") else "logits"
        if lam_in is None and beta_in is None:
            lam, beta = API.default_lambda, None
        elif lam_in is not None:
            lam, beta = _field("lambda", lambda_from, None, lam_in, beta_train), None
        else:
            lam = _field("kl_strength", lambda_from, beta_in, None, beta_train)
            beta = float(beta_in)
    d = decode_settings(lam=lam, mode=mode, temperature=temperature, top_p=top_p, max_new_tokens=max_new, seed=seed)
    return d, beta_train, beta


def _stop(body: Mapping) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise invalid("stop must be a string or a list of strings", "stop")
    if len(items) > API.max_stop:
        raise invalid(f"stop has {len(items)} sequences; the limit is {API.max_stop}", "stop")
    for s in items:
        if not s or len(s) > API.max_stop_chars:
            raise invalid(f"each stop sequence must have 1 to {API.max_stop_chars} characters; got {len(s)}", "stop")
    return tuple(dict.fromkeys(items))


def _stream(body: Mapping) -> tuple[bool, bool]:
    stream = _bool(body, "stream")
    opts = body.get("stream_options")
    if opts is None:
        return stream, False
    if not stream:
        raise invalid("stream_options needs stream: true", "stream_options")
    if not isinstance(opts, Mapping) or any(k != "include_usage" for k in opts):
        raise invalid("stream_options takes only include_usage (true or false)", "stream_options")
    return stream, _bool(opts, "include_usage")


def _common(body: Mapping, adapters: Mapping, kind: str, max_tokens_names: tuple[str, ...]) -> dict:
    requested = body.get("model")
    name, knobs = split_model(body)
    body = {**body, **knobs, "model": name}
    model = check_model(body, adapters)
    d, beta_train, beta = _decode(body, model, adapters, max_tokens_names)
    n = _field("n", check_int, "n", body["n"], 1, API.max_n) if _given(body, "n") else 1
    if d.seed + n - 1 > LIMITS.max_seed:
        raise invalid(f"seed + n - 1 must be at most {LIMITS.max_seed} (choice i decodes with seed + i); got "
                      f"{d.seed} + {n} - 1", "seed")
    stream, include_usage = _stream(body)
    return dict(kind=kind, model=requested, adapter=None if model == BASE_MODEL else model, beta_train=beta_train,
                kl_strength=beta, decode=d, n=n, stop=_stop(body), stream=stream, include_usage=include_usage)


def _user_text(name: str, value: object) -> str:
    text = _field(name, check_prompt, value)
    if len(text) > USEFUL_PROMPT_CHARS:
        raise invalid(f"{name} has {len(text)} characters; this small model gives no useful answer past about "
                      f"{USEFUL_PROMPT_CHARS} (the chat tab's limit): shorten it", name)
    return text


def _content(i: int, message: Mapping) -> str:
    name = f"messages[{i}].content"
    content = message.get("content")
    if isinstance(content, list):  # content parts: text only
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise invalid(f"{name}[{j}] must be a text part {{\"type\": \"text\", \"text\": ...}}; got {kind!r} "
                              "(this model reads text only)", f"{name}[{j}]")
            texts.append(part["text"])
        content = "".join(texts)
    if not isinstance(content, str):
        raise invalid(f"{name} must be text (a string or text parts); got "
                      f"{'nothing' if content is None else type(content).__name__}", name)
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{name} contains invalid characters (unpaired surrogates)", name) from None
    if len(content) > LIMITS.max_prompt_chars:
        raise invalid(f"{name} has {len(content)} characters; the limit is {LIMITS.max_prompt_chars}", name)
    return content


def _messages(body: Mapping) -> tuple[tuple[dict, ...], str]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages is required: a non-empty list of {\"role\", \"content\"} objects", "messages",
                      code="missing_required_parameter")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise invalid(f"messages[{i}] must be an object with role and content", f"messages[{i}]")
        role = m.get("role")
        if role not in ROLES:
            raise invalid(f"messages[{i}].role must be one of system, developer, user, assistant; got {role!r}"[:200],
                          f"messages[{i}].role")
        if m.get("tool_calls") or m.get("function_call"):
            raise _unsupported(f"messages[{i}].tool_calls", "this model does not call tools")
        out.append({"role": ROLES[role], "content": _content(i, m)})
    last = len(out) - 1
    if out[last]["role"] != "user":
        raise invalid(f"the last message must be the user's (the turn to answer); got role {out[last]['role']!r}",
                      "messages")
    prompt = _user_text(f"messages[{last}].content", out[last]["content"])
    earlier_turns = sum(m["role"] == "user" for m in out[:last])
    if earlier_turns >= LIMITS.max_history_turns:
        raise invalid(f"messages hold {earlier_turns} earlier user turns; the limit is {LIMITS.max_history_turns - 1} "
                      f"(the chat tab's {LIMITS.max_history_turns} turns)", "messages")
    return tuple(out[:last]), prompt


def _refuse_tools(body: Mapping) -> None:
    for name in ("tools", "functions", "audio", "prediction", "web_search_options"):
        if body.get(name):
            raise _unsupported(name, "this model answers with text only")
    if body.get("tool_choice") not in (None, "none"):
        raise _unsupported("tool_choice", "this model does not call tools")
    if body.get("function_call") not in (None, "none"):
        raise _unsupported("function_call", "this model does not call tools")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, Mapping) or fmt.get("type") != "text"):
        raise _unsupported("response_format", "answers are plain text; send {\"type\": \"text\"} or leave it out")
    if body.get("modalities") not in (None, ["text"]):
        raise _unsupported("modalities", "this model answers with text only")
    if body.get("reasoning_effort") is not None:
        raise _unsupported("reasoning_effort", "this model does not reason in a separate channel")


def chat_job(body: Mapping, adapters: Mapping) -> Job:
    """A checked /v1/chat/completions request."""
    check_fields(body, CHAT_FIELDS)
    _refuse_tools(body)
    common = _common(body, adapters, "chat", ("max_tokens", "max_completion_tokens"))
    history, prompt = _messages(body)
    want = _bool(body, "logprobs")
    top = _field("top_logprobs", check_int, "top_logprobs", body["top_logprobs"], 0, API.max_top_logprobs) \
        if _given(body, "top_logprobs") else None
    if top is not None and not want:
        raise invalid("top_logprobs needs logprobs: true", "top_logprobs")
    return Job(**common, history=history, prompt=prompt, logprobs=(top or 0) if want else None)


def text_job(body: Mapping, adapters: Mapping) -> Job:
    """A checked /v1/completions request: the prompt is one user turn (the chat template applies, as in the CLI)."""
    check_fields(body, TEXT_FIELDS)
    if _given(body, "echo") and body["echo"] is not False:
        raise _unsupported("echo", "the answer never repeats the prompt; send false or leave it out")
    if _given(body, "suffix"):
        raise _unsupported("suffix", "these chat models do not fill in the middle")
    if _given(body, "best_of") and body["best_of"] != 1:
        raise _unsupported("best_of", "use n and compare the choices yourself (each carries its readouts)")
    common = _common(body, adapters, "text", ("max_tokens",))
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise invalid("prompt must be one string (or a list holding exactly one string); token ids and batches of "
                          "prompts are not taken: send one request per prompt", "prompt")
        prompt = prompt[0]
    if prompt is None:
        raise invalid("prompt is required", "prompt", code="missing_required_parameter")
    prompt = _user_text("prompt", prompt)
    top = _field("logprobs", check_int, "logprobs", body["logprobs"], 0, API.max_top_logprobs) if _given(body, "logprobs") else None
    return Job(**common, history=(), prompt=prompt, logprobs=top)
