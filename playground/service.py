"""The playground: one base model, its adapters, and the side-by-side realigned decoding users see.

`Playground.from_registry()` loads the embedded default; `Playground(loaded_base, adapters)` takes any
loaded base and adapter directories (tests build tiny ones). Answers carry the readouts shown in the UI:
tokens, tokens/s, mean per-token KL(π_λ ‖ π_base), entropy, reward under the adapter's judge, and the
exact settings (with seed) that reproduce them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from playground import registry
from playground.lm.prompts import decode, prompt_ids, stop_token_ids
from playground.lm.engine import Engine, Request, Stream
from playground.lm.fast_llama import can_pack
from playground.lm.loading import LoadedBase, load_base
from playground.lm.lora import AdapterSet
from playground.settings import COLUMNS, model_dtype_name
from playground.validation import check_choice, check_decode, lambda_from



@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: Path
    beta_train: float  # β the adapter was trained with (from its card)
    judge: str  # the judge whose preferences it learned
    description: str = ""


@dataclass
class Answer:
    text: str
    tokens: int
    kl_to_base: float  # mean per-token KL(π_λ ‖ π_base), nats
    kl_to_base_sum: float  # summed over the answer (sequence KL along the sampled path)
    entropy: float  # mean entropy of the sampling distribution, nats
    shifted_share: float  # share of positions where the base model's top token differs from the realigned one
    tokens_per_s: float
    first_token_s: float | None
    done: bool
    reward: float | None = None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SideBySide:
    """One user turn: the three columns' settings."""

    prompt: str
    adapter: str
    lam: float
    kl_strength: float
    mode: str
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int


def resolve_dtype(name: str) -> torch.dtype:
    """"auto" -> bfloat16 where the CPU has native bf16 matmuls (oneDNN), else float32; names map as is."""
    if name == "auto":
        return torch.bfloat16 if can_pack(torch.bfloat16) else torch.float32
    return getattr(torch, name)


class Playground:
    def __init__(self, base: LoadedBase, adapters: Sequence[AdapterInfo], base_names: Sequence[str] = (), chat: bool = True) -> None:
        self.base, self.chat = base, chat
        self.tokenizer = base.tokenizer
        self.adapter_set = AdapterSet(base.model, base_names=[base.source, *base_names])
        self.adapters: dict[str, AdapterInfo] = {}
        for info in adapters:
            self.adapter_set.add(info.name, info.path)
            self.adapters[info.name] = info
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.engine = Engine(base.model, self.tokenizer, self.adapter_set, self.stop_ids)

    @classmethod
    def from_registry(cls, base: str = registry.DEFAULT_BASE, adapters: Sequence[str] | None = None,
                      dtype: str | None = None) -> "Playground":
        entry = registry.get_base(base)
        loaded = load_base(entry.source, dtype=resolve_dtype(dtype or model_dtype_name()))
        names = adapters if adapters is not None else [a.name for a in registry.installed_adapters(base)]
        infos = []
        for name in names:
            a = registry.get_adapter(name)
            infos.append(AdapterInfo(a.name, a.path, a.beta_train, a.judge, a.description))
        return cls(loaded, infos, base_names=[entry.name], chat=entry.chat)

    # --- requests ---------------------------------------------------------------------------------
    def settings(self, prompt: str, adapter: str, kl_strength=None, lam=None, mode: str = "logits",
                 temperature=0.7, top_p=0.95, max_new_tokens=96, seed=0) -> SideBySide:
        """Validate one turn's knobs (from UI, API or CLI) into a SideBySide."""
        adapter = check_choice("adapter", adapter, sorted(self.adapters))
        mode = check_choice("mode", mode, ["logits", "weights"])
        lam_value, beta = lambda_from(kl_strength, lam, self.adapters[adapter].beta_train)
        temperature, top_p, max_new_tokens, seed = check_decode(temperature, top_p, max_new_tokens, seed)
        return SideBySide(prompt, adapter, lam_value, beta, mode, temperature, top_p, max_new_tokens, seed)

    def requests(self, s: SideBySide, histories: dict[str, Sequence[dict]] | None = None) -> dict[str, Request]:
        """The three columns' requests; each column continues its own conversation history."""
        histories = histories or {}
        common = dict(temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens, seed=s.seed)
        policy = {"base": dict(adapter=None, lam=0.0), "realigned": dict(adapter=s.adapter, lam=s.lam, mode=s.mode),
                  "tuned": dict(adapter=s.adapter, lam=1.0, mode="logits")}
        return {c: Request(prompt_ids(self.tokenizer, histories.get(c, ()), s.prompt, self.chat), **policy[c], **common)
                for c in COLUMNS}

    # --- decoding ---------------------------------------------------------------------------------
    def answer(self, stream: Stream, column: str, s: SideBySide) -> Answer:
        n = len(stream.tokens)
        settings = asdict(s) | {"column": column, "lambda": 0.0 if column == "base" else 1.0 if column == "tuned" else s.lam}
        settings.pop("lam")
        settings.pop("prompt")
        return Answer(
            text=decode(self.tokenizer, stream.tokens, self.stop_ids),
            tokens=n,
            kl_to_base=stream.kl_mean,
            kl_to_base_sum=stream.kl_sum,
            entropy=stream.entropy_mean,
            shifted_share=sum(stream.shifted) / n if n else 0.0,
            tokens_per_s=n / stream.elapsed_s if stream.elapsed_s > 0 else 0.0,
            first_token_s=stream.first_token_s,
            done=stream.done,
            settings=settings,
        )

    def stream_side_by_side(self, s: SideBySide, histories: dict[str, Sequence[dict]] | None = None, columns: Sequence[str] = COLUMNS,
                            should_stop: Callable[[], bool] = lambda: False, every: int = 1) -> Iterator[dict[str, Answer]]:
        """Decode the chosen columns together in one batch; yield their answers every `every` steps."""
        reqs = self.requests(s, histories)
        chosen = [c for c in COLUMNS if c in columns]
        step = 0
        answers: dict[str, Answer] = {}
        for streams in self.engine.stream([reqs[c] for c in chosen], should_stop=should_stop):
            step += 1
            answers = {c: self.answer(st, c, s) for c, st in zip(chosen, streams)}
            if step % every == 0 and not all(a.done for a in answers.values()):
                yield answers
        self.add_rewards(s, answers)
        yield answers

    def add_rewards(self, s: SideBySide, answers: dict[str, Answer]) -> None:
        """Score every column with the adapter's judge (the reward it was trained towards)."""
        if not answers:
            return
        judge = self.judge(self.adapters[s.adapter].judge)
        texts = [a.text for a in answers.values()]
        for a, r in zip(answers.values(), judge.score([s.prompt] * len(texts), texts)):
            a.reward = float(r)

    def judge(self, name: str):
        from playground.judges.judges import get_judge  # imported lazily: judges load embedding models

        return get_judge(name)

    def side_by_side(self, s: SideBySide, histories: dict[str, Sequence[dict]] | None = None,
                     columns: Sequence[str] = COLUMNS) -> dict[str, Answer]:
        answers: dict[str, Answer] = {}
        for answers in self.stream_side_by_side(s, histories, columns):
            pass
        return answers
