"""App-wide CSS and the small page script (passed to `launch(css=..., js=...)` by app.py)."""
from __future__ import annotations

CSS = """
/* Gradio's bundled SemiBold (600) files of its default fonts are tiny subsets (Source Sans Pro: "A", "B" and some
   Cyrillic; IBM Plex Mono: 75 glyphs), so bold text mixed two fonts ("ʙase model"): weight 600 uses the full Bold */
@font-face {font-family: 'Source Sans Pro'; font-weight: 600; font-style: normal;
  src: url('static/fonts/SourceSansPro/SourceSansPro-Bold.woff2') format('woff2')}
@font-face {font-family: 'IBM Plex Mono'; font-weight: 600; font-style: normal;
  src: url('static/fonts/IBMPlexMono/IBMPlexMono-Bold.woff2') format('woff2')}
.gradio-container {max-width: 1400px !important}
#transcript {max-height: 64vh; overflow-y: auto !important; border: 1px solid var(--border-color-primary);
  border-radius: var(--radius-lg); background: var(--background-fill-primary); padding: 0 !important}
#transcript .tx-head {position: sticky; top: 0; z-index: 2; display: grid; grid-template-columns: repeat(3, minmax(0, 1fr));
  gap: 14px; padding: 6px 12px; background: var(--background-fill-secondary); font-weight: 600;
  font-size: var(--text-sm); border-bottom: 1px solid var(--border-color-primary)}
#transcript .turn {padding: 10px 12px 12px; border-bottom: 1px solid var(--border-color-primary)}
#transcript .q {margin-bottom: 8px; padding: 6px 10px; border-radius: 8px; background: var(--color-accent-soft);
  white-space: pre-wrap; overflow-wrap: anywhere}
#transcript .who {font-weight: 700; margin-right: 8px}
#transcript .answers {display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 14px}
#transcript .a {min-width: 0}
#transcript .a-title {display: none}
#transcript .a-text {white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.45}
#transcript .wait {color: var(--body-text-color-subdued); font-style: italic}
#transcript .ro, #transcript .ro-live {margin-top: 6px; font-size: var(--text-xs); color: var(--body-text-color-subdued); line-height: 1.4}
#transcript .ro span[title] {border-bottom: 1px dotted var(--border-color-primary); cursor: help}
#transcript .warn {color: #b45309}
#transcript .continue {font-weight: 600; font-size: var(--text-sm); color: var(--link-text-color);
  text-decoration: underline; cursor: pointer}
#transcript .continue-off {color: var(--body-text-color-subdued)}
#transcript .pref {margin-top: 6px}
#transcript .prefer {display: inline-block; font-size: var(--text-sm); padding: 2px 10px; border-radius: 999px;
  border: 1px solid var(--border-color-primary); color: var(--body-text-color); text-decoration: none; cursor: pointer}
#transcript .prefer:hover {border-color: var(--color-accent); background: var(--color-accent-soft)}
#transcript .prefer svg {display: inline-block; vertical-align: -2px; margin-right: 3px}
#transcript .preferred {font-size: var(--text-sm); font-weight: 600; color: #15803d}
#transcript .tools {margin-top: 4px; display: flex; gap: 12px; font-size: var(--text-xs)}
#transcript a.tool {color: var(--link-text-color); text-decoration: none; cursor: pointer}
#transcript a.tool:hover {text-decoration: underline}
#transcript .q a.edit {float: right; font-size: var(--text-xs); margin-left: 8px}
#edit-note {padding: 4px 10px; border-radius: 8px; background: var(--color-accent-soft)}
#sbs-mode {overflow: hidden !important}
#transcript .empty {padding: 24px 12px; color: var(--body-text-color-subdued)}
#transcript .cursor {animation: pg-blink 1s steps(1) infinite}
@keyframes pg-blink {50% {opacity: 0}}
#transcript mark.shift {background: transparent; color: inherit; padding: 0}
#transcript .col-realigned mark.shift, #transcript .col-tuned mark.shift {background: #fde68a; color: #1f2937; border-radius: 2px}
body.no-hl #transcript mark.shift {background: transparent !important; color: inherit !important}
#legend, #legend p {font-size: var(--text-sm); color: var(--body-text-color-subdued)}
#legend mark {background: #fde68a; color: #1f2937}
#busy-hint {display: none; color: #b45309}
body.show-hint #busy-hint {display: block !important}
#examples {gap: 6px; flex-wrap: wrap}
#examples .example {flex: 0 1 auto; min-width: 0}
#loading .loading {padding: 8px 12px; border-radius: 8px; background: var(--color-accent-soft)}
#loading progress {width: 160px; vertical-align: middle; margin-left: 8px}
/* The chosen option of every radio group stands out (also on a phone, where the small circle alone is easy to miss) */
.gradio-container label.selected {outline: 2px solid var(--color-accent); outline-offset: -2px; font-weight: 600;
  background: var(--color-accent-soft) !important}
.gradio-container label.selected input[type=radio] {box-shadow: 0 0 0 2px var(--color-accent)}
/* Markdown tables (limits, the duel's reveal) scroll sideways instead of overflowing; headers break between words */
.gradio-container .prose table {display: block; max-width: 100%; overflow-x: auto}
.gradio-container table th, .gradio-container table th * {word-break: normal !important; overflow-wrap: normal !important;
  hyphens: manual}
.gradio-container .table-wrap {overflow-x: auto}
/* Diffusion samples: tiny digits drawn large with square pixels (no browser smoothing), as wide as the column */
#guidance-samples img, #guidance-progress img {image-rendering: pixelated}
/* A dropdown's text stops before its arrow (it ran under it on a phone: "on-topic-b0.1 —▾he") */
.gradio-container .secondary-wrap > input {text-overflow: ellipsis; min-width: 0; padding-right: 36px !important}
/* The short tables (sweep, controls, probes): compact cells so their key columns fit 390 px */
#sweep-table th, #sweep-table td, #controls-table th, #controls-table td, #probe-table th, #probe-table td
  {padding: 4px 5px !important; font-size: var(--text-sm) !important}
#sweep-table td *, #controls-table td *, #probe-table td * {font-size: var(--text-sm) !important}
#sweep-table .virtual-row, #controls-table .virtual-row, #probe-table .virtual-row {font-size: var(--text-sm) !important;
  font-family: var(--font) !important}
#sweep-table .cell-wrap, #controls-table .cell-wrap, #probe-table .cell-wrap {padding: 4px 5px !important}
#sweep-table th *, #controls-table th *, #probe-table th * {font-family: var(--font) !important}
@media (max-width: 640px) {
  #transcript {max-height: 70vh}
  #main-tabs .tab-container button {padding-left: 8px; padding-right: 8px}
  #chat-tab > #edit-row {order: -3}
  #transcript .tx-head {display: none}
  #transcript .a-title {display: block; font-weight: 600; font-size: var(--text-xs); color: var(--body-text-color-subdued);
    margin-bottom: 2px}
  #transcript .answers {display: flex; overflow-x: auto; scroll-snap-type: x mandatory; gap: 10px; padding-bottom: 4px}
  #transcript .a {flex: 0 0 86%; scroll-snap-align: start; border: 1px solid var(--border-color-primary);
    border-radius: 8px; padding: 6px 8px}
  #chat-tab > #loading {order: -5}
  #chat-tab > #shared-row {order: -4}
  #chat-tab > #input-row {order: -3}
  #chat-tab > #busy-hint {order: -3}
  #chat-tab > #examples {order: -2}
  #chat-tab > #transcript {order: -1}
  #input-row {flex-wrap: nowrap !important}
  #examples {flex-wrap: nowrap !important; overflow-x: auto}
  #examples .example {flex: 0 0 auto}
  #input-row > * {min-width: 0 !important}
}
"""

# Enter in the prompt box while answers stream: blocked (the box keeps its text) with a visible reason.
JS = """() => {
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' || e.shiftKey || e.isComposing) return;
    if (!e.target.closest || !e.target.closest('#prompt')) return;
    const stop = document.querySelector('#stop');
    if (stop && stop.offsetParent !== null) {
      e.preventDefault();
      e.stopImmediatePropagation();
      document.body.classList.add('show-hint');
      clearTimeout(window.__pgHint);
      window.__pgHint = setTimeout(() => document.body.classList.remove('show-hint'), 5000);
    }
  }, true);
}"""
