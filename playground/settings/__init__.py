"""Every limit and default of the playground, as typed dataclasses, each knob with the direction it moves the output.

- `request`: per-request parameters (`DecodeSettings`, `SweepSettings`, `GuidanceSettings`, `Limits`, the tabs'
  starting points): what one answer, sweep or diffusion request carries from the UI down to the sampler.
- `validation`: raw input (UI event, Gradio API, CLI) → those objects, checked once where the input enters.
- `server`: server configuration (weight path, queue and pools, the decode loop's caps, cost estimates).
- `votes`: the vote store and training on votes (`FeedbackSettings`, `TrainingSettings`).
- `paths`: where things live on disk (repository, cache, data directory, vote salt).

Nothing here imports torch, gradio or a playground module outside this package; the modules import one
way: validation → request, server → request, votes → paths, request → paths.
"""
