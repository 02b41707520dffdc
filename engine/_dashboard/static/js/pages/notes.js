// The run's notes (its description): shown as written, and editable with a token that may
// write. A live refresh never wipes notes being edited.
import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { canWrite } from "../session.js";

export function notesEditor(project, runId, saved) {
  const el = h("div", { class: "notes" });
  let shown = null, editing = false, current = "";

  function show(notes) {
    current = notes || "";
    const key = JSON.stringify([current, canWrite()]);
    if (editing || key === shown) return;
    shown = key;
    clear(el).append(h("span", { class: "label" }, "Notes "),
      current ? h("p", { class: "notes-text" }, current)
        : h("span", { class: "muted" }, "none"),
      canWrite() ? h("button", { type: "button", class: "small", onclick: edit },
                     current ? "Edit notes" : "Add notes") : null);
  }

  function edit() {
    editing = true;
    const area = h("textarea", { id: "notes-input", rows: "4", value: current });
    const note = h("span", { class: "error", role: "alert" });
    const done = () => { editing = false; shown = null; show(current); };
    clear(el).append(h("form", { class: "notes-form", onsubmit: async (e) => {
      e.preventDefault();
      try {
        await api.notes(project, runId, area.value);
        current = area.value;
        done();
        saved();
      } catch (error) {
        note.textContent = error.message;
      }
    } }, h("label", { for: "notes-input" }, "Notes"), area,
      h("div", { class: "row" }, h("button", { type: "submit", class: "small" }, "Save notes"),
        h("button", { type: "button", class: "small", onclick: done }, "Cancel"), note)));
    area.focus();
  }

  return { el, show };
}
