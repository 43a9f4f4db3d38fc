"use strict";
// Renders the report's tables from #report-data and a row's trajectory on click, from its own JSON block.
// Every value goes into the page through textContent, never as markup.
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const FOLD_CHARS = 1500, FOLD_LINES = 25;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function cellText(col, value) {
    if (value === null || value === undefined) return "";
    if (col.type === "number" && typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3);
    return String(value);
  }

  function statusClass(value) {
    return "st-" + String(value).toLowerCase().replace(/[^a-z0-9_]/g, "");
  }

  function compare(col, dir) {
    return function (a, b) {
      const x = a[col.key], y = b[col.key];
      const xe = x === null || x === undefined || x === "", ye = y === null || y === undefined || y === "";
      if (xe || ye) return xe === ye ? 0 : xe ? 1 : -1;  // empty cells last either way
      if (col.type === "number") return (x - y) * dir;
      return String(x).localeCompare(String(y), undefined, { numeric: true }) * dir;
    };
  }

  function setupTable(si, section) {
    const table = document.getElementById("table-" + si);
    const tools = document.getElementById("tools-" + si);
    if (!table) return;
    const cols = section.columns, rows = section.rows;
    const state = { sort: null, dir: 1, text: "", selects: {}, selected: null };

    const search = el("input", "filter");
    search.type = "search";
    search.placeholder = "filter rows…";
    search.id = "filter-" + si;
    search.addEventListener("input", function () { state.text = search.value.toLowerCase(); draw(); });
    tools.appendChild(search);
    cols.filter(function (c) { return c.type === "status"; }).forEach(function (c) {
      const select = el("select", "status-filter");
      select.dataset.key = c.key;
      select.appendChild(el("option", null, "all " + c.label));
      select.firstChild.value = "";
      Array.from(new Set(rows.map(function (r) { return String(r[c.key] ?? ""); }))).sort().forEach(function (v) {
        const o = el("option", null, v === "" ? "(none)" : v);
        o.value = v === "" ? "\u0000" : v;
        select.appendChild(o);
      });
      select.addEventListener("change", function () { state.selects[c.key] = select.value; draw(); });
      tools.appendChild(select);
    });
    const count = el("span", "count");
    tools.appendChild(count);

    const thead = el("thead"), headRow = el("tr");
    cols.forEach(function (c) {
      const th = el("th", c.type === "number" ? "num" : null);
      const button = el("button", "sort", c.label);
      button.addEventListener("click", function () {
        state.dir = state.sort === c ? -state.dir : 1;
        state.sort = c;
        draw();
      });
      th.appendChild(button);
      headRow.appendChild(th);
    });
    thead.appendChild(headRow);
    const tbody = el("tbody");
    table.appendChild(thead);
    table.appendChild(tbody);

    // Cells are built once; filtering and sorting only reorder the same row elements.
    const trs = rows.map(function (row, index) {
      const tr = el("tr");
      tr.dataset.index = index;
      cols.forEach(function (c) {
        const td = el("td", c.type === "number" ? "num" : c.type === "status" ? "status " + statusClass(row[c.key]) : null,
                      cellText(c, row[c.key]));
        if (c.key === cols[0].key && row._error) td.title = row._error;
        tr.appendChild(td);
      });
      tr.addEventListener("click", function () { select(index); });
      return tr;
    });
    const haystack = rows.map(function (row) {
      return cols.map(function (c) { return cellText(c, row[c.key]); }).join("\u0001").toLowerCase();
    });

    function visible(index) {
      const row = rows[index];
      if (state.text && haystack[index].indexOf(state.text) < 0) return false;
      for (const key in state.selects) {
        const want = state.selects[key];
        if (want && String(row[key] ?? "") !== (want === "\u0000" ? "" : want)) return false;
      }
      return true;
    }

    function draw() {
      let order = rows.map(function (_, i) { return i; }).filter(visible);
      if (state.sort) {
        const cmp = compare(state.sort, state.dir);
        order.sort(function (a, b) { return cmp(rows[a], rows[b]) || a - b; });
      }
      const fragment = document.createDocumentFragment();
      order.forEach(function (i) { fragment.appendChild(trs[i]); });
      tbody.replaceChildren(fragment);
      Array.from(headRow.children).forEach(function (th, i) {
        th.dataset.sorted = state.sort === cols[i] ? (state.dir > 0 ? "asc" : "desc") : "";
      });
      count.textContent = order.length + " of " + rows.length + " rows";
    }

    function select(index) {
      if (state.selected !== null) trs[state.selected].classList.remove("selected");
      state.selected = index;
      trs[index].classList.add("selected");
      const row = rows[index];
      const views = row._views || [];
      const first = section.kind === "shift" ? views.length - 1 : 0;
      showViews(si, row[cols[0].key], views, Math.max(0, first));
    }

    draw();
  }

  function showViews(si, title, views, open) {
    const pane = document.getElementById("traj-" + si);
    pane.replaceChildren();
    pane.appendChild(el("h3", null, title));
    if (!views.length) { pane.appendChild(el("p", "hint", "no runs recorded for this row")); return; }
    const tabs = el("div", "tabs"), body = el("div", "view");
    views.forEach(function (view, i) {
      const tab = el("button", "tab", view.label);
      tab.addEventListener("click", function () {
        Array.from(tabs.children).forEach(function (t) { t.classList.remove("active"); });
        tab.classList.add("active");
        body.replaceChildren(renderView(si, view));
      });
      tabs.appendChild(tab);
      if (i === open) tab.classList.add("active");
    });
    pane.appendChild(tabs);
    pane.appendChild(body);
    body.appendChild(renderView(si, views[open]));
    pane.scrollIntoView({ block: "nearest" });
  }

  function renderView(si, view) {
    const box = el("div", "trajectory");
    if (!view.ref) {
      box.appendChild(el("p", "note", view.missing || "no trajectory"));
      if (view.patch) box.appendChild(renderPatch(view.patch));
      return box;
    }
    const traj = JSON.parse(document.getElementById("t-" + si + "-" + view.ref).textContent);
    const meta = el("div", "meta");
    [["run", traj.run_id], ["exit", traj.exit_status], ["steps", traj.steps.length],
     ["tokens", (traj.usage && traj.usage.total_tokens) || 0], ["model", traj.model],
     ["commit", (traj.base_commit || "").slice(0, 12)]].forEach(function (kv) {
      const span = el("span", kv[0] === "exit" ? "status " + statusClass(kv[1]) : null);
      span.appendChild(el("b", null, kv[0] + " "));
      span.appendChild(document.createTextNode(String(kv[1])));
      meta.appendChild(span);
    });
    box.appendChild(meta);
    if (traj.exit_message) box.appendChild(el("p", "exit-message", traj.exit_message));
    let step = 0;
    traj.messages.forEach(function (m) {
      box.appendChild(renderMessage(m, m.role === "assistant" ? traj.steps[step++] : null));
    });
    if (view.patch && !traj.patch) box.appendChild(renderPatch(view.patch));
    box.appendChild(el("h4", null, "final diff"));
    box.appendChild(traj.patch ? renderPatch(traj.patch) : el("p", "hint", "(empty patch)"));
    return box;
  }

  function folded(label, text, cls) {
    const lines = text.split("\n").length;
    const pre = el("pre", cls, text);
    if (text.length <= FOLD_CHARS && lines <= FOLD_LINES) return pre;
    const details = el("details", "fold");
    details.appendChild(el("summary", null, label + " (" + lines + " lines, " + text.length + " chars)"));
    details.appendChild(pre);
    return details;
  }

  function renderMessage(m, step) {
    const div = el("div", "msg role-" + String(m.role).replace(/[^a-z]/g, ""));
    const head = el("div", "msg-head", m.role + (step ? " · step " + (step.index + 1) : ""));
    if (step) {
      const bits = [];
      if (step.model_s !== null && step.model_s !== undefined) bits.push("model " + step.model_s.toFixed(2) + " s");
      if (step.tools_s !== null && step.tools_s !== undefined) bits.push("tools " + step.tools_s.toFixed(2) + " s");
      if (step.tokens) bits.push(step.tokens + " tokens");
      if (step.parse_source) bits.push("parsed: " + step.parse_source);
      head.appendChild(el("span", "step-info", bits.join(" · ")));
    }
    div.appendChild(head);
    if (m.role === "system") {  // the same long prompt in every run: folded whatever its length
      const details = el("details", "fold");
      details.appendChild(el("summary", null, "system prompt (" + m.content.length + " chars)"));
      details.appendChild(el("pre", "content", m.content));
      div.appendChild(details);
      return div;
    }
    if (m.reasoning) {
      const details = el("details", "reasoning");
      details.open = true;
      details.appendChild(el("summary", null, "reasoning"));
      details.appendChild(el("pre", null, m.reasoning));
      div.appendChild(details);
    }
    if (m.content) div.appendChild(m.role === "tool" ? folded("observation", m.content, "observation")
                                                      : el("pre", "content", m.content));
    (m.tool_calls || []).forEach(function (call) {
      const c = el("div", "call");
      c.appendChild(el("span", "call-name", "→ " + call.name));
      c.appendChild(folded("arguments", call.arguments, "args"));
      div.appendChild(c);
    });
    if (step && step.parse_errors && step.parse_errors.length) {
      div.appendChild(el("p", "note", "parse errors: " + step.parse_errors.join("; ")));
    }
    return div;
  }

  function renderPatch(patch) {
    const pre = el("pre", "diff");
    patch.split("\n").forEach(function (line) {
      let cls = null;
      if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ")) cls = "d-file";
      else if (line.startsWith("@@")) cls = "d-hunk";
      else if (line.startsWith("+")) cls = "d-add";
      else if (line.startsWith("-")) cls = "d-del";
      pre.appendChild(el("span", cls, line + "\n"));
    });
    return pre;
  }

  data.sections.forEach(function (section, si) { setupTable(si, section); });
  document.body.dataset.ready = "1";
})();
