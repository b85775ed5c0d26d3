// Sorting (click a column header) and filtering for the report's tables, in plain JavaScript so that
// the pages work offline. A cell sorts by its data-value when it has one (numbers; empty = missing,
// always last), else by its text. Filters: a text box over whole rows, and selects that match a row's
// data-* attribute of the same name.
"use strict";

function sortKey(row, index, numeric) {
  const cell = row.cells[index];
  const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
  if (!numeric) return raw.toLowerCase();
  return raw === "" ? null : Number(raw);
}

function sortTable(table, header) {
  const index = header.cellIndex;
  const numeric = header.dataset.type === "number";
  const current = header.getAttribute("aria-sort");
  const ascending = current ? current === "descending" : !numeric;   // numbers: largest first
  for (const other of header.parentElement.cells) other.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = sortKey(a, index, numeric), y = sortKey(b, index, numeric);
    if (x === null || y === null) return (x === null) - (y === null);
    const order = numeric ? x - y : x.localeCompare(y, undefined, {numeric: true});
    return ascending ? order : -order;
  });
  body.append(...rows);
}

function applyFilters(controls, table) {
  const text = controls.querySelector('[data-filter="text"]');
  const query = text ? text.value.trim().toLowerCase() : "";
  const selects = Array.from(controls.querySelectorAll("select[data-filter]"));
  let shown = 0;
  for (const row of table.tBodies[0].rows) {
    const visible = (!query || row.textContent.toLowerCase().includes(query)) &&
      selects.every(select => !select.value || row.dataset[select.dataset.filter] === select.value);
    row.hidden = !visible;
    if (visible) shown += 1;
  }
  const total = table.tBodies[0].rows.length;
  const counter = controls.querySelector(".shown");
  if (counter) {
    const noun = total === 1 ? counter.dataset.noun : counter.dataset.nouns;
    counter.textContent = shown === total ? `${total} ${noun}` : `${shown} of ${total} ${noun} shown`;
  }
  const none = table.closest(".scroll").parentElement.querySelector(".no-match");
  if (none) none.hidden = shown > 0;
}

for (const table of document.querySelectorAll("table.sortable")) {
  for (const header of table.tHead.rows[0].cells) {
    const button = header.querySelector("button");
    if (button) button.addEventListener("click", () => sortTable(table, header));
  }
}

for (const controls of document.querySelectorAll("[data-filters]")) {
  const table = document.getElementById(controls.dataset.filters);
  const update = () => applyFilters(controls, table);
  for (const control of controls.querySelectorAll("[data-filter]")) {
    control.addEventListener("input", update);
    control.addEventListener("change", update);
  }
  update();
}
