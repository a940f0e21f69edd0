"""Every check, done once where input enters (UI event, Gradio API, CLI), into the typed objects of `settings`.

Each check raises `InputError` with one message naming the parameter, what is allowed and what was given;
the UI shows it as a toast, the CLI as one `error: ...` line with exit code 2. Nothing is clamped silently.
After this module the objects are passed on and never re-parsed.
"""
from __future__ import annotations

import math
from typing import Sequence

from playground.settings.request import (CONTROLS, DEFAULT_DECODE, LIMITS, MODES, SCHEDULERS, SWEEP, DecodeSettings,
                                         GuidanceSettings, Limits, SweepSettings)
from playground.settings.server import THROUGHPUT, job_estimate

_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060\u00ad"  # BOM, zero-width spaces and joiners, soft hyphen


class InputError(ValueError):
    """Bad user input; the message is shown to the user as is."""


def _fmt(value: float) -> str:
    """Numbers as people write them: 2147483647, not 2.14748e+09; 0.5, not 0.500000."""
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:.6g}"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_number(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    """A finite number within [low, high] (or (low, high] when low_open). Booleans and text are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise InputError(f"{name} must be a number; got {_show(value)}") from None
        else:
            kind = "nothing" if value is None else type(value).__name__
            raise InputError(f"{name} must be a number; got {kind} {_show(value) if value is not None else ''}".rstrip())
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number; got {value}")
    below = value <= low if low_open else value < low
    if below or value > high:
        left = "(" if low_open else "["
        raise InputError(f"{name} must be in {left}{_fmt(low)}, {_fmt(high)}]; got {_fmt(value)}")
    return value


def _whole(value: object) -> int | None:
    """An int given as an int (not a bool) or as digits; None for anything else (checked as a number)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and value.strip().isascii():
        try:
            return int(value)
        except ValueError:  # more digits than Python converts
            return None
    return None


def _show_int(n: int) -> str:
    text = str(n)
    return text if len(text) <= 40 else f"{text[:20]}… ({len(text.lstrip('-'))} digits)"


def check_int(name: str, value: object, low: int, high: int) -> int:
    """A whole number within [low, high]. Booleans are refused; ints (and digit strings) are compared and echoed
    exactly (2**64 is 18446744073709551616, not 1.84467e+19); a float must be whole (3.0 passes, 3.5 does not)."""
    exact = _whole(value)
    if exact is not None:
        if not low <= exact <= high:
            raise InputError(f"{name} must be in [{low}, {high}]; got {_show_int(exact)}")
        return exact
    number = check_number(name, value, low, high)
    if number != int(number):
        raise InputError(f"{name} must be a whole number in [{low}, {high}]; got {_fmt(number)}")
    return int(number)


def check_text(name: str, value: object, max_chars: int) -> str:
    """Plain text: a str, valid Unicode (no lone surrogates), not blank, within the character cap."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text; got {'nothing' if value is None else type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{name} contains invalid characters (unpaired surrogates); paste it as plain text") from None
    if not value.strip().strip(_INVISIBLE).strip():
        raise InputError(f"{name} is empty; type a message first")
    if len(value) > max_chars:
        raise InputError(f"{name} has {len(value)} characters; the limit is {max_chars}")
    return value


def check_prompt(prompt: object, limits: Limits = LIMITS) -> str:
    """A non-empty prompt no longer than the character cap (tokens are checked after the chat template)."""
    return check_text("prompt", prompt, limits.max_prompt_chars)


def check_prompt_tokens(n_tokens: int, limits: Limits = LIMITS) -> None:
    if n_tokens > limits.max_prompt_tokens:
        raise InputError(f"prompt has {n_tokens} tokens (with the conversation so far); the limit is {limits.max_prompt_tokens}")


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"unknown {name} {_show(value)}; available: {', '.join(map(str, allowed)) or '(none)'}")
    return value


