"""The side-by-side transcript as HTML: one turn per row (the question across, the three answers under it).

One scroll for all columns, so a turn's answers are always side by side; on a phone the answers become a
swipeable row (CSS in ui/style.py). Only presentation: the rows come from `playground.chat.conversation`.
"""
from __future__ import annotations

from html import escape

from playground.chat.conversation import TITLES, Cell, Conversation
from playground.chat.readouts import ENTROPY_MEANS, JUDGE_MEANS, KL_MEANS
from playground.settings.request import COLUMNS

SHORT = {"base": "Base", "realigned": "Realigned", "tuned": "Tuned"}
EMPTY = ("Ask something: the base model, the realigned mix and the tuned model answer side by side, "
         "one row per turn.")
LOADING = "loading the model (first start converts it, ≈ 30 s)…"
# A thumbs-up drawn inline (an emoji needs an emoji font, which some desktops and headless browsers lack)
THUMB = ('<svg aria-hidden="true" width="13" height="13" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
         'stroke-width="2" stroke-linecap="round" stroke-linejoin="round" style="vertical-align:-2px">'
         '<path d="M7 10v11H3V10h4zM7 10l4-8a3 3 0 0 1 3 3v4h6a2 2 0 0 1 2 2.3l-1.4 8A2 2 0 0 1 18.6 21H7"/></svg>')
PREFER = f"{THUMB} Prefer this one"
PREFER_TIP = "Record that this answer is better than the other two (two votes, with the settings that regenerate them)"
COPY_TIP = "Copy this answer's text to the clipboard"
REGEN_TIP = "Decode this column again with its next seed; the other two answers stay"
EDIT_TIP = "Put this question back in the box: Send replaces it (and the turns after it) with the new answers"
# js_on_load of the gr.HTML: the in-answer "continue" link and a column's "Regenerate" trigger the component's
# click event with an action (and the column), "Prefer this one" its select event with the column, a question's
# "Edit" its edit event with the turn; "Copy" copies the answer's text in the browser (no server call). A newly
# added turn is scrolled to the top of the transcript (its question in view, not the answers' ends).
JS_ON_LOAD = """
const copyText = async (text) => {
  try { await navigator.clipboard.writeText(text); return true; } catch (e) {}
  const box = document.createElement('textarea');
  box.value = text; box.style.position = 'fixed'; box.style.opacity = '0';
  document.body.appendChild(box); box.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch (e) {}
  box.remove();
  return ok;
};
element.addEventListener('click', async (e) => {
  const a = e.target.closest('a[data-act]');
  if (!a) return;
  e.preventDefault();
  const act = a.dataset.act;
  if (act === 'copy') {
    const shown = a.closest('article').querySelector('.a-text').cloneNode(true);
    shown.querySelectorAll('.continue, .continue-off, .cursor').forEach((n) => n.remove());
    const ok = await copyText(shown.textContent.replace(/\s+$/, ''));
    a.textContent = ok ? 'Copied ✓' : 'Copy failed: select the text';
    setTimeout(() => { a.textContent = 'Copy'; }, 1500);
  } else if (act === 'prefer') trigger('select', {action: 'prefer', column: a.dataset.col});
  else if (act === 'edit') trigger('edit', {action: 'edit', turn: Number(a.dataset.turn)});
  else trigger('click', {action: act, column: a.dataset.col});
});
let turns = 0;
watch('value', () => {
  const rows = element.querySelectorAll('section.turn');
  if (rows.length > turns) {
    const box = element.closest('#transcript') || element;
    const head = element.querySelector('.tx-head');
    box.scrollTop = rows[rows.length - 1].offsetTop - (head ? head.offsetHeight : 0) - 4;
  }
  turns = rows.length;
});
"""


def _text(cell: Cell) -> str:
    if cell.done and cell.marks:
        return "".join(f'<mark class="shift">{escape(t)}</mark>' if s else escape(t) for t, s in cell.marks)
    return escape(cell.text)


def _tail(cell: Cell, last: bool) -> str:
    if not cell.done:
        return '<span class="cursor">▍</span>'
    if not cell.can_continue:
        return ""
    why = cell.cut_reason  # "token limit", "time limit reached" or "stopped"
    if last:
        return f' <a class="continue" href="#" data-act="continue">… ({why} — continue)</a>'
    return f' <span class="continue-off">… ({why})</span>'


