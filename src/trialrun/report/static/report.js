/* trialrun report: the episode table and the episode view.
 *
 * The records are embedded in the page as columnar JSON (one array per
 * column) in <script type="application/json" id="report-data">. Everything is
 * rendered with createElement/textContent, never innerHTML: job names, factor
 * values and extra terms come from the run and are shown as text.
 *
 * Filtering and sorting work on an array of row indices, so a run of 100,000
 * episodes filters and sorts in tens of milliseconds; only the current page
 * of rows is in the DOM.
 *
 * A large run pages its table: the embedded JSON then describes the columns
 * (D.n rows, D.chunks.files) but holds none of their values, and each data
 * file beside the page ("episodes/rows-00000.js", D.chunks.rows rows each)
 * calls trialrunRows(chunk) when loaded by a <script> element (which works
 * from file://, unlike fetch). A page loads the files of the rows it shows;
 * filtering, sorting and opening #episode=... load them all first.
 */
(function () {
  "use strict";

  var D = JSON.parse(document.getElementById("report-data").textContent);
  var N = D.n;
  var app = document.getElementById("episode-app");
  var dialog = document.getElementById("episode-view");

  // ------------------------------------------------------------------ data files of a paged table

  var CH = D.chunks || null;
  var chunkState = []; // per data file: undefined (not asked), 1 (loading), 2 (loaded)
  var chunkWaiters = [];
  if (CH) {
    ["job", "episode", "seed", "envIndex", "t0", "dur"].forEach(function (k) { D[k] = new Array(N); });
    D.outcomes.forEach(function (o) { o.values = new Array(N); });
    D.factors.forEach(function (f) { f.values = new Array(N); });
    D.videos = [];
    D.extra = [];
  }
  function chunkOf(i) { return Math.floor(i / CH.rows); }
  function chunksLoaded(list) {
    for (var k = 0; k < list.length; k++) if (chunkState[list[k]] !== 2) return false;
    return true;
  }
  function allChunks() {
    var list = [];
    if (CH) for (var k = 0; k < CH.files.length; k++) list.push(k);
    return list;
  }
  window.trialrunRows = function (part) {
    var s = part.start;
    ["job", "episode", "seed", "envIndex", "t0", "dur"].forEach(function (k) {
      var src = part[k], dst = D[k];
      for (var j = 0; j < src.length; j++) dst[s + j] = src[j];
    });
    D.outcomes.forEach(function (o, oi) {
      var src = part.outcomes[oi];
      for (var j = 0; j < src.length; j++) o.values[s + j] = src[j];
    });
    D.factors.forEach(function (f, fi) {
      var src = part.factors[fi];
      for (var j = 0; j < src.length; j++) f.values[s + j] = src[j];
    });
    part.videos.forEach(function (pair) { videoByRow[pair[0]] = pair[1]; });
    part.extra.forEach(function (pair) { extraByRow[pair[0]] = pair[1]; });
    chunkState[part.index] = 2;
  };
  /* Load the data files of `list` (chunk indices), then call fn. */
  function loadChunks(list, fn) {
    if (chunksLoaded(list)) { fn(); return; }
    chunkWaiters.push({ list: list, fn: fn });
    status.textContent = "loading episodes\u2026";
    status.setAttribute("data-loading", "1");
    list.forEach(function (k) {
      if (chunkState[k]) return;
      chunkState[k] = 1;
      var script = document.createElement("script");
      script.src = CH.files[k];
      script.onload = function () {
        if (chunkState[k] !== 2) chunkState[k] = 2; // a file that did not call trialrunRows: keep going
        var waiting = chunkWaiters;
        chunkWaiters = [];
        waiting.forEach(function (w) { if (chunksLoaded(w.list)) w.fn(); else chunkWaiters.push(w); });
        if (!chunkWaiters.length) status.removeAttribute("data-loading");
      };
      script.onerror = function () {
        status.removeAttribute("data-loading");
        status.textContent = "cannot read the episode data file " + CH.files[k].split("?")[0] +
          " beside this page; rebuild the report (trialrun report RUN_DIR)";
      };
      document.body.appendChild(script);
    });
  }
  /* Run fn once every row is loaded (at once for an inline table). */
  function withAllRows(fn) {
    if (!CH) fn(); else loadChunks(allChunks(), fn);
  }

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") node.textContent = String(v);
        else if (k === "className") node.className = v;
        else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? "" : String(v));
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function fmtNum(v) {
    if (v === null || v === undefined) return "\u2013";
    if (typeof v !== "number") return String(v);
    if (!isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    var a = Math.abs(v);
    if (a >= 1e6 || a < 1e-3) return v.toExponential(3);
    return String(parseFloat(v.toPrecision(4)));
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return "\u2013";
    return String(v);
  }

  function fmtInt(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined) return "\u2013";
    if (ms < 1000) return ms + " ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    var m = Math.floor(s / 60);
    return m + " min " + Math.round(s - 60 * m) + " s";
  }

  /* Quote one argument for a POSIX shell, like Python's shlex.quote. */
  function shellQuote(s) {
    s = String(s);
    if (s === "") return "''";
    if (/^[A-Za-z0-9_@%+=:,.\/-]+$/.test(s)) return s;
    return "'" + s.replace(/'/g, "'\"'\"'") + "'";
  }

  function runUrl(rel) {
    var parts = rel.split("/").map(encodeURIComponent).join("/");
    return D.base ? D.base + "/" + parts : parts;
  }

  function levelKey(v) {
    if (typeof v === "boolean") return "b:" + v;
    if (typeof v === "number") return "n:" + v;
    return "s:" + v;
  }

  // ------------------------------------------------------------------ columns

  var outcomeByName = {};
  D.outcomes.forEach(function (o) { outcomeByName[o.name] = o; });
  var successCol = outcomeByName.success ? outcomeByName.success.values : null;
  var videoByRow = {};
  D.videos.forEach(function (pair) { videoByRow[pair[0]] = pair[1]; });
  var extraByRow = {};
  D.extra.forEach(function (pair) { extraByRow[pair[0]] = pair[1]; });
  var hasVideo = D.hasVideo !== undefined ? D.hasVideo : D.videos.length > 0;
  var trajectoryByRow = {};
  (D.trajectories || []).forEach(function (t) { trajectoryByRow[t[0]] = t; });

  /* Column descriptors: key, label, get(row) for display, sortKey(row) for order. */
  var columns = [];
  function numericSortKey(values) {
    return function (i) { var v = values[i]; return typeof v === "number" ? v : null; };
  }
  /* Rank of each distinct value, computed at the first sort (when every row is loaded). */
  function rankSortKey(valuesOf) {
    var rankOf = null;
    return function (i) {
      if (!rankOf) rankOf = rankKey(valuesOf());
      return rankOf(i);
    };
  }
  function rankKey(values) {
    var seen = {};
    var keys = [];
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (v === null || v === undefined) continue;
      var k = levelKey(v);
      if (!(k in seen)) { seen[k] = v; keys.push(k); }
    }
    keys.sort(function (a, b) {
      var va = seen[a], vb = seen[b];
      if (typeof va === "number" && typeof vb === "number") return va - vb;
      return String(va) < String(vb) ? -1 : String(va) > String(vb) ? 1 : 0;
    });
    var rank = {};
    keys.forEach(function (k, r) { rank[k] = r; });
    return function (i) { var v = values[i]; return v === null || v === undefined ? null : rank[levelKey(v)]; };
  }

  if (D.jobs.length > 1) {
    columns.push({ key: "job", label: "Job", cls: "job-cell",
      text: function (i) { return D.jobs[D.job[i]]; },
      sortKey: rankSortKey(function () { return D.job.map(function (j) { return D.jobs[j]; }); }) });
  }
  columns.push({ key: "episode", label: "Episode", cls: "num",
    text: function (i) { return String(D.episode[i]); }, sortKey: numericSortKey(D.episode) });
  if (successCol) {
    columns.push({ key: "success", label: "Success", cls: "center",
      cell: function (i) { return outcomeBadge(successCol[i]); }, sortKey: numericSortKey(successCol) });
  }
  var TABLE_SKIP = { success: 1, success_at_end: 1, terminated: 1, truncated: 1 };
  D.outcomes.forEach(function (o) {
    if (TABLE_SKIP[o.name]) return;
    var label = o.name === "time_to_success" ? "Time to success" : o.name.charAt(0).toUpperCase() + o.name.slice(1);
    columns.push({ key: "o:" + o.name, label: label, cls: "num",
      text: function (i) { return o.type === "bool" ? fmtValue(o.values[i] === null ? null : !!o.values[i]) : fmtNum(o.values[i]); },
      sortKey: numericSortKey(o.values) });
  });
  D.factors.forEach(function (f) {
    columns.push({ key: "f:" + f.name, label: f.name, sub: f.units || "", cls: f.kind === "continuous" ? "num factor" : "factor",
      text: function (i) { return f.kind === "continuous" ? fmtNum(f.values[i]) : fmtValue(f.values[i]); },
      sortKey: f.kind === "continuous" ? numericSortKey(f.values) : rankSortKey(function () { return f.values; }) });
  });
  columns.push({ key: "seed", label: "Seed", cls: "num muted-cell",
    text: function (i) { return String(D.seed[i]); }, sortKey: numericSortKey(D.seed) });
  if (hasVideo) {
    columns.push({ key: "video", label: "Video", cls: "center",
      text: function (i) { var v = videoByRow[i]; return v ? "\u25B6 " + Object.keys(v).length : ""; },
      sortKey: function (i) { var v = videoByRow[i]; return v ? Object.keys(v).length : null; } });
  }
  var columnByKey = {};
  columns.forEach(function (c) { columnByKey[c.key] = c; });

  function outcomeBadge(v) {
    if (v === null || v === undefined) return el("span", { className: "muted", text: "\u2013" });
    return v ? el("span", { className: "ok", text: "\u2713 yes" }) : el("span", { className: "fail", text: "\u2717 no" });
  }

  // ------------------------------------------------------------------ state

  var state = { job: -1, outcome: "all", episode: "", ranges: {}, levels: {}, sort: null, dir: 1, page: 0, size: 50 };
  var order = []; // filtered + sorted row indices

  function passes(i) {
    if (state.job >= 0 && D.job[i] !== state.job) return false;
    if (state.outcome !== "all" && successCol) {
      var s = successCol[i];
      if (state.outcome === "success" && s !== 1) return false;
      if (state.outcome === "failure" && s !== 0) return false;
      if (state.outcome === "unknown" && s !== null) return false;
    }
    if (state.episode !== "" && D.episode[i] !== state.episode) return false;
    for (var fi = 0; fi < D.factors.length; fi++) {
      var f = D.factors[fi];
      var v = f.values[i];
      if (f.kind === "continuous") {
        var r = state.ranges[f.name];
        if (!r) continue;
        if (r.min !== null && !(typeof v === "number" && v >= r.min)) return false;
        if (r.max !== null && !(typeof v === "number" && v <= r.max)) return false;
      } else {
        var lv = state.levels[f.name];
        if (lv === undefined || lv === "") continue;
        if (v === null || v === undefined || levelKey(v) !== lv) return false;
      }
    }
    return true;
  }

  function filtered() {
    if (state.job >= 0 || state.outcome !== "all" || state.episode !== "" || state.sort) return true;
    for (var name in state.ranges) {
      var r = state.ranges[name];
      if (r && (r.min !== null || r.max !== null)) return true;
    }
    for (var lv in state.levels) if (state.levels[lv] !== undefined && state.levels[lv] !== "") return true;
    return false;
  }

  function recompute() {
    if (CH && filtered() && !chunksLoaded(allChunks())) { withAllRows(recompute); return; }
    var t = performance.now();
    var rows = [];
    for (var i = 0; i < N; i++) if (passes(i)) rows.push(i);
    if (state.sort) {
      var key = columnByKey[state.sort].sortKey;
      var dir = state.dir;
      var keys = new Array(N);
      for (var r = 0; r < rows.length; r++) keys[rows[r]] = key(rows[r]);
      rows.sort(function (a, b) {
        var ka = keys[a], kb = keys[b];
        if (ka === kb) return a - b;
        if (ka === null) return 1;
        if (kb === null) return -1;
        return ka < kb ? -dir : dir;
      });
    }
    order = rows;
    var pages = Math.max(1, Math.ceil(order.length / state.size));
    if (state.page >= pages) state.page = pages - 1;
    render();
    app.setAttribute("data-filter-ms", String(Math.round(performance.now() - t)));
  }

  // ------------------------------------------------------------------ controls

  var controls = el("div", { className: "controls" });
  var factorControls = el("div", { className: "controls factor-controls" });
  var status = el("div", { id: "ep-count", className: "ep-count", "aria-live": "polite" });
  var table = el("table", { id: "episodes-table", className: "episodes" });
  var thead = el("thead");
  var tbody = el("tbody");
  table.appendChild(thead);
  table.appendChild(tbody);
  var pager = el("div", { className: "pager" });

  var debounceTimer = null;
  function later(fn) {
    clearTimeout(debounceTimer);
    debounceTimer = setTimeout(fn, 150);
  }

  function labelled(text, control) {
    return el("label", { className: "ctl" }, [el("span", { className: "ctl-label", text: text }), control]);
  }

  var jobSelect = el("select", { id: "filter-job", onchange: function () {
    state.job = parseInt(jobSelect.value, 10); state.page = 0; recompute();
  } }, [el("option", { value: "-1", text: "all jobs" })]);
  D.jobs.forEach(function (name, i) { jobSelect.appendChild(el("option", { value: String(i), text: name })); });
  if (D.jobs.length > 1) controls.appendChild(labelled("Job", jobSelect));

  var outcomeSelect = el("select", { id: "filter-outcome", onchange: function () {
    state.outcome = outcomeSelect.value; state.page = 0; recompute();
  } }, [
    el("option", { value: "all", text: "all" }),
    el("option", { value: "success", text: "succeeded" }),
    el("option", { value: "failure", text: "failed" })
  ]);
  if (successCol) controls.appendChild(labelled("Outcome", outcomeSelect));

  var episodeInput = el("input", { id: "filter-episode", type: "number", min: "0", step: "1", placeholder: "any",
    oninput: function () {
      later(function () {
        var v = episodeInput.value.trim();
        state.episode = v === "" ? "" : parseInt(v, 10);
        if (state.episode !== "" && isNaN(state.episode)) state.episode = "";
        state.page = 0; recompute();
      });
    } });
  controls.appendChild(labelled("Episode #", episodeInput));

  var resetButton = el("button", { type: "button", id: "filter-reset", className: "btn", text: "Reset filters",
    onclick: function () { resetFilters(); } });

  var rangeInputs = [];
  var levelSelects = [];
  D.factors.forEach(function (f, fi) {
    if (f.kind === "continuous") {
      var lo = el("input", { type: "number", step: "any", id: "filter-f" + fi + "-min", "data-factor": f.name,
        placeholder: f.low === null ? "min" : fmtNum(f.low), "aria-label": f.name + " minimum" });
      var hi = el("input", { type: "number", step: "any", id: "filter-f" + fi + "-max", "data-factor": f.name,
        placeholder: f.high === null ? "max" : fmtNum(f.high), "aria-label": f.name + " maximum" });
      var update = function () {
        later(function () {
          var a = lo.value.trim() === "" ? null : parseFloat(lo.value);
          var b = hi.value.trim() === "" ? null : parseFloat(hi.value);
          state.ranges[f.name] = { min: a === null || isNaN(a) ? null : a, max: b === null || isNaN(b) ? null : b };
          state.page = 0; recompute();
        });
      };
      lo.addEventListener("input", update);
      hi.addEventListener("input", update);
      rangeInputs.push(lo, hi);
      factorControls.appendChild(el("div", { className: "ctl range", "data-factor": f.name }, [
        el("span", { className: "ctl-label", text: f.name + (f.units ? " (" + f.units + ")" : "") }),
        el("span", { className: "range-inputs" }, [lo, el("span", { className: "muted", text: "to" }), hi])
      ]));
    } else {
      var sel = el("select", { id: "filter-f" + fi, "data-factor": f.name, onchange: function () {
        state.levels[f.name] = sel.value; state.page = 0; recompute();
      } }, [el("option", { value: "", text: "all" })]);
      f.levels.forEach(function (v) { sel.appendChild(el("option", { value: levelKey(v), text: fmtValue(v) })); });
      levelSelects.push(sel);
      factorControls.appendChild(labelled(f.name, sel));
    }
  });
  controls.appendChild(resetButton);

  function resetFilters() {
    state.job = -1; state.outcome = "all"; state.episode = ""; state.ranges = {}; state.levels = {}; state.page = 0;
    jobSelect.value = "-1"; outcomeSelect.value = "all"; episodeInput.value = "";
    rangeInputs.forEach(function (i) { i.value = ""; });
    levelSelects.forEach(function (s) { s.value = ""; });
    recompute();
  }

  var sizeSelect = el("select", { id: "page-size", "aria-label": "rows per page", onchange: function () {
    var first = state.page * state.size;
    state.size = parseInt(sizeSelect.value, 10);
    state.page = Math.floor(first / state.size);
    recompute();
  } });
  [25, 50, 100, 250, 1000].forEach(function (n) {
    sizeSelect.appendChild(el("option", { value: String(n), text: n + " rows", selected: n === state.size }));
  });
  function go(page) { state.page = page; render(); }
  var firstBtn = el("button", { type: "button", className: "btn", id: "page-first", text: "\u00AB First", onclick: function () { go(0); } });
  var prevBtn = el("button", { type: "button", className: "btn", id: "page-prev", text: "\u2039 Prev", onclick: function () { go(Math.max(0, state.page - 1)); } });
  var pageLabel = el("span", { id: "page-label", className: "page-label" });
  var nextBtn = el("button", { type: "button", className: "btn", id: "page-next", text: "Next \u203A", onclick: function () { go(Math.min(lastPage(), state.page + 1)); } });
  var lastBtn = el("button", { type: "button", className: "btn", id: "page-last", text: "Last \u00BB", onclick: function () { go(lastPage()); } });
  pager.appendChild(el("div", { className: "pager-buttons" }, [firstBtn, prevBtn, pageLabel, nextBtn, lastBtn]));
  pager.appendChild(sizeSelect);
  function lastPage() { return Math.max(0, Math.ceil(order.length / state.size) - 1); }

  app.appendChild(controls);
  if (D.factors.length) app.appendChild(factorControls);
  app.appendChild(status);
  app.appendChild(el("div", { className: "table-scroll" }, [table]));
  app.appendChild(pager);

  // ------------------------------------------------------------------ rendering

  function renderHead() {
    var tr = el("tr");
    columns.forEach(function (c) {
      var sorted = state.sort === c.key;
      var arrow = sorted ? (state.dir > 0 ? " \u25B2" : " \u25BC") : "";
      var btn = el("button", { type: "button", className: "sort", "data-sort": c.key, title: "sort by " + c.label,
        onclick: function () {
          if (state.sort === c.key) state.dir = -state.dir; else { state.sort = c.key; state.dir = 1; }
          state.page = 0; recompute();
        } }, [c.label, c.sub ? el("span", { className: "unit", text: " " + c.sub }) : null, arrow]);
      tr.appendChild(el("th", { className: c.cls, "data-col": c.key,
        "aria-sort": sorted ? (state.dir > 0 ? "ascending" : "descending") : "none" }, [btn]));
    });
    thead.textContent = "";
    thead.appendChild(tr);
  }

  function render() {
    var start = state.page * state.size;
    var end = Math.min(order.length, start + state.size);
    if (CH) {
      var needed = [];
      for (var q = start; q < end; q++) {
        var c = chunkOf(order[q]);
        if (needed.indexOf(c) < 0) needed.push(c);
      }
      if (!chunksLoaded(needed)) { loadChunks(needed, render); return; }
    }
    renderHead();
    var frag = document.createDocumentFragment();
    for (var p = start; p < end; p++) {
      var i = order[p];
      var tr = el("tr", { "data-row": String(i), "data-job": D.jobs[D.job[i]], "data-episode": String(D.episode[i]),
        tabindex: "0", className: successCol && successCol[i] === 0 ? "row-fail" : "" });
      columns.forEach(function (c) {
        var td = el("td", { className: c.cls });
        if (c.cell) td.appendChild(c.cell(i)); else td.textContent = c.text(i);
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    }
    tbody.textContent = "";
    if (!order.length) {
      tbody.appendChild(el("tr", { className: "empty" }, [el("td", { colspan: String(columns.length),
        text: N ? "No episode matches the filters." : "No episodes recorded." })]));
    }
    tbody.appendChild(frag);
    status.setAttribute("data-count", String(order.length));
    status.setAttribute("data-total", String(N));
    status.textContent = order.length
      ? "Showing " + fmtInt(start + 1) + "\u2013" + fmtInt(end) + " of " + fmtInt(order.length) + " episodes" +
        (order.length !== N ? " (filtered from " + fmtInt(N) + ")" : "")
      : "0 of " + fmtInt(N) + " episodes";
    var pages = lastPage() + 1;
    pageLabel.textContent = "page " + fmtInt(state.page + 1) + " of " + fmtInt(pages);
    pageLabel.setAttribute("data-page", String(state.page + 1));
    pageLabel.setAttribute("data-pages", String(pages));
    firstBtn.disabled = prevBtn.disabled = state.page === 0;
    nextBtn.disabled = lastBtn.disabled = state.page >= pages - 1;
    app.setAttribute("data-ready", "1"); // the first page is shown (a paged table's first file is loaded)
  }

  tbody.addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr[data-row]");
    if (tr) openEpisode(parseInt(tr.getAttribute("data-row"), 10));
  });
  tbody.addEventListener("keydown", function (ev) {
    if (ev.key !== "Enter") return;
    var tr = ev.target.closest("tr[data-row]");
    if (tr) openEpisode(parseInt(tr.getAttribute("data-row"), 10));
  });

  // ------------------------------------------------------------------ episode view

  var current = -1;

  /* rows: [label, value] where value is text or a node. */
  function kvTable(rows) {
    var tb = el("tbody");
    rows.forEach(function (r) {
      tb.appendChild(el("tr", null, [el("th", { text: r[0] }), el("td", null, [r[1]])]));
    });
    return el("table", { className: "kv" }, [tb]);
  }

  function replayCommand(i) {
    return ["trialrun", "replay", D.runDir, D.jobs[D.job[i]], String(D.episode[i])].map(shellQuote).join(" ");
  }

  /* The action and reward charts of row i, drawn by the builder into <template id="traj-i">
     (inert markup, cloned here), or a line saying why there are none. */
  function trajectoryFigure(i, t) {
    var rel = t[1];
    var tpl = document.getElementById("traj-" + i);
    var body;
    if (tpl) body = document.importNode(tpl.content, true);
    else if (t[2] === "not-charted") body = el("div", { className: "missing", text: "charts are drawn for the first " +
      D.trajectoryLimit + " trajectories only; read this one with h5py" });
    else body = el("div", { className: "missing", text: "trajectory file missing or unreadable: " + rel });
    return el("figure", { className: "ev-traj", "data-state": t[2] }, [
      el("figcaption", null, [el("b", { text: "Trajectory" }), " ", el("a", { href: runUrl(rel), text: rel, className: "muted" })]),
      body
    ]);
  }

  /* Open row i once its data file is loaded (a neighbour on another page may not be). */
  function openRow(i) {
    if (!CH) openEpisode(i); else loadChunks([chunkOf(i)], function () { openEpisode(i); });
  }

  function openEpisode(i) {
    current = i;
    var job = D.jobs[D.job[i]];
    var ep = D.episode[i];
    dialog.textContent = "";
    dialog.setAttribute("data-row", String(i));
    dialog.setAttribute("data-job", job);
    dialog.setAttribute("data-episode", String(ep));
    var inner = el("div", { className: "ev-inner" });
    dialog.appendChild(inner);

    var pos = order.indexOf(i);
    var prev = el("button", { type: "button", className: "btn", id: "ev-prev", text: "\u2039 Previous", disabled: pos <= 0,
      onclick: function () { openRow(order[pos - 1]); } });
    var next = el("button", { type: "button", className: "btn", id: "ev-next", text: "Next \u203A",
      disabled: pos < 0 || pos >= order.length - 1, onclick: function () { openRow(order[pos + 1]); } });
    var close = el("button", { type: "button", className: "btn btn-close", id: "ev-close", text: "\u2715", "aria-label": "close",
      onclick: function () { dialog.close(); } });
    var title = el("h2", { id: "ev-title" }, [el("span", { className: "ev-job", text: job }), " \u00B7 episode " + ep, " "]);
    if (successCol) title.appendChild(outcomeBadge(successCol[i]));
    inner.appendChild(el("div", { className: "ev-head" }, [title, el("div", { className: "ev-nav" }, [prev, next, close])]));

    var videos = videoByRow[i];
    var trajectory = trajectoryByRow[i];
    if (videos || trajectory) {
      var grid = el("div", { className: "ev-videos" });
      Object.keys(videos || {}).forEach(function (camera) {
        var rel = videos[camera][0];
        var exists = videos[camera][1];
        var body = exists
          ? el("video", { controls: true, preload: "metadata", src: runUrl(rel), "data-camera": camera, muted: true })
          : el("div", { className: "missing", text: "video file missing: " + rel });
        grid.appendChild(el("figure", { className: "ev-video" }, [body, el("figcaption", null, [
          el("b", { text: camera }), " ", el("a", { href: runUrl(rel), text: rel, className: "muted" })
        ])]));
      });
      if (trajectory) grid.appendChild(trajectoryFigure(i, trajectory));
      inner.appendChild(grid);
    }

    var factorRows = [];
    D.factors.forEach(function (f) {
      var v = f.values[i];
      if (v === null || v === undefined) return;
      var range = f.kind === "continuous" && f.low !== null && f.high !== null
        ? "range " + fmtNum(f.low) + " to " + fmtNum(f.high) + (f.scale === "log" ? ", log scale" : "") : "";
      factorRows.push([f.name, el("span", null, [
        el("span", { className: "fvalue", text: fmtValue(v) }),
        f.units ? " " + f.units : "",
        range ? el("div", { className: "ci", text: range }) : null
      ])]);
    });
    var outcomeRows = [];
    D.outcomes.forEach(function (o) {
      var v = o.values[i];
      outcomeRows.push([o.name, o.type === "bool" ? (v === null ? "\u2013" : v ? "true" : "false") : fmtValue(v)]);
    });
    var runStart = Date.parse(D.runStart);
    var info = [
      ["job", job], ["episode", String(ep)], ["seed", String(D.seed[i])], ["env index", String(D.envIndex[i])],
      ["started", D.t0[i] === null || isNaN(runStart) ? "\u2013" : new Date(runStart + D.t0[i]).toISOString()],
      ["duration", fmtDuration(D.dur[i])]
    ];
    inner.appendChild(el("div", { className: "ev-grid" }, [
      el("div", { className: "ev-panel" }, [el("h3", { text: "Factors" }),
        factorRows.length ? kvTable(factorRows) : el("p", { className: "muted", text: "no factors" })]),
      el("div", { className: "ev-panel" }, [el("h3", { text: "Outcome" }), kvTable(outcomeRows)]),
      el("div", { className: "ev-panel" }, [el("h3", { text: "Episode" }), kvTable(info)])
    ]));
    if (extraByRow[i]) {
      inner.appendChild(el("div", { className: "ev-panel" }, [el("h3", { text: "Extra terms" }),
        el("pre", { className: "code", text: JSON.stringify(extraByRow[i], null, 2) })]));
    }

    var cmd = replayCommand(i);
    var copied = el("span", { className: "muted copied", "aria-live": "polite" });
    var code = el("code", { id: "replay-cmd", text: cmd });
    var copy = el("button", { type: "button", className: "btn", id: "replay-copy", text: "Copy", onclick: function () {
      var done = function () { copied.textContent = "copied"; };
      var fallback = function () {
        var range = document.createRange();
        range.selectNodeContents(code);
        var sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        copied.textContent = "selected: press Ctrl+C";
      };
      try {
        if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(cmd).then(done, fallback);
        else fallback();
      } catch (e) { fallback(); }
    } });
    inner.appendChild(el("div", { className: "ev-panel replay" }, [
      el("h3", { text: "Reproduce this episode" }),
      el("div", { className: "replay-row" }, [el("pre", { className: "code" }, [code]), copy, copied])
    ]));

    if (!dialog.open) dialog.showModal();
    var hash = "#episode=" + encodeURIComponent(job) + "/" + ep;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  dialog.addEventListener("close", function () {
    dialog.querySelectorAll("video").forEach(function (v) { v.pause(); });
    current = -1;
    if (location.hash.indexOf("#episode=") === 0) history.replaceState(null, "", location.pathname + location.search);
  });
  dialog.addEventListener("click", function (ev) {
    if (ev.target === dialog) dialog.close(); // a click on the backdrop
  });
  dialog.addEventListener("keydown", function (ev) {
    if (ev.target && (ev.target.tagName === "VIDEO" || ev.target.tagName === "INPUT")) return;
    var pos = order.indexOf(current);
    if (ev.key === "ArrowRight" && pos >= 0 && pos < order.length - 1) openRow(order[pos + 1]);
    if (ev.key === "ArrowLeft" && pos > 0) openRow(order[pos - 1]);
  });

  function openFromHash() {
    var m = /^#episode=(.*)\/(\d+)$/.exec(location.hash);
    if (!m) return;
    if (CH && !chunksLoaded(allChunks())) { withAllRows(openFromHash); return; }
    var job = D.jobs.indexOf(decodeURIComponent(m[1]));
    var ep = parseInt(m[2], 10);
    for (var i = 0; i < N; i++) {
      if (D.job[i] === job && D.episode[i] === ep) { openEpisode(i); return; }
    }
  }

  // ------------------------------------------------------------------ chart bins -> table

  /* A click on a bin of a factor chart lists that bin's episodes: the job, the
     factor's range (or level), nothing else filtered. */
  function showBin(g) {
    var fig = g.closest("figure[data-factor]");
    var jobBlock = g.closest(".factor-job[data-job]");
    if (!fig || !jobBlock) return;
    var name = fig.getAttribute("data-factor");
    var fi = -1;
    D.factors.forEach(function (f, k) { if (f.name === name) fi = k; });
    if (fi < 0) return;
    resetFilters();
    state.job = D.jobs.indexOf(jobBlock.getAttribute("data-job"));
    jobSelect.value = String(state.job);
    if (g.hasAttribute("data-level")) {
      var key = levelKey(JSON.parse(g.getAttribute("data-level")));
      state.levels[name] = key;
      var sel = document.getElementById("filter-f" + fi);
      if (sel) sel.value = key;
    } else {
      var lo = parseFloat(g.getAttribute("data-low"));
      var hi = parseFloat(g.getAttribute("data-high"));
      state.ranges[name] = { min: lo, max: hi };
      document.getElementById("filter-f" + fi + "-min").value = String(lo);
      document.getElementById("filter-f" + fi + "-max").value = String(hi);
    }
    state.page = 0;
    recompute();
    document.getElementById("episodes").scrollIntoView();
  }
  document.querySelectorAll("svg.fchart g.bin").forEach(function (g) {
    if (g.getAttribute("data-n") === "0") return;
    g.classList.add("clickable");
    g.addEventListener("click", function () { showBin(g); });
  });

  recompute();
  openFromHash();
  window.addEventListener("hashchange", openFromHash);
})();