def lambda_from(kl_strength: object | None, lam: object | None, beta_train: float, limits: Limits = LIMITS) -> float:
    """λ from either the KL strength β (λ = β_train / β) or λ itself, range-checked."""
    if (kl_strength is None) == (lam is None):
        raise InputError("give exactly one of kl_strength (β) or lambda (λ)")
    if lam is not None:
        return check_number("lambda", lam, limits.min_lambda, limits.max_lambda)
    beta = check_number("kl_strength", kl_strength, limits.min_kl_strength, limits.max_kl_strength)
    value = beta_train / beta
    if not limits.min_lambda <= value <= limits.max_lambda:
        low = beta_train / limits.max_lambda
        raise InputError(
            f"kl_strength {_fmt(beta)} gives λ = β_train/β = {value:.3g}, outside [{_fmt(limits.min_lambda)}, "
            f"{_fmt(limits.max_lambda)}]; use kl_strength ≥ {low:.3g} for this adapter (β_train = {beta_train:g})"
        )
    return value


def decode_settings(*, lam: object | None = None, kl_strength: object | None = None, beta_train: float = 1.0,
                    mode: object = DEFAULT_DECODE.mode, temperature: object = DEFAULT_DECODE.temperature,
                    top_p: object = DEFAULT_DECODE.top_p, max_new_tokens: object = DEFAULT_DECODE.max_new_tokens,
                    seed: object = DEFAULT_DECODE.seed, limits: Limits = LIMITS) -> DecodeSettings:
    """The one entry point for an answer's knobs: raw values in, a checked `DecodeSettings` out (defaults: the
    settings' own, `DEFAULT_DECODE`)."""
    return DecodeSettings(
        lam=lambda_from(kl_strength, lam, beta_train, limits),
        mode=check_choice("mode", mode, MODES),
        temperature=check_number("temperature", temperature, 0.0, limits.max_temperature),
        top_p=check_number("top_p", top_p, 0.0, 1.0, low_open=True),
        max_new_tokens=check_int("max_new_tokens", max_new_tokens, 1, limits.max_new_tokens),
        seed=check_int("seed", seed, 0, limits.max_seed),
    )


def guidance_settings(*, digit: object = 3, guidance_scale: object = 3.0, num_samples: object = 16, steps: object = 50,
                      scheduler: object = "ddim", seed: object = 0, limits: Limits = LIMITS) -> GuidanceSettings:
    """One classifier-free-guidance request, checked."""
    return GuidanceSettings(
        digit=check_int("digit", digit, 0, 9),
        guidance_scale=check_number("guidance_scale", guidance_scale, 0.0, limits.max_guidance),
        num_samples=check_int("num_samples", num_samples, 1, limits.max_diffusion_images),
        steps=check_int("steps", steps, 1, limits.max_diffusion_steps),
        scheduler=check_choice("scheduler", scheduler, list(SCHEDULERS)),
        seed=check_int("seed", seed, 0, limits.max_seed),
    )


def parse_floats(name: str, text: object, base_words: Sequence[str] = ()) -> list[float]:
    """'0, 0.5,1' → [0.0, 0.5, 1.0]; words in `base_words` mean inf; an InputError naming `name` otherwise."""
    if isinstance(text, str):
        items: list = text.replace(";", ",").split(",")
    elif isinstance(text, (list, tuple)):
        items = list(text)
    else:
        raise InputError(f"{name}: give comma-separated numbers, e.g. 0,0.5,1; got {_show(text)}")
    out: list[float] = []
    for item in items:
        item = item.strip() if isinstance(item, str) else item
        if item == "":
            continue
        if isinstance(item, str) and item.lower() in base_words:
            item = "inf"
        if isinstance(item, bool):
            raise InputError(f"{name}: {item!r} is not a number; give comma-separated numbers, e.g. 0,0.5,1")
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            raise InputError(f"{name}: {_show(item)} is not a number; give comma-separated numbers, e.g. 0,0.5,1") from None
    if not out:
        raise InputError(f"{name}: give at least one value")
    return out


