"""Turn a conversation into prompt token ids, and find the tokens that end an answer."""
from __future__ import annotations

from typing import Sequence

from playground.validation import check_prompt, check_prompt_tokens

Message = dict  # {"role": "user" | "assistant" | "system", "content": str}


def conversation(history: Sequence[Message], prompt: str) -> list[Message]:
    """The messages sent to the model: earlier turns (text only) plus the new user prompt."""
    turns = [{"role": m["role"], "content": str(m["content"])} for m in history if m.get("role") in ("user", "assistant", "system")]
    return turns + [{"role": "user", "content": prompt}]


def prompt_ids(tokenizer, history: Sequence[Message], prompt: str, use_chat_template: bool = True) -> tuple[int, ...]:
    """Token ids of the conversation, ending where the assistant's answer starts. Validates lengths."""
    check_prompt(prompt)
    if use_chat_template and tokenizer.chat_template:
        text = tokenizer.apply_chat_template(conversation(history, prompt), add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        previous = "".join(f"{m['content']}\n" for m in history)
        ids = tokenizer(previous + prompt, add_special_tokens=True)["input_ids"]
    check_prompt_tokens(len(ids))
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
    """The answer's text, without the stop token."""
    kept = [t for t in tokens if t not in stop_ids]
    return tokenizer.decode(kept, skip_special_tokens=True)