def _readout(cell: Cell) -> str:
    if not cell.done:  # while streaming: the live token count and speed (its own class: not the finished readout)
        return f'<div class="ro-live">{escape(cell.live)}</div>' if cell.live else ""
    parts = " · ".join(f'<span title="{escape(tip)}">{escape(text)}</span>' for text, tip in cell.parts)
    warn = f' · <span class="warn">⚠️ {escape(cell.warning)}</span>' if cell.warning else ""
    return f'<div class="ro">{parts}{warn}</div>'


def _prefer(column: str, preferred: str | None, votable: bool) -> str:
    """Under an answer: the "Prefer this one" link (latest finished turn, no vote yet), or the vote once cast."""
    if preferred == column:
        return '<div class="pref"><span class="preferred">✓ Preferred</span></div>'
    if votable and preferred is None:
        return (f'<div class="pref"><a class="prefer" href="#" data-act="prefer" data-col="{column}" '
                f'title="{escape(PREFER_TIP)}">{PREFER}</a></div>')
    return ""


def _tools(column: str, cell: Cell, regen: bool) -> str:
    """Under a finished answer: Copy, and on the latest turn (nothing streaming) Regenerate this column."""
    if not cell.done:
        return ""
    links = [f'<a class="tool" href="#" data-act="copy" data-col="{column}" title="{escape(COPY_TIP)}">Copy</a>']
    if regen:
        links.append(f'<a class="tool" href="#" data-act="regen" data-col="{column}" title="{escape(REGEN_TIP)}">'
                     '↻ Regenerate</a>')
    return f'<div class="tools">{"".join(links)}</div>'


def _answer(column: str, cell: Cell | None, last: bool, status: str, pref: str = "", regen: bool = False) -> str:
    if cell is None:
        body = f'<div class="a-text wait">{escape(status or "…")}</div>'
    else:
        body = (f'<div class="a-text">{_text(cell)}{_tail(cell, last)}</div>{_readout(cell)}{_tools(column, cell, regen)}'
                f'{pref}')
    return f'<article class="a col-{column}"><div class="a-title">{escape(SHORT[column])}</div>{body}</article>'


def _turn(i: int, prompt: str, cells: dict[str, Cell] | None, last: bool, status: str = "",
          preferred: str | None = None, votable: bool = False, editable: bool = False) -> str:
    answers = "".join(_answer(c, cells[c] if cells else None, last, status, _prefer(c, preferred, votable), votable)
                      for c in COLUMNS)
    edit = (f'<a class="tool edit" href="#" data-act="edit" data-turn="{i}" title="{escape(EDIT_TIP)}">✎ Edit</a>'
            if editable else "")
    return (f'<section class="turn" data-turn="{i}"><div class="q"><span class="who">You</span>'
            f'<span class="q-text">{escape(prompt)}</span>{edit}</div><div class="answers">{answers}</div></section>')


def render(conv: Conversation, pending: str | None = None, status: str = "", actions: bool = True) -> str:
    """The whole transcript; `pending` is a question sent but not answered yet (shown at once, with `status`).
    Once nothing streams: Copy under every answer, Regenerate (per column) and "Prefer this one" under the
    latest turn's, Edit on every question. `actions=False` (answers shown from a share link, not this session's
    conversation): Copy only."""
    head = "".join(f'<div class="h col-{c}">{escape(TITLES[c])}</div>' for c in COLUMNS)
    idle = actions and pending is None and not (conv.rows and conv.rows[-1].streaming)
    rows = [_turn(i, r.turn.prompt, r.cells, actions and i == conv.turns - 1, preferred=r.preferred,
                  votable=i == conv.turns - 1 and idle, editable=idle) for i, r in enumerate(conv.rows)]
    if pending is not None:
        rows.append(_turn(conv.turns, pending, None, True, status))
    body = "".join(rows) or f'<p class="empty">{escape(EMPTY)}</p>'
    return f'<div class="tx"><div class="tx-head">{head}</div>{body}</div>'


def legend(judge: str) -> str:
    """The info under the transcript: what each readout means, one line each, and what the highlight marks."""
    return ("**Reading the numbers under each answer** (hover one for details)\n\n"
            f"- **drift** = {KL_MEANS}\n- **randomness** = {ENTROPY_MEANS}\n"
            f"- **judge score** = {JUDGE_MEANS.get(judge, judge)}\n"
            "- <mark>Highlighted</mark> words are where an answer departs from the base model's most likely next word")
