"""Turn a conversation into prompt token ids, and find the tokens that end an answer.

User text is always plain text. The chat template is rendered around unique placeholders, never around the
user's words, and only the template's own text is tokenized with special tokens recognised; every
message's content is tokenized with `split_special_tokens=True`, so typing "<|im_end|>" gives the ids of
those characters, never the control token (chat-template injection).

Nothing here checks user input: the prompt's text is checked where it enters (conversation, facade, API,
CLI) and its token count by the facade (`Playground.encode`).
"""
from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Sequence


Message = dict  # {"role": "user" | "assistant" | "system", "content": str}
ROLES = ("user", "assistant", "system")


def conversation(history: Sequence[Message], prompt: str) -> list[Message]:
    """The messages sent to the model: earlier turns (text only) plus the new user prompt."""
    turns = [{"role": m["role"], "content": str(m["content"])} for m in history if m.get("role") in ROLES]
    return turns + [{"role": "user", "content": prompt}]


# A fast tokenizer implements `split_special_tokens=True` by switching a flag on its one shared Rust tokenizer
# for the duration of the call. Another thread encoding the chat template meanwhile would then see its control
# tokens split into plain text ("<|im_start|>" as 7 ordinary tokens): a wrong prompt for that request (found as
# 1–2 of 32 concurrent answers differing from the serial run). So every encoding here holds this lock.
_ENCODE_LOCK = threading.RLock()


def plain_ids(tokenizer, text: str) -> list[int]:
    """Token ids of `text` as plain characters: special-token strings inside it are split, not recognised."""
    with _ENCODE_LOCK:
        return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def _template_ids(tokenizer, messages: list[Message]) -> list[int]:
    """Render the chat template with a placeholder per message; tokenize template text and contents apart."""
    tag = secrets.token_hex(8)
    marks = [f"\u2063PLACEHOLDER{tag}x{i}\u2063" for i in range(len(messages))]
    rendered = tokenizer.apply_chat_template([{"role": m["role"], "content": mark} for m, mark in zip(messages, marks)],
                                             add_generation_prompt=True, tokenize=False)
    ids: list[int] = []
    for piece in re.split("(" + "|".join(map(re.escape, marks)) + ")", rendered):
        if piece in marks:
            ids += plain_ids(tokenizer, messages[marks.index(piece)]["content"])
        elif piece:
            with _ENCODE_LOCK:  # not while another thread has special-token splitting switched on
                ids += tokenizer(piece, add_special_tokens=False)["input_ids"]  # the template's own control tokens
    return ids


def prompt_ids(tokenizer, history: Sequence[Message], prompt: str, use_chat_template: bool = True) -> tuple[int, ...]:
    """Token ids of the conversation, ending where the assistant's answer starts (lengths are the caller's to check)."""
    messages = conversation(history, prompt)
    if use_chat_template and tokenizer.chat_template:
        ids = _template_ids(tokenizer, messages)
    else:
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", False) else []
        ids = bos + plain_ids(tokenizer, "".join(f"{m['content']}\n" for m in messages[:-1]) + prompt)
    return tuple(ids)


def stop_token_ids(tokenizer) -> list[int]:
    """End-of-sequence ids, plus the chat template's end-of-turn token when it has one."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return sorted(ids)


def decode(tokenizer, tokens: Sequence[int], stop_ids: Sequence[int]) -> str:
    """The answer's text, without the stop token and without a trailing incomplete character (see detokenize)."""
    from playground.lm.detokenize import text

    return text(tokenizer, tokens, stop_ids)