BASE_WORDS = ("inf", "base")  # in a kl_strengths list: β = ∞, i.e. λ = 0 (the base model)
HF_JUDGE_PREFIX = "hf:"


def check_judge(name: str, value: object, judges: Sequence[str]) -> str:
    """A built-in judge, or `hf:<reward model>` (a Hub id or local dir, loaded when used)."""
    if isinstance(value, str) and value.startswith(HF_JUDGE_PREFIX) and value[len(HF_JUDGE_PREFIX):].strip():
        return value
    return check_choice(name, value, judges)


def check_prompts(prompts: object, limits: Limits = LIMITS) -> tuple[str, ...]:
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not prompts:
        raise InputError("prompts: give at least one prompt (a list, one prompt per item)")
    if len(prompts) > limits.max_sweep_prompts:
        raise InputError(f"prompts: {len(prompts)} given; the limit is {limits.max_sweep_prompts}")
    for i, p in enumerate(prompts, 1):
        try:
            check_prompt(p, limits)
        except InputError as err:
            raise InputError(f"prompts (#{i}): {err}") from None
    return tuple(prompts)


def _grid(name: str, values: object, low: float, high: float, limits: Limits) -> list[float]:
    """Parsed, range-checked, de-duplicated and sorted; inf passes for kl_strengths (the base model)."""
    parsed = parse_floats(name, values, BASE_WORDS if name == "kl_strengths" else ())
    out = sorted({v if v == math.inf and name == "kl_strengths" else check_number(name, v, low, high) for v in parsed})
    if len(out) > limits.max_sweep_values:
        raise InputError(f"{name}: {len(out)} values; the limit is {limits.max_sweep_values}")
    return out


