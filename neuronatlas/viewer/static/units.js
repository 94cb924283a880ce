/* neuronatlas static export: the unit table, filtered, sorted and paginated in the browser.
 *
 * The server answers the same URL parameters with DuckDB (see _query.py); this file mirrors
 * its semantics exactly (tests compare both): the state lives in the URL fragment
 * (units.html#site=...&sort=max&order=desc), data comes from one script per site
 * (data/units-<index>.js) loaded on demand. Text is written only with textContent. */
(function () {
  "use strict";
  var metaEl = document.getElementById("units-meta");
  if (!metaEl) {
    return;
  }
  var meta = JSON.parse(metaEl.textContent);
  var PARAMS = ["q", "site", "layer", "label", "top_token", "range", "sort", "order", "page", "per_page", "col"];
  var SINGLE = ["q", "top_token", "sort", "order", "page", "per_page"];
  var cols = {};
  meta.columns.forEach(function (c) { cols[c.name] = c; });
  var labelCols = meta.columns.filter(function (c) { return c.label; });
  var siteByName = {};
  meta.sites.forEach(function (s) { siteByName[s.name] = s; });
  var shards = (window.NeuronAtlasShards = window.NeuronAtlasShards || {});
  var pending = {};

  var $ = function (id) { return document.getElementById(id); };
  var form = $("filters");

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] !== null && attrs[k] !== undefined) {
        node.setAttribute(k, attrs[k]);
      }
    });
    if (text !== undefined && text !== null) {
      node.textContent = text;
    }
    return node;
  }

  // -- number format: mirrors _columns.fmt_value ------------------------------------------
  function expForm(v) {
    var parts = v.toExponential(2).split("e");
    var exp = Number(parts[1]);
    return parts[0] + "e" + (exp < 0 ? "-" : "+") + Math.abs(exp);
  }
  function fmtNum(v, kind) {
    if (v === null || v === undefined) { return "—"; }
    if (kind === "bool") { return v ? "✓" : ""; }
    if (kind === "int") { return Number(v).toLocaleString("en-US", { maximumFractionDigits: 0 }); }
    if (kind === "float") {
      if (Number.isNaN(v)) { return "NaN"; }
      if (!Number.isFinite(v)) { return v > 0 ? "∞" : "-∞"; }
      if (v === 0) { return "0"; }
      var a = Math.abs(v);
      if (a >= 1e-3 && a < 1e4) {
        var r = Number(v.toPrecision(4));
        if (Math.abs(r) < 1e4) { return String(r); }
      }
      return expForm(v);
    }
    return String(v);
  }

  // -- state: mirrors UnitQuery.from_params --------------------------------------------------
  function fail(message) { throw new Error(message); }
  function parseIntStrict(text, name, lo, hi) {
    if (!/^[+-]?[0-9]+$/.test(text.trim())) { fail("Parameter '" + name + "' must be an integer; got '" + text + "'."); }
    var v = Number(text);
    if (v < lo || v > hi) { fail("Parameter '" + name + "' must be in [" + lo + ", " + hi + "]; got " + v + "."); }
    return v;
  }
  function parseBound(text, what) {
    if (text.trim() === "") { return null; }
    var v = Number(text);
    if (text.trim() === "" || Number.isNaN(v)) { fail("The " + what + " bound of a range must be a number; got '" + text + "'."); }
    return v;
  }
  function parseState(hash) {
    var params = new URLSearchParams(hash.replace(/^#/, ""));
    var multi = {};
    params.forEach(function (value, key) {
      if (value === "") { return; }
      if (PARAMS.indexOf(key) < 0) { fail("Unknown parameter '" + key + "' for the unit table."); }
      (multi[key] = multi[key] || []).push(value);
    });
    SINGLE.forEach(function (k) {
      if (multi[k] && multi[k].length > 1) { fail("Parameter '" + k + "' was given " + multi[k].length + " times; give it once."); }
    });
    var one = function (k) { return multi[k] ? multi[k][0] : null; };
    var st = {
      q: (one("q") || "").trim(), sites: [], layers: [], labels: [], notLabels: [], topToken: one("top_token"),
      ranges: [], sort: one("sort"), order: one("order") || "asc", page: 1, perPage: meta.per_page, cols: []
    };
    (multi.site || []).forEach(function (s) {
      if (!siteByName[s]) { fail("Unknown site '" + s + "' in this export."); }
      if (st.sites.indexOf(s) < 0) { st.sites.push(s); }
    });
    (multi.layer || []).forEach(function (v) {
      var n = parseIntStrict(v, "layer", -1, 100000);
      if (st.layers.indexOf(n) < 0) { st.layers.push(n); }
    });
    (multi.label || []).forEach(function (raw) {
      var neg = raw.charAt(0) === "!";
      var name = neg ? raw.slice(1) : raw;
      if (!cols[name] && cols["label_" + name]) { name = "label_" + name; }
      if (!cols[name] || !cols[name].label) { fail("Unknown label '" + raw + "'."); }
      var list = neg ? st.notLabels : st.labels;
      if (list.indexOf(name) < 0) { list.push(name); }
    });
    (multi.range || []).forEach(function (text) {
      var parts = text.split(":");
      if (parts.length < 3) { fail("A range is COLUMN:LOW:HIGH; got '" + text + "'."); }
      var hiText = parts.pop();
      var loText = parts.pop();
      var name = parts.join(":");
      var c = cols[name];
      if (!c || (c.kind !== "int" && c.kind !== "float")) { fail("Ranges apply to numeric columns; got '" + name + "'."); }
      var lo = parseBound(loText, "low");
      var hi = parseBound(hiText, "high");
      if (lo === null && hi === null) { fail("The range '" + text + "' has neither a low nor a high bound."); }
      if (lo !== null && hi !== null && lo > hi) { fail("The range '" + text + "' is empty: low > high."); }
      st.ranges.push({ column: name, lo: lo, hi: hi, text: text });
    });
    if (st.sort !== null && !cols[st.sort]) { fail("Cannot sort by column '" + st.sort + "'."); }
    if (st.order !== "asc" && st.order !== "desc") { fail("Parameter 'order' must be 'asc' or 'desc'."); }
    if (one("page") !== null) { st.page = parseIntStrict(one("page"), "page", 1, 10000000); }
    if (one("per_page") !== null) { st.perPage = parseIntStrict(one("per_page"), "per_page", 1, meta.max_per_page); }
    (multi.col || []).forEach(function (c) {
      if (!cols[c]) { fail("Cannot show column '" + c + "'."); }
      if (st.cols.indexOf(c) < 0) { st.cols.push(c); }
    });
    return st;
  }
  function copy(st, changes) {
    var out = {};
    Object.keys(st).forEach(function (k) { out[k] = st[k]; });
    Object.keys(changes || {}).forEach(function (k) { out[k] = changes[k]; });
    return out;
  }
  function toParams(st) {
    var p = new URLSearchParams();
    if (st.q) { p.append("q", st.q); }
    st.sites.forEach(function (s) { p.append("site", s); });
    st.layers.forEach(function (v) { p.append("layer", String(v)); });
    st.labels.forEach(function (v) { p.append("label", v); });
    st.notLabels.forEach(function (v) { p.append("label", "!" + v); });
    if (st.topToken !== null) { p.append("top_token", st.topToken); }
    st.ranges.forEach(function (r) { p.append("range", r.text); });
    if (st.sort) { p.append("sort", st.sort); p.append("order", st.order); }
    if (st.page !== 1) { p.append("page", String(st.page)); }
    if (st.perPage !== meta.per_page) { p.append("per_page", String(st.perPage)); }
    st.cols.forEach(function (c) { p.append("col", c); });
    return p;
  }
  function href(st) {
    var q = toParams(st).toString();
    return q ? "#" + q : "#";
  }

  // -- data -----------------------------------------------------------------------------
  function load(site) {
    if (shards[site.index]) { return Promise.resolve(); }
    if (!pending[site.index]) {
      pending[site.index] = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = meta.data_base + "/units-" + site.index + ".js";
        s.onload = function () { resolve(); };
        s.onerror = function () { reject(new Error("Could not load the data of site " + site.name + " (" + s.src + ").")); };
        document.head.appendChild(s);
      });
    }
    return pending[site.index];
  }

  function matches(st, site, v, i, needle, digits) {
    if (needle) {
      var top = v.top_token ? v.top_token[i] : null;
      var hit = site.name.toLowerCase().indexOf(needle) >= 0 ||
        (top !== null && top !== undefined && top.toLowerCase().indexOf(needle) >= 0) ||
        (digits && v.unit[i] === Number(needle));
      if (!hit) { return false; }
    }
    if (st.layers.length && st.layers.indexOf(v.layer ? v.layer[i] : null) < 0) { return false; }
    for (var a = 0; a < st.labels.length; a++) { if (v[st.labels[a]][i] !== 1) { return false; } }
    for (var b = 0; b < st.notLabels.length; b++) { if (v[st.notLabels[b]][i] === 1) { return false; } }
    if (st.topToken !== null && (!v.top_token || v.top_token[i] !== st.topToken)) { return false; }
    for (var r = 0; r < st.ranges.length; r++) {
      var x = v[st.ranges[r].column][i];
      if (x === null || x === undefined) { return false; }
      if (st.ranges[r].lo !== null && !(x >= st.ranges[r].lo)) { return false; }
      if (st.ranges[r].hi !== null && !(x <= st.ranges[r].hi)) { return false; }
    }
    return true;
  }

  function compareRows(st) {
    var key = st.sort;
    var dir = st.order === "desc" ? -1 : 1;
    return function (a, b) {
      if (key) {
        var x = shards[a.site.index].values[key][a.i];
        var y = shards[b.site.index].values[key][b.i];
        var xn = x === null || x === undefined;
        var yn = y === null || y === undefined;
        if (xn !== yn) { return xn ? 1 : -1; }
        if (!xn && x !== y) { return (x < y ? -1 : 1) * dir; }
      }
      if (a.site.index !== b.site.index) { return a.site.index - b.site.index; }
      return a.unit - b.unit;
    };
  }

  // -- rendering --------------------------------------------------------------------------
  function shownColumns(st) {
    var names = st.cols.length ? st.cols : meta.defaults.filter(function (c) { return cols[c]; });
    return names.filter(function (c, i) { return names.indexOf(c) === i; }).map(function (c) { return cols[c]; });
  }
  function value(row, name) {
    var vals = shards[row.site.index].values[name];
    return vals ? vals[row.i] : null;
  }
  function displayOf(raw, rows) {
    for (var i = 0; i < rows.length; i++) {
      if (value(rows[i], "top_token") === raw) { return value(rows[i], "__top_token_display"); }
    }
    return raw;
  }

  function renderHead(st, shown) {
    var tr = $("units-head");
    tr.replaceChildren();
    shown.forEach(function (c) {
      var active = st.sort === c.name;
      var numeric = c.kind === "int" || c.kind === "float";
      var order = numeric ? "desc" : "asc";
      if (active) { order = st.order === "desc" ? "asc" : "desc"; }
      var th = el("th", { "class": (numeric ? "num" : "") + (active ? " sorted" : ""), title: c.description,
        "aria-sort": active ? (st.order === "desc" ? "descending" : "ascending") : null });
      var a = el("a", { href: href(copy(st, { sort: c.name, order: order, page: 1 })) }, c.title);
      if (active) { a.appendChild(el("span", { "class": "arrow" }, st.order === "desc" ? "↓" : "↑")); }
      th.appendChild(a);
      tr.appendChild(th);
    });
    if (labelCols.length) { tr.appendChild(el("th", {}, "labels")); }
  }

  function renderBody(st, shown, rows) {
    var body = $("units-body");
    body.replaceChildren();
    if (!rows.length) {
      body.appendChild(el("tr")).appendChild(el("td", { "class": "empty", colspan: String(shown.length + 1) }, "No unit matches these filters."));
      return;
    }
    rows.forEach(function (row) {
      var tr = el("tr");
      shown.forEach(function (c) {
        var td;
        if (c.name === "unit") {
          td = el("td", { "class": "num" });
          td.appendChild(el("a", { "class": "unit-link", href: meta.unit_base + "/" + row.site.dir + "/" + row.unit + ".html" }, String(row.unit)));
        } else if (c.name === "site") {
          td = el("td", { "class": "site mono", title: row.site.name }, row.site.name);
        } else if (c.name === "top_token") {
          td = el("td");
          var raw = value(row, "top_token");
          if (raw !== null && raw !== undefined) {
            td.appendChild(el("a", { "class": "tok-chip", href: href(copy(st, { topToken: raw, page: 1 })), title: "filter: top token " + raw },
              value(row, "__top_token_display")));
          }
        } else {
          var v = value(row, c.name);
          if (c.kind === "bool" && v !== null) { v = v === 1; }
          td = el("td", { "class": c.kind === "int" || c.kind === "float" ? "num" : "" }, fmtNum(v, c.kind));
        }
        tr.appendChild(td);
      });
      if (labelCols.length) {
        var cell = el("td", { "class": "labels" });
        var k = 0;
        labelCols.forEach(function (c, j) {
          if (value(row, c.name) === 1) { cell.appendChild(el("span", { "class": "badge b-" + (j % 6) }, c.title)); k++; }
        });
        tr.appendChild(cell);
      }
      body.appendChild(tr);
    });
  }

  function renderChips(st, rows) {
    var box = $("chips");
    box.replaceChildren();
    var chip = function (text, next) {
      var a = el("a", { "class": "chip", href: href(copy(next, { page: 1 })), title: "remove this filter" }, text);
      a.appendChild(el("span", { "aria-hidden": "true" }, "×"));
      box.appendChild(a);
    };
    var without = function (list, x) { return list.filter(function (y) { return y !== x; }); };
    if (st.q) { chip("search: " + st.q, copy(st, { q: "" })); }
    st.sites.forEach(function (s) { chip("site: " + s, copy(st, { sites: without(st.sites, s) })); });
    st.layers.forEach(function (v) { chip("layer: " + v, copy(st, { layers: without(st.layers, v) })); });
    st.labels.forEach(function (v) { chip("label: " + cols[v].title, copy(st, { labels: without(st.labels, v) })); });
    st.notLabels.forEach(function (v) { chip("not: " + cols[v].title, copy(st, { notLabels: without(st.notLabels, v) })); });
    if (st.topToken !== null) { chip("top token: " + displayOf(st.topToken, rows), copy(st, { topToken: null })); }
    st.ranges.forEach(function (r) {
      var text = (r.lo === null ? "" : fmtNum(r.lo, "float") + " ≤ ") + cols[r.column].title + (r.hi === null ? "" : " ≤ " + fmtNum(r.hi, "float"));
      chip(text, copy(st, { ranges: without(st.ranges, r) }));
    });
  }

  function renderPager(st, nPages) {
    var nav = $("pager");
    nav.replaceChildren();
    var button = function (rel, text, page, enabled) {
      nav.appendChild(enabled ? el("a", { "class": "btn", rel: rel, href: href(copy(st, { page: page })) }, text) : el("span", { "class": "btn disabled" }, text));
    };
    button("first", "« first", 1, st.page > 1);
    button("prev", "‹ prev", st.page - 1, st.page > 1);
    nav.appendChild(el("span", { "class": "pager-pos" }, "page " + st.page + " of " + fmtNum(nPages, "int")));
    button("next", "next ›", st.page + 1, st.page < nPages);
    button("last", "last »", nPages, st.page < nPages);
  }

  function syncForm(st) {
    $("f-q").value = st.q;
    $("f-top").value = st.topToken === null ? "" : st.topToken;
    $("f-rlo").value = "";
    $("f-rhi").value = "";
    $("f-pp").value = String(st.perPage);
    var hidden = $("hidden-state");
    hidden.replaceChildren();
    var keep = function (name, v) { hidden.appendChild(el("input", { type: "hidden", name: name, value: v })); };
    var site = $("f-site");
    site.disabled = st.sites.length > 1;
    site.value = st.sites.length === 1 ? st.sites[0] : "";
    if (st.sites.length > 1) { st.sites.forEach(function (s) { keep("site", s); }); }
    var label = $("f-label");
    var nLabels = st.labels.length + st.notLabels.length;
    if (label) {
      label.disabled = nLabels > 1 || !labelCols.length;
      label.value = nLabels === 1 ? (st.labels.length ? st.labels[0] : "!" + st.notLabels[0]) : "";
      if (nLabels > 1) {
        st.labels.forEach(function (v) { keep("label", v); });
        st.notLabels.forEach(function (v) { keep("label", "!" + v); });
      }
    }
    st.ranges.forEach(function (r) { keep("range", r.text); });
    st.layers.forEach(function (v) { keep("layer", String(v)); });
    if (st.sort) { keep("sort", st.sort); keep("order", st.order); }
    st.cols.forEach(function (c) { keep("col", c); });
  }

  function showError(message) {
    $("result-count").textContent = message;
    $("units-body").replaceChildren();
    $("pager").replaceChildren();
    $("chips").replaceChildren();
  }

  var generation = 0;
  function run() {
    var st;
    try {
      st = parseState(window.location.hash);
    } catch (err) {
      showError(err.message);
      return;
    }
    syncForm(st);
    var sites = st.sites.length ? st.sites.map(function (s) { return siteByName[s]; }) : meta.sites;
    var mine = ++generation;
    $("result-count").textContent = "Loading the unit table…";
    Promise.all(sites.map(load)).then(function () {
      if (mine !== generation) { return; }
      var needle = st.q.toLowerCase();
      var digits = /^[0-9]{1,9}$/.test(needle);
      var rows = [];
      sites.forEach(function (site) {
        var shard = shards[site.index];
        var v = shard.values;
        for (var i = 0; i < shard.n; i++) {
          if (matches(st, site, v, i, needle, digits)) { rows.push({ site: site, i: i, unit: v.unit[i] }); }
        }
      });
      rows.sort(compareRows(st));
      var total = rows.length;
      var nPages = Math.max(1, Math.ceil(total / st.perPage));
      if (st.page > nPages) {
        showError("Page " + st.page + " does not exist: the query matches " + total + " units, " + nPages + " page(s) of " + st.perPage + ".");
        return;
      }
      var start = (st.page - 1) * st.perPage;
      var page = rows.slice(start, start + st.perPage);
      var shown = shownColumns(st);
      $("result-count").textContent = fmtNum(total, "int") + " of " + fmtNum(meta.n_units, "int") + " units" +
        (total ? " · page " + st.page + " of " + fmtNum(nPages, "int") : "");
      renderHead(st, shown);
      renderBody(st, shown, page);
      renderChips(st, rows);
      renderPager(st, nPages);
    }).catch(function (err) { showError(err.message); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var params = new URLSearchParams();
    new FormData(form).forEach(function (v, k) { if (v !== "") { params.append(k, v); } });
    var lo = $("f-rlo").value.trim();
    var hi = $("f-rhi").value.trim();
    if (lo !== "" || hi !== "") { params.append("range", $("f-rcol").value + ":" + lo + ":" + hi); }
    window.location.hash = params.toString();
  });
  form.querySelectorAll("select[name]").forEach(function (select) {
    select.addEventListener("change", function () { form.requestSubmit(); });
  });
  $("reset").addEventListener("click", function (event) {
    event.preventDefault();
    window.location.hash = "";
  });
  window.addEventListener("hashchange", run);
  run();
})();
