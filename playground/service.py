"""The facade that ui/ and cli/ talk to: one base model, its adapters, and the answers users see.

`Playground.from_registry()` loads the embedded default; `Playground(loaded_base, adapters)` takes any
loaded base and adapter directories (tests build tiny ones). The wings (trade-off sweep, token view,
probes, feedback) use its methods — `encode`, `request`, `stream`, `text`, `pieces`, `judge` — never the
engine or tokenizer inside it. Answers carry the readouts shown in the UI: tokens, tokens/s, mean
per-token KL(π_λ ‖ π_base), entropy, reward under the adapter's judge, and the exact settings (with seed)
that reproduce them.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from playground import registry
from playground.chat.turn import ChatTurn, build_turn
from playground.settings.request import COLUMNS, DecodeSettings, nominal_beta
from playground.settings.server import model_dtype_name
from playground.settings.votes import TrainingSettings
from playground.settings.validation import InputError, check_choice, check_prompt_tokens

if TYPE_CHECKING:  # torch loads after the UI is served
    import torch

    from playground.lm.detokenize import Detokenizer
    from playground.lm.loading import LoadedBase
    from playground.lm.request import Request, Stream


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
    truncated: bool = False  # stopped at max_new_tokens, not at an end-of-turn token
    reward: float | None = None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_dtype(name: str) -> "torch.dtype":
    """"auto" -> bfloat16 where the CPU has native bf16 matmuls (oneDNN), else float32; names map as is."""
    import torch

    from playground.lm.fast_llama import can_pack

    if name in ("auto", "int4"):  # int4: the dense copy (embeddings, the LM head, other decoders) as auto picks
        return torch.bfloat16 if can_pack(torch.bfloat16) else torch.float32
    return getattr(torch, name)


class Playground:
    def __init__(self, base: "LoadedBase", adapters: Sequence[AdapterInfo], base_names: Sequence[str] = (), chat: bool = True) -> None:
        from playground.lm.engine import Engine
        from playground.lm.lora import AdapterSet
        from playground.lm.prompts import stop_token_ids

        self.base, self.chat = base, chat
        self.base_name = base_names[0] if base_names else base.source  # what adapter cards name as their base
        self._tokenizer = base.tokenizer
        self._adapter_set = AdapterSet(base.model, base_names=[base.source, *base_names])
        self._stop_ids = stop_token_ids(self._tokenizer)
        # The decode path (continuous batching where the model allows) is fixed here; a refused submission is an InputError.
        self.engine = Engine(base.model, self._tokenizer, self._adapter_set, self._stop_ids, int4=base.int4,
                             refusal=InputError)
        self._add_lock = threading.Lock()
        # Replaced, never mutated, by add_adapter: a reader iterating the old dict is never disturbed.
        self.adapters: dict[str, AdapterInfo] = {}
        for info in adapters:
            self.add_adapter(info)

    @classmethod
    def from_registry(cls, base: str = registry.DEFAULT_BASE, adapters: Sequence[str] | None = None,
                      dtype: str | None = None) -> "Playground":
        from playground.lm.loading import load_base

        entry = registry.get_base(base)
        weights = dtype or model_dtype_name()  # auto | int4 | bfloat16 | float32
        loaded = load_base(entry.source, dtype=resolve_dtype(weights), int4={"auto": "auto", "int4": "yes"}.get(weights, "no"))
        names = adapters if adapters is not None else [a.name for a in registry.installed_adapters(base)]
        infos = []
        for name in names:
            a = registry.get_adapter(name)
            infos.append(AdapterInfo(a.name, a.path, a.beta_train, a.judge, a.description))
        pg = cls(loaded, infos, base_names=[entry.name], chat=entry.chat)
        if adapters is None:  # and those trained in the app (they survive restarts in the data dir)
            for problem in pg.load_trained(TrainingSettings.from_env().adapters_dir):
                print(f"skipped a trained adapter: {problem}", flush=True)
        return pg

    # --- adapters added while serving -------------------------------------------------------------
    def add_adapter(self, info: AdapterInfo) -> AdapterInfo:
        """Load one more adapter; the pickers see it once it is in `adapters` (decoders rebuild on their own)."""
        with self._add_lock:
            if info.name in self.adapters:
                raise ValueError(f"adapter name {info.name!r} is taken")
            with self.engine.lock:  # no forward runs while the LoRA modules change
                self._adapter_set.add(info.name, info.path)
            self.adapters = {**self.adapters, info.name: info}
        return info

    def add_trained(self, path: Path) -> AdapterInfo:
        """Load an adapter trained in the app (`<data dir>/adapters/<name>/`, checked by registry.trained_entry)."""
        e = registry.trained_entry(Path(path), (self.base_name, self.base.source))
        return self.add_adapter(AdapterInfo(e.name, e.path, e.beta_train, e.judge, e.description))

    def load_trained(self, root: Path) -> list[str]:
        """Add the adapters trained in the app under `root` (see registry.trained_adapters); why any was skipped."""
        entries, skipped = registry.trained_adapters(root, (self.base_name, self.base.source))
        for e in entries:
            if e.name in self.adapters:
                skipped.append(f"{e.path}: the name {e.name!r} is taken")
                continue
            try:
                self.add_adapter(AdapterInfo(e.name, e.path, e.beta_train, e.judge, e.description))
            except Exception as err:  # noqa: BLE001 - one unusable folder must not stop the app
                skipped.append(f"{e.path}: {type(err).__name__}: {err}")
        return skipped

    # --- the boundary the wings use ---------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._tokenizer)

    def encode(self, prompt: str, history: Sequence[dict] = ()) -> tuple[int, ...]:
        """Prompt ids of a conversation, ending where the assistant's answer starts (user text stays plain text).

        `prompt` is checked text (check_prompt, where it entered); the token count (with the chat template and the
        conversation so far) is checked here, once."""
        from playground.lm.prompts import prompt_ids

        ids = prompt_ids(self._tokenizer, history, prompt, self.chat)
        check_prompt_tokens(len(ids))
        return ids

    def request(self, prompt_ids: Sequence[int], adapter: str | None, d: DecodeSettings, cfg_scale: float = 1.0,
                uncond_ids: Sequence[int] | None = None) -> "Request":
        """The engine request for one answer: `adapter=None` (or λ = 0 in logits mode) decodes the base model.

        cfg_scale γ ≠ 1 adds prompt guidance against `uncond_ids` (default: `self.uncond_ids()`)."""
        from playground.lm.request import Request

        uncond = None
        if cfg_scale != 1.0:
            uncond = tuple(uncond_ids) if uncond_ids is not None else self.uncond_ids()
        return Request(tuple(prompt_ids), adapter, d, cfg_scale=float(cfg_scale), uncond_prompt_ids=uncond)

    def uncond_ids(self, negative_prompt: str = "", history: Sequence[dict] = ()) -> tuple[int, ...]:
        """The unconditional branch of prompt guidance: the same chat template (system turn, earlier turns) with the
        user's text replaced by `negative_prompt` ("" = an empty user turn), ending where the answer starts."""
        from playground.lm.prompts import _template_ids, conversation, plain_ids

        tok = self._tokenizer
        if self.chat and tok.chat_template:
            ids = list(_template_ids(tok, conversation(history, negative_prompt)))
        else:
            bos = [tok.bos_token_id] if tok.bos_token_id is not None and getattr(tok, "add_bos_token", False) else []
            ids = bos + list(plain_ids(tok, "".join(f"{m['content']}\n" for m in history) + negative_prompt))
        return tuple(ids) or (tok.eos_token_id if tok.eos_token_id is not None else self.engine.pad_id,)

    def stream(self, requests: Sequence["Request"], should_stop: Callable[[], bool] = lambda: False) -> Iterator[list["Stream"]]:
        """Decode requests together; yields every request's stream after each step."""
        return self.engine.stream(requests, should_stop=should_stop)

    def teacher_force(self, prompt_ids: Sequence[int], adapter: "str | None | Sequence[str | None]",
                      d: "DecodeSettings | Sequence[DecodeSettings]", continuation: Sequence[int]) -> list["torch.Tensor"]:
        """Logits of the policy `d` describes (ℓ_λ of `adapter`; the base model for None) along a fixed continuation.

        Returns len(continuation) + 1 float32 tensors: item i is the next-token logits after the prompt and the
        first i continuation tokens (item 0 predicts continuation[0]); temperature and top-p are not applied.
        One policy: tensors [V]. Several (`adapter` and `d` as equal-length lists): one teacher-forced pass
        for all of them, tensors [policies, V] in their order.
        """
        several = not isinstance(adapter, str) and adapter is not None
        adapters, settings = (list(adapter), list(d)) if several else ([adapter], [d])  # type: ignore[arg-type]
        if len(adapters) != len(settings):
            raise ValueError(f"teacher_force: {len(adapters)} adapters but {len(settings)} decode settings")
        out = self.engine.step_logits([self.request(prompt_ids, a, s) for a, s in zip(adapters, settings)], list(continuation))
        return [x.float() if several else x[0].float() for x in out]

    def text(self, tokens: Sequence[int]) -> str:
        """An answer's text, without its stop token and without a trailing incomplete character (never a "�" the
        model did not produce: a character split over tokens shows once its last token is there)."""
        return self.detokenizer().feed(tokens).text

    def detokenizer(self) -> "Detokenizer":
        """Incremental text of one growing answer (feed it the tokens so far; only new ones are decoded)."""
        from playground.lm.detokenize import Detokenizer

        return Detokenizer(self._tokenizer, self._stop_ids)

    def answer_ids(self, tokens: Sequence[int]) -> list[int]:
        """The answer's token ids without stop tokens."""
        stop = set(self._stop_ids)
        return [t for t in tokens if t not in stop]

    def pieces(self, tokens: Sequence[int]) -> list[str]:
        """The text each (non-stop) token adds to the answer's text: a multi-byte character lands on the token that
        completes it (the tokens before it add ""); an incomplete character at the end adds nothing."""
        return self.detokenizer().feed(tokens).pieces

    def is_stop(self, token: int) -> bool:
        return token in self._stop_ids

    def judge(self, name: str):
        from playground.judges.judges import get_judge  # imported lazily: judges load embedding models

        return get_judge(name)

    def beta_train(self, adapter: str) -> float:
        return self.adapters[check_choice("adapter", adapter, sorted(self.adapters))].beta_train

    # --- side by side -----------------------------------------------------------------------------
    def turn(self, prompt: object, adapter: object, kl_strength=None, lam=None, **knobs) -> ChatTurn:
        """Validate one turn's knobs (from API or CLI) into a ChatTurn (chat/turn.py `build_turn`); knobs: mode, temperature,
        top_p, max_new_tokens, seed, and the realigned column's prompt guidance cfg_scale (1 = off) and negative_prompt."""
        guidance = knobs.pop("cfg_scale", 1.0), knobs.pop("negative_prompt", "")
        return build_turn(self.adapters, prompt, adapter, {"lam": lam, "kl_strength": kl_strength, **knobs}, *guidance)

    def requests(self, t: ChatTurn, histories: dict[str, Sequence[dict]] | None = None) -> dict[str, "Request"]:
        """The three columns' requests; each column continues its own conversation history."""
        histories = histories or {}
        def guide(c: str) -> dict:  # prompt guidance applies to the realigned column only
            if c != "realigned" or t.cfg_scale == 1.0:
                return {}
            return {"cfg_scale": t.cfg_scale, "uncond_ids": self.uncond_ids(t.negative_prompt, histories.get(c, ()))}

        return {c: self.request(self.encode(t.prompt, histories.get(c, ())), t.adapter if c != "base" else None, t.column(c),
                                **guide(c)) for c in COLUMNS}

    def answer(self, stream: "Stream", column: str, t: ChatTurn, text: str | None = None) -> Answer:
        """One column's answer so far; `text` is the stream's text when the caller detokenizes incrementally."""
        n = len(stream.tokens)
        d = t.column(column)
        settings = asdict(d) | {"column": column, "adapter": t.adapter, "lambda": d.lam,
                                "kl_strength": nominal_beta(t.beta_train, d.lam), "beta_train": t.beta_train,
                                "weights": self.engine.weights}
        settings.pop("lam")
        hit_stop = n > 0 and self.is_stop(stream.tokens[-1])
        return Answer(
            text=self.text(stream.tokens) if text is None else text,
            tokens=n,
            kl_to_base=stream.kl_mean,
            kl_to_base_sum=stream.kl_sum,
            entropy=stream.entropy_mean,
            shifted_share=sum(stream.shifted) / n if n else 0.0,
            tokens_per_s=n / stream.elapsed_s if stream.elapsed_s > 0 else 0.0,
            first_token_s=stream.first_token_s,
            done=stream.done,
            truncated=stream.done and not hit_stop and n >= d.max_new_tokens,
            settings=settings,
        )

    def add_rewards(self, t: ChatTurn, answers: dict[str, Answer]) -> None:
        """Score every column with the adapter's judge (the reward it was trained towards)."""
        if not answers:
            return
        judge = self.judge(self.adapters[t.adapter].judge)
        texts = [a.text for a in answers.values()]
        for a, r in zip(answers.values(), judge.score([t.prompt] * len(texts), texts)):
            a.reward = float(r)

    def side_by_side(self, t: ChatTurn) -> dict[str, Answer]:
        """The three columns' answers to one turn, decoded together (the chat's own decoder, chat/conversation.py,
        without its request time limit), judged."""
        from playground.chat.conversation import Conversation, stream_turn

        answers: dict[str, Answer] = {}
        for _, answers in stream_turn(self, Conversation(), t, timed=False):
            pass
        return answers
