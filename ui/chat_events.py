"""Event steps of the chat tab: show the question, stream, restore the buttons; the /chat API; share links;
"Prefer this one" under the latest turn's answers (and its /prefer API).

Wiring only: the turn logic is in `playground.chat.conversation` and `playground.chat.actions` (the `TurnAction` an
event asks for, dispatched once), the links in `playground.chat.share`, the votes in `playground.feedback`
(`DuelService.vote_columns`).
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import gradio as gr
from gradio.context import Context

from playground.chat.actions import TurnAction, perform, preview
from playground.chat.conversation import Conversation, run_turn, turn_with
from playground.feedback.columns import mark_preferred
from playground.feedback.vote import FeedbackError, FeedbackUnavailable
from playground.settings.request import COLUMNS
from playground.chat.share import link_query, parse_link
from playground.chat.shared_answers import compare, row_record, shown_conversation
from playground.settings.validation import InputError
from ui import pools
from ui.components import Dropdown, TranscriptEvent, plain
from ui.transcript import LOADING, SHORT, render

# Runs in the browser after the server made the link's query: full URL, copied to the clipboard where allowed.
COPY_JS = """(q) => {
  if (!q || q[0] !== '?') return q;
  const url = location.origin + location.pathname + q;
  try { navigator.clipboard.writeText(url).catch(() => {}); } catch (e) {}
  return url;
}"""


VOTE_EVENT = pools.VOTES


class StreamEvents:
    def __init__(self, pg, stops, conv_state, pending, transcript, prompt, send, stop, regen, lm_event: dict, quick: dict):
        self.pg, self.stops = pg, stops
        self.conv_state, self.pending, self.transcript, self.prompt = conv_state, pending, transcript, prompt
        self.send, self.stop, self.regen = send, stop, regen
        self.lm_event, self.quick = lm_event, quick

    def chain(self, dep, is_ready):
        """After a quick check (`dep`, output: the pending State, a TurnAction): show the question, stream, restore
        the buttons (the returned event; more steps can follow it)."""
        def show(action: TurnAction, conv):
            shown = preview(conv, action)  # the turns kept and the question (an edited one replaces the turns after it)
            if shown is None:  # the last turn's answers change in place
                html, box = gr.skip(), gr.skip()
            else:
                html = render(*shown, "…" if is_ready(self.pg) else LOADING)
                box = "" if action.turn is not None else gr.skip()  # a new question leaves the prompt box
            return html, box, gr.Button(visible=False), gr.Button(visible=True), gr.Button(interactive=False)

        buttons = [self.send, self.stop, self.regen]
        return (dep.success(show, [self.pending, self.conv_state], [self.transcript, self.prompt, *buttons], **self.quick)
                .success(self.stream, [self.pending, self.conv_state], [self.transcript, self.conv_state],
                         **self.lm_event, show_progress="hidden", api_visibility="private")
                .then(lambda: (gr.Button(visible=True), gr.Button(visible=False), gr.Button(interactive=True)),
                      None, buttons, **self.quick))

    def stream(self, action: TurnAction, conv, request: gr.Request):
        should_stop = self.stops.checker(request.session_hash)
        try:
            for new, _ in perform(self.pg, conv, action, should_stop):
                yield render(new), new
        except InputError as err:  # a toast; the conversation stays as it was
            gr.Warning(plain(err))
            yield render(conv), conv

    def api_chat(self, message, conv, adapter, kl, mode, temperature, top_p, max_new, seed, request: gr.Request):
        """The /chat route (gradio_client): the three columns as chat messages, streamed."""
        self.stops.clear(request.session_hash)
        try:
            knobs = dict(adapter=adapter, kl_strength=kl, mode=mode, temperature=temperature, top_p=top_p,
                         max_new_tokens=max_new, seed=seed)  # raw: λ = β_train/β needs the adapter's β_train (checked first)
            for new, _ in run_turn(self.pg, conv, message, knobs, self.stops.checker(request.session_hash)):
                yield [new.display(c) for c in COLUMNS] + [new]
        except InputError as err:
            raise gr.Error(str(err), print_exception=False) from None

    def wire_share(self, copy, share_box, shared_row, shared_md, loading, fields: list, is_ready, store=None,
                   shared_state=None) -> None:
        """Copy link (the last turn's prompt and settings in the URL, and `answers=<id>` of the answers kept in
        `store`, a SharedAnswers) and opening one (fills the settings and shows the kept answers at once)."""
        pg = self.pg

        def make_link(conv):
            if not conv.rows:
                raise gr.Error("send a message first: the link replays the last turn", print_exception=False)
            if conv.rows[-1].streaming:
                raise gr.Error("wait for the answers to finish", print_exception=False)
            query = link_query(conv.rows[-1], pg.adapters)
            if store is not None:
                try:
                    query += "&" + urlencode({"answers": store.put(row_record(conv.rows[-1], query))})
                except (OSError, InputError) as err:  # the link still replays them; it cannot show them at once
                    gr.Warning(plain(f"the answers could not be kept on the server ({err}); the link replays them"))
            return gr.Textbox(value="?" + query, visible=True)

        copy.click(make_link, self.conv_state, share_box, **self.quick).success(None, share_box, share_box, js=COPY_JS)
        prompt, adapter, lam, mode, temperature, top_p, max_new, seed = fields
        extra = [self.transcript, shared_state] if shared_state is not None else []

        def stored(params: dict, shared) -> dict | None:
            """The answers kept for this link, when it names them and they belong to its prompt and settings."""
            if store is None or "answers" not in params:
                return None
            record = store.get(params["answers"])  # InputError for a malformed id (not echoed)
            if record is None:
                gr.Warning("answers: the shared answers are no longer kept on this server; press Replay to decode them")
                return None
            own = {k: v for k, v in params.items() if k != "answers"}
            if dict(parse_qsl(record.get("query", ""))) != own or record["prompt"] != shared.prompt:
                gr.Warning("answers: the kept answers belong to another link; press Replay to decode these settings")
                return None
            return record

        def on_load(request: gr.Request):
            skip = [gr.skip()] * (len(fields) + 2)
            banner = gr.HTML(visible=not is_ready(pg))
            params = dict(request.query_params)
            try:
                shared = parse_link(params, pg.adapters)
                record = stored(params, shared) if shared is not None else None
            except InputError as err:
                gr.Warning(plain(f"share link: {err}"))  # values from the URL: escaped, never markup
                return skip + [banner] + [gr.skip()] * len(extra)
            if shared is None:
                return skip + [banner] + [gr.skip()] * len(extra)
            for note in shared.notes:
                gr.Warning(plain(note))
            shown = [gr.skip(), None]
            message = "**Opened from a share link**: the prompt and settings are filled in. Replay decodes the same answers."
            if record is not None:
                turn = turn_with(pg.adapters, Conversation(), shared.prompt, shared.adapter, shared.decode)
                shown = [render(shown_conversation(record, turn), actions=False), record]
                message = ("**Opened from a share link**: below are the shared answers as they were decoded, kept on "
                           "this server. **Replay** decodes them again here and checks them token for token.")
            return [shared.prompt, Dropdown(value=shared.adapter, info=pg.adapters[shared.adapter].description),
                    shared.lam,  # the λ slider (a link may carry β, as old links do: λ = β_train/β)
                    shared.mode, shared.temperature, shared.top_p, shared.max_new_tokens, shared.seed,
                    gr.Row(visible=True), message, banner] + shown[:len(extra)]

        Context.root_block.load(on_load, None, [*fields, shared_row, shared_md, loading, *extra], **self.quick)


def verify_replay(conv, record) -> None:
    """After Replay of a link that showed its answers: a toast saying whether the new tokens are the shared ones."""
    if not record:
        return
    diff = {c: i for c, i in compare(record, conv).items() if i is not None}
    if not diff:
        gr.Info("Replay matches: all three answers are the shared ones, token for token.")
    else:
        where = ", ".join(f"{SHORT[c]} from token {i + 1}" for c, i in diff.items())
        gr.Warning(plain(f"Replay differs from the shared answers: {where} (other weights, or stopped early)."))


def wire_prefer(service, transcript, conv_state, column_api, api_trigger, api_result) -> None:
    """"Prefer this one" (the transcript's select event, with the column) stores the votes and marks the answer;
    a refusal (no finished turn, store unavailable) is a warning toast and changes nothing. /prefer is the same
    for gradio_client: column in, {column, votes} out, errors as AppError."""
    def prefer(conv, column, request: gr.Request):
        ids = service.vote_columns(conv, column, request.session_hash)
        new = mark_preferred(conv, column)
        return render(new), new, ids

    def on_select(conv, evt: TranscriptEvent, request: gr.Request):
        column = evt.column
        try:
            html, new, ids = prefer(conv, column, request)
        except (FeedbackError, FeedbackUnavailable) as err:
            gr.Warning(plain(err))
            return gr.skip(), gr.skip()
        gr.Info(f"Saved: {SHORT[column]} preferred over the other two (votes #{ids[0]} and #{ids[1]}).")
        return html, new

    def on_api(column, conv, request: gr.Request):
        try:
            html, new, ids = prefer(conv, column, request)
        except (FeedbackError, FeedbackUnavailable) as err:
            raise gr.Error(str(err), print_exception=False) from None
        return html, new, {"column": column, "votes": ids}

    transcript.select(on_select, conv_state, [transcript, conv_state], api_visibility="private", **VOTE_EVENT)
    api_trigger.click(on_api, [column_api, conv_state], [transcript, conv_state, api_result], api_name="prefer",
                      **VOTE_EVENT)