def sweep_settings(adapters: dict, judges: Sequence[str], *, adapter: object, prompts: object, lambdas: object = None,
                   kl_strengths: object = None, temperatures: object = SWEEP.temperatures, samples: object = SWEEP.samples,
                   max_new_tokens: object = SWEEP.max_new_tokens, top_p: object = SWEEP.top_p, seed: object = 0,
                   mode: object = "logits", judge: object = None, heldout_judge: object = None,
                   control: object = None, ns: object = None, gammas: object = None, negative_prompt: object = "",
                   limits: Limits = LIMITS) -> SweepSettings:
    """Check a whole sweep once. `adapters`: name → entry with `beta_train` and `judge` (registry or Playground).

    control (CONTROLS; default from `mode`: "weights" → weights, else dera) picks the knob: lambdas for dera and
    weights, ns for bon, gammas for cfg; bon and cfg take one λ (default 0, the base model) as their policy."""
    if lambdas is not None and kl_strengths is not None:
        raise InputError("give lambdas or kl_strengths, not both")
    control = check_choice("control", "weights" if control is None and mode == "weights" else control or "dera", CONTROLS)
    if control == "weights":
        mode = "weights"
    elif mode == "weights":
        raise InputError(f"mode: weights is the 'weights' control; got control {control!r} with mode 'weights'")
    if ns is not None and control != "bon":
        raise InputError(f"ns: best-of-n sizes belong to control 'bon'; got control {control!r}")
    if gammas is not None and control != "cfg":
        raise InputError(f"gammas: guidance scales belong to control 'cfg'; got control {control!r}")
    if control in ("bon", "cfg") and lambdas is None and kl_strengths is None:
        lambdas = [0.0]
    name = check_choice("adapter", adapter, sorted(adapters))
    beta_train = float(adapters[name].beta_train)
    if kl_strengths is not None:
        betas = _grid("kl_strengths", kl_strengths, limits.min_kl_strength, limits.max_kl_strength, limits)
        lams = sorted({0.0 if b == math.inf else lambda_from(b, None, beta_train, limits) for b in betas})
    else:
        lams = _grid("lambdas", SWEEP.lambdas if lambdas is None else lambdas, limits.min_lambda, limits.max_lambda, limits)
    if control in ("bon", "cfg") and len(lams) != 1:
        raise InputError(f"lambdas: control {control!r} takes one λ (the policy it wraps); got {len(lams)} values")
    temps = _grid("temperatures", temperatures, 0.0, limits.max_temperature, limits)
    k = check_int("samples", samples, 1, limits.max_samples_per_setting)
    n_values = tuple(check_int("ns", v, 1, limits.max_bon_n) for v in _grid("ns", "1" if ns is None else ns, 1,
                                                                             limits.max_bon_n, limits))
    g_values = tuple(_grid("gammas", "1" if gammas is None else gammas, 0.0, limits.max_cfg_scale, limits))
    negative = "" if negative_prompt in (None, "") else check_text("negative_prompt", negative_prompt, limits.max_prompt_chars)
    knob, count = {"bon": ("max n", max(n_values)), "cfg": ("gammas", len(g_values))}.get(control, ("lambdas", len(lams)))
    per_prompt = count * len(temps) * k
    if per_prompt > limits.max_sweep_rows:
        raise InputError(f"{knob} × temperatures × samples = {count} × {len(temps)} × {k} = {per_prompt} "
                         f"settings per prompt; the limit is {limits.max_sweep_rows}")
    decode = decode_settings(lam=0.0, mode=mode, temperature=0.0, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                             limits=limits)
    check_int("seed", decode.seed, 0, limits.max_seed - k * (max(n_values) if control == "bon" else 1))
    checked = check_prompts(prompts, limits)
    check_job_cost(len(checked) * per_prompt * (2 if control == "cfg" else 1), max(map(len, checked)),  # cfg: 2× rows
                   decode.max_new_tokens, limits)
    proxy = check_judge("judge", judge, judges) if judge else check_judge("judge", adapters[name].judge, judges)
    others = sorted((j for j in judges if j != proxy), key=lambda j: j != "on_topic")  # "does it answer?" first
    held = check_judge("heldout_judge", heldout_judge, judges) if heldout_judge else (others[0] if others else proxy)
    return SweepSettings(name, beta_train, checked, tuple(lams), tuple(temps), k, decode, proxy, held, control,
                         n_values, g_values, negative)


def cfg_guidance(cfg_scale: object = 1.0, negative_prompt: object = "", limits: Limits = LIMITS) -> tuple[float, str]:
    """(γ, negative prompt) of one prompt-guided answer: γ in [0, max_cfg_scale] (1 = off), the text "" or plain text."""
    gamma = check_number("cfg_scale", 1.0 if cfg_scale is None else cfg_scale, 0.0, limits.max_cfg_scale)
    negative = "" if negative_prompt in (None, "") else check_text("negative_prompt", negative_prompt, limits.max_prompt_chars)
    return gamma, negative


def check_job_cost(rows: int, prompt_chars: int, max_new_tokens: int, limits: Limits = LIMITS) -> float:
    """Refuse a batched job this hardware cannot finish in time or memory; returns the estimated seconds."""
    seconds, kv = job_estimate(rows, prompt_chars, max_new_tokens)
    if seconds > limits.max_job_seconds:
        raise InputError(f"this job would take about {seconds / 60:.0f} min here ({rows} answers × {max_new_tokens} tokens at "
                         f"≈ {THROUGHPUT.sweep_row_tokens_per_s:.0f} tokens/s); the limit is {limits.max_job_seconds / 60:.0f} "
                         f"min: use fewer prompts, settings, samples or tokens")
    if kv > limits.max_job_kv_bytes:
        raise InputError(f"this job would need about {kv / 1e9:.1f} GB of KV cache (long prompts × many rows); the limit is "
                         f"{limits.max_job_kv_bytes / 1e9:.1f} GB: use shorter prompts or fewer samples")
    return seconds
