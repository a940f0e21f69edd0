"""The OpenAI-shaped objects of one /v1 job (`Meta`): the whole completion, the stream's chunks and deltas,
log-probabilities, usage, and the `playground` extension (the settings that reproduce the answers and each
choice's readouts: KL to the base model, entropy, speed).
"""
from __future__ import annotations

import secrets
import time

from playground.api.decoding import Choice, Run, TokenText
from playground.api.schemas import Job


class Meta:
    """Builds the OpenAI-shaped objects of one job."""

    def __init__(self, job: Job, prompt_tokens: int, sha: str | None, tokens: TokenText | None) -> None:
        self.job, self.prompt_tokens, self.sha, self.tokens = job, prompt_tokens, sha, tokens
        self.id = ("chatcmpl-" if job.kind == "chat" else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())

    @property
    def object(self) -> str:
        return "chat.completion" if self.job.kind == "chat" else "text_completion"

    def settings(self) -> dict:
        j, d = self.job, self.job.decode
        beta = j.beta
        return {"model": j.model, "adapter": j.adapter, "adapter_sha256": self.sha, "beta_train": j.beta_train,
                "lambda": d.lam, "kl_strength": None if beta is None or beta == float("inf") else beta,
                "mode": d.mode, "temperature": d.temperature, "top_p": d.top_p, "max_tokens": d.max_new_tokens,
                "seed": d.seed, "n": j.n, "stop": list(j.stop)}

    def readouts(self, choices: list[Choice], streams: list, run: Run) -> dict:
        """The `playground` extension: the settings that reproduce the answers and each choice's readouts."""
        per = []
        for i, c in enumerate(choices):
            s = streams[i] if streams else None
            m = c.consumed
            kl = list(s.kl[:m]) if s else []
            ent = list(s.entropy[:m]) if s else []
            per.append({"index": i, "seed": self.job.choice(i).seed, "tokens": m,
                        "kl_to_base": sum(kl) / len(kl) if kl else 0.0, "kl_to_base_sum": float(sum(kl)),
                        "entropy": sum(ent) / len(ent) if ent else 0.0,
                        "tokens_per_s": (m / s.elapsed_s) if s and s.elapsed_s > 0 else 0.0,
                        "first_token_s": s.first_token_s if s else None,
                        "timed_out": run.timed_out and not (s and s.done)})
        mean = lambda key: sum(p[key] for p in per) / len(per) if per else 0.0  # noqa: E731
        return {**self.settings(), "kl_to_base": mean("kl_to_base"), "entropy": mean("entropy"), "choices": per}

    def usage(self, choices: list[Choice]) -> dict:
        completion = sum(c.consumed for c in choices)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    def _logprob_entries(self, stream, indices: list[int]) -> list[dict]:
        t = self.tokens
        out = []
        for j in indices:
            if stream is None or j >= len(stream.logprobs):
                continue
            lp, top = stream.logprobs[j]
            tok = stream.tokens[j]
            out.append({"token": t.text(tok), "logprob": lp, "bytes": list(t.bytes(tok)),
                        "top_logprobs": [{"token": t.text(a), "logprob": b, "bytes": list(t.bytes(a))} for a, b in top]})
        return out

    def logprobs(self, stream, indices: list[int], offset: int = 0) -> dict | None:
        if self.job.logprobs is None:
            return None
        entries = self._logprob_entries(stream, indices)
        if self.job.kind == "chat":
            return {"content": entries, "refusal": None}
        offsets, at = [], offset
        for e in entries:
            offsets.append(at)
            at += len(e["token"])
        return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [{a["token"]: a["logprob"] for a in e["top_logprobs"]} for e in entries],
                "text_offset": offsets}

    def delta(self, i: int, text: str, tokens: list[int], stream, finish: str | None) -> dict:
        if self.job.kind == "chat":
            return {"index": i, "delta": {"content": text} if text or finish is None else {},
                    "logprobs": self.logprobs(stream, tokens) if tokens else None, "finish_reason": finish}
        return {"index": i, "text": text, "logprobs": self.logprobs(stream, tokens) if tokens else None,
                "finish_reason": finish}

    def chunk(self, choices: list[dict], usage: dict | None = None, playground: dict | None = None) -> dict:
        out = {"id": self.id, "object": self.object + ".chunk" if self.job.kind == "chat" else self.object,
               "created": self.created, "model": self.job.model, "system_fingerprint": None, "choices": choices}
        if usage is not None:
            out["usage"] = usage
        if playground is not None:
            out["playground"] = playground
        return out

    def whole(self, choices: list[Choice], streams: list, run: Run) -> dict:
        out = []
        for i, c in enumerate(choices):
            s = streams[i] if streams else None
            lp = self.logprobs(s, list(range(c.token_count)))
            if self.job.kind == "chat":
                out.append({"index": i, "message": {"role": "assistant", "content": c.text, "refusal": None},
                            "logprobs": lp, "finish_reason": c.finish})
            else:
                out.append({"index": i, "text": c.text, "logprobs": lp, "finish_reason": c.finish})
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.job.model,
                "system_fingerprint": None, "choices": out, "usage": self.usage(choices),
                "playground": self.readouts(choices, streams, run)}
