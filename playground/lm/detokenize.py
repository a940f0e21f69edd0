"""Incremental detokenization: an answer's text token by token, in every script.

A byte-level tokenizer splits one character into several tokens when its UTF-8 form has more than one
byte (Korean, Chinese, accented letters, emoji). Decoding a prefix that ends inside such a character
gives U+FFFD ("�"), so the text of a growing answer must hold the incomplete bytes back until the token
that completes the character arrives (as TGI's and vLLM's detokenizers do). `Detokenizer` does that:
each token gets the text it adds ("" while it is held back; the completing token carries the whole
character), and an answer cut inside a character (token limit, Stop, deadline) simply ends before it.
The concatenated pieces of a complete answer equal `tokenizer.decode` of the whole answer.

It uses the `tokenizers` library's `DecodeStream` on fast tokenizers, and the same prefix/read-offset
algorithm in Python on any other tokenizer (or if `DecodeStream` refuses a step).
"""
from __future__ import annotations

from typing import Iterable, Sequence

REPLACEMENT = "\ufffd"  # what a decoder returns for bytes that are not (yet) a whole UTF-8 character
_CONTEXT = 5  # tokens decoded before the held ones in the Python path (a leading space depends on them)


def _raw_tokenizer(tokenizer):
    """The `tokenizers.Tokenizer` behind a transformers fast tokenizer, or None."""
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover - transformers depends on tokenizers
        return None
    raw = getattr(tokenizer, "_tokenizer", None)
    return raw if isinstance(raw, Tokenizer) else None


class Detokenizer:
    """The text of one growing answer: feed it the answer's tokens as they come (the whole list each time
    is fine: only the new tokens are decoded); `pieces` has one entry per non-stop token, `text` their join."""

    def __init__(self, tokenizer, stop_ids: Iterable[int] = (), use_decode_stream: bool = True) -> None:
        self._tokenizer = tokenizer
        self._stop = frozenset(int(t) for t in stop_ids)
        self._raw = _raw_tokenizer(tokenizer) if use_decode_stream else None
        self.reset()

    def reset(self) -> None:
        self._seen: list[int] = []  # every token fed so far, stop tokens included
        self.ids: list[int] = []  # the non-stop tokens
        self.pieces: list[str] = []  # text each of `ids` adds; "" while held back
        self._chunks: list[str] = []
        self._held = 0  # trailing ids not shown yet (an incomplete character)
        self._stream = None
        if self._raw is not None:
            from tokenizers.decoders import DecodeStream

            self._stream = DecodeStream(skip_special_tokens=True)
        self._prefix = self._read = 0  # the Python path's offsets into `ids`

    @property
    def text(self) -> str:
        """The text so far, without a trailing incomplete character."""
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""

    @property
    def held(self) -> int:
        """How many of the last tokens are held back (they end inside a character)."""
        return self._held

    def feed(self, tokens: Sequence[int]) -> "Detokenizer":
        """Bring the text up to `tokens`, the whole answer so far; a list that does not extend the last one starts over."""
        n = len(self._seen)
        if len(tokens) < n or list(tokens[:n]) != self._seen:
            self.reset()
            n = 0
        for t in tokens[n:]:
            self.add(int(t))
        return self

    def add(self, token: int) -> str | None:
        """One more token; the text it completes, or None while its character is incomplete (stop tokens: None)."""
        self._seen.append(token)
        if token in self._stop:
            return None
        self.ids.append(token)
        piece = self._step(token)
        if piece is None:
            self._held += 1
            self.pieces.append("")
            return None
        self._held = 0
        self.pieces.append(piece)
        if piece:
            self._chunks.append(piece)
        return piece

    def _step(self, token: int) -> str | None:
        if self._stream is not None:
            try:
                return self._stream.step(self._raw, token)
            except Exception:  # noqa: BLE001 - e.g. "invalid prefix" from a normalizing decoder: go on in Python
                self._stream = None
                self._read = len(self.ids) - 1 - self._held
                self._prefix = max(0, self._read - _CONTEXT)
        return self._step_python()

    def _step_python(self) -> str | None:
        """TGI's algorithm: decode a few tokens of context with and without the new ones; emit the difference once
        it does not end in an incomplete character."""
        decode = self._tokenizer.decode
        before = decode(self.ids[self._prefix:self._read], skip_special_tokens=True)
        after = decode(self.ids[self._prefix:], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith(REPLACEMENT) and after.startswith(before):
            self._prefix, self._read = self._read, len(self.ids)
            return after[len(before):]
        if after.startswith(before) or after.endswith(REPLACEMENT):
            return None
        # the context decodes differently once extended (a normalizing decoder): the new tokens as they decode alone
        new = self.ids[self._read:]
        self._prefix, self._read = self._read, len(self.ids)
        return decode(new, skip_special_tokens=True)


def pieces(tokenizer, tokens: Sequence[int], stop_ids: Iterable[int] = ()) -> list[str]:
    """The text each non-stop token adds (a character split over tokens lands on the token that completes it)."""
    return Detokenizer(tokenizer, stop_ids).feed(tokens).pieces


def text(tokenizer, tokens: Sequence[int], stop_ids: Iterable[int] = ()) -> str:
    """An answer's text without stop tokens and without a trailing incomplete character."""
    return Detokenizer(tokenizer, stop_ids).feed(tokens).text
