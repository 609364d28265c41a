// Hyperdock dashboard. Renders every page from the JSON API with DOM APIs only:
// user data goes in through textContent / attributes, never as HTML markup.
"use strict";

(function () {
  const POLL_MS = 2000;
  const TRIALS_PAGE = 100; // trial table rows per page
  const GL_POINTS = 1000; // scatter plots with more points use WebGL (or, without a GPU, an image)
  const HOVER_POINTS = 300; // painted history: the best trials kept as hoverable markers
  const HOVER_SLICE_POINTS = 60; // painted slices: the same, per parameter
  const MAX_PARCOORDS = 1000; // trials drawn in parallel coordinates at most
  const MAX_CURVE_TRACES = 20; // more learning curves are merged into a few traces
  const MAX_PAR_AXES = 12; // parameters in parallel coordinates at most (the most important)
  const PAR_LABEL_CHARS = 14; // longer axis labels are shortened (the full one is in the title)
  const body = document.body;
  const main = document.getElementById("main");
  const errorBox = document.getElementById("error");
  const noticeBox = document.getElementById("notice");
  const statusBox = document.getElementById("status");

  // -- token: ?token=... is kept in this tab's sessionStorage, then removed from the URL
  (function takeToken() {
    const url = new URL(window.location.href);
    const token = url.searchParams.get("token");
    if (token !== null) {
      if (token) sessionStorage.setItem("hyperdock-token", token);
      else sessionStorage.removeItem("hyperdock-token");
      url.searchParams.delete("token");
      window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
  })();

  function token() {
    return sessionStorage.getItem("hyperdock-token");
  }

  // -- small DOM helpers ------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "text") node.textContent = String(value);
        else if (key === "onclick") node.addEventListener("click", value);
        else if (key === "className") node.className = value;
        else node.setAttribute(key, String(value));
      }
    }
    for (const child of children || []) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function fmtNum(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    return Number(v.toPrecision(6)).toString();
  }

  function fmtTime(ts) {
    if (!ts) return "-";
    return new Date(ts * 1000).toLocaleString();
  }

  // Seconds for people: "45 s", "12 min", "3 h 5 min", "2 d 4 h".
  function fmtDuration(sec) {
    if (sec === null || sec === undefined) return "-";
    sec = Math.max(0, Math.round(sec));
    if (sec < 60) return sec + " s";
    const min = Math.floor(sec / 60);
    if (min < 60) return min + " min";
    const h = Math.floor(min / 60);
    if (h < 24) return h + " h" + (min % 60 ? " " + (min % 60) + " min" : "");
    const d = Math.floor(h / 24);
    return d + " d" + (h % 24 ? " " + (h % 24) + " h" : "");
  }

  function fmtValue(v) {
    if (typeof v === "string") return v;
    if (typeof v === "number") return fmtNum(v);
    return JSON.stringify(v);
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function showNotice(message) {
    noticeBox.textContent = message;
    noticeBox.hidden = !message;
    if (message) setTimeout(() => { if (noticeBox.textContent === message) noticeBox.hidden = true; }, 4000);
  }

  // -- API ------------------------------------------------------------------------
  function readHeaders() {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers["X-Hyperdock-Token"] = t;
    return headers;
  }

  // An Error that keeps the HTTP status (401: the dashboard needs its token).
  function httpError(resp, data) {
    const err = new Error(data.error || resp.statusText);
    err.status = resp.status;
    return err;
  }

  async function getJSON(path) {
    const resp = await fetch(path, { headers: readHeaders(), cache: "no-store" });
    const data = await resp.json().catch(() => ({ error: resp.statusText }));
    if (!resp.ok) throw httpError(resp, data);
    return data;
  }

  async function post(path, payload) {
    const headers = { "Content-Type": "application/json", "X-Requested-With": "hyperdock" };
    const t = token();
    if (t) headers["X-Hyperdock-Token"] = t;
    const resp = await fetch(path, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(payload || {}),
      credentials: "same-origin",
    });
    const data = await resp.json().catch(() => ({ error: resp.statusText }));
    if (!resp.ok) throw new Error(data.error || resp.statusText);
    return data;
  }

  async function act(label, path, payload, after) {
    try {
      const data = await post(path, payload);
      showError("");
      showNotice(label + ": done");
      if (after) after(data);
      refresh();
      return data;
    } catch (err) {
      showError(label + " refused: " + err.message);
      return null;
    }
  }

  // Downloads a file of the API: fetched with the token header (when one is set), then
  // saved from a blob: URL under its own name.
  async function download(url, path) {
    try {
      const resp = await fetch(url, { headers: readHeaders(), cache: "no-store" });
      if (!resp.ok) {
        const data = await resp.json().catch(() => ({ error: resp.statusText }));
        throw new Error(data.error || resp.statusText);
      }
      const blob = await resp.blob();
      const link = el("a", { href: URL.createObjectURL(blob), download: path.split("/").pop() });
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
      showError("");
    } catch (err) {
      showError("Download of " + path + " refused: " + err.message);
    }
  }

  function encodeName(name) {
    return encodeURIComponent(name);
  }

  // GET that skips unchanged replies: sends the last ETag, returns null on 304 or when
  // the reply's version is the one already seen.
  const seenVersions = {};
  async function getJSONIfChanged(path) {
    const headers = readHeaders();
    const last = seenVersions[path];
    if (last) headers["If-None-Match"] = '"' + last + '"';
    const resp = await fetch(path, { headers: headers, cache: "no-store" });
    if (resp.status === 304) return null;
    const data = await resp.json().catch(() => ({ error: resp.statusText }));
    if (!resp.ok) throw httpError(resp, data);
    if (data.version && data.version === last) return null;
    if (data.version) seenVersions[path] = data.version;
    return data;
  }

  // -- polling ----------------------------------------------------------------------
  let renderPage = null;
  let busy = false;

  async function refresh() {
    if (!renderPage || busy) return;
    busy = true;
    try {
      await renderPage();
      statusBox.textContent = "updated " + new Date().toLocaleTimeString();
      statusBox.classList.remove("stale");
    } catch (err) {
      statusBox.textContent = "cannot update: " + err.message;
      statusBox.classList.add("stale");
      if (err.status === 401) showError(err.message);
    } finally {
      busy = false;
    }
  }

  // -- generic table with sorting and filtering ------------------------------------
  // columns: [{key, label, value(row) -> sortable, cell(row) -> node|string}]
  function makeTable(id, columns, opts) {
    const state = { sortKey: opts && opts.sortKey, desc: !!(opts && opts.desc), filter: "", page: 0 };
    const pageSize = (opts && opts.pageSize) || 0;
    const wrap = el("div", { className: "table-wrap" });
    let filterInput = null;
    if (opts && opts.filterable) {
      filterInput = el("input", {
        type: "search",
        id: id + "-filter",
        placeholder: "filter (text or state)…",
        className: "filter",
      });
      filterInput.addEventListener("input", () => {
        state.filter = filterInput.value.toLowerCase();
        state.page = 0;
        draw();
      });
      wrap.appendChild(filterInput);
    }
    const table = el("table", { id: id });
    const thead = el("thead");
    const headRow = el("tr");
    for (const col of columns) {
      const th = el("th", { text: col.label, "data-key": col.key });
      if (opts && opts.onSort) {
        // sorted by the server: the page asks it for another order
        if (opts.onSort(col.key, true)) {
          th.classList.add("sortable");
          th.addEventListener("click", () => opts.onSort(col.key, false));
        }
      } else if (col.value) {
        th.classList.add("sortable");
        th.addEventListener("click", () => {
          if (state.sortKey === col.key) state.desc = !state.desc;
          else { state.sortKey = col.key; state.desc = false; }
          draw();
        });
      }
      headRow.appendChild(th);
    }
    thead.appendChild(headRow);
    const tbody = el("tbody");
    table.appendChild(thead);
    table.appendChild(tbody);
    wrap.appendChild(table);
    let pager = null;
    let pagerText = null;
    if (pageSize) {
      pagerText = el("span", { className: "pager-text" });
      const go = (delta) => () => { state.page += delta; draw(); };
      pager = el("div", { className: "pager", id: id + "-pager" }, [
        button("« first", "pager-first", () => { state.page = 0; draw(); }),
        button("‹ prev", "pager-prev", go(-1)),
        pagerText,
        button("next ›", "pager-next", go(1)),
        button("last »", "pager-last", () => { state.page = Infinity; draw(); }),
      ]);
      wrap.appendChild(pager);
    }
    let rows = [];
    let rowsSig = null;

    function draw() {
      clear(tbody);
      let shown = rows;
      if (state.filter) {
        shown = rows.filter((r) => (opts.search ? opts.search(r) : JSON.stringify(r))
          .toLowerCase().includes(state.filter));
      }
      const col = columns.find((c) => c.key === state.sortKey);
      if (col && col.value) {
        shown = shown.slice().sort((a, b) => {
          const va = col.value(a), vb = col.value(b);
          if (va === vb) return 0;
          if (va === null || va === undefined) return 1;
          if (vb === null || vb === undefined) return -1;
          const cmp = va < vb ? -1 : 1;
          return state.desc ? -cmp : cmp;
        });
      }
      const total = shown.length;
      if (pageSize) {
        const pages = Math.max(1, Math.ceil(total / pageSize));
        state.page = Math.min(Math.max(state.page, 0), pages - 1);
        const start = state.page * pageSize;
        shown = shown.slice(start, start + pageSize);
        pagerText.textContent = total
          ? " rows " + (start + 1) + "–" + (start + shown.length) + " of " + total + " (page " + (state.page + 1) + " / " + pages + ") "
          : " no rows ";
        pager.hidden = pages <= 1;
      }
      for (const r of shown) {
        const tr = el("tr", opts && opts.rowAttrs ? opts.rowAttrs(r) : null);
        for (const c of columns) {
          const content = c.cell ? c.cell(r) : fmtValue(c.value(r));
          const td = el("td", { className: c.key });
          if (typeof content === "string") td.textContent = content;
          else if (content) td.appendChild(content);
          tr.appendChild(td);
        }
        tbody.appendChild(tr);
      }
      if (!shown.length) {
        tbody.appendChild(el("tr", null, [el("td", { colspan: columns.length, className: "muted", text: rows.length ? "no trial matches the filter" : "nothing yet" })]));
      }
    }

    return {
      node: wrap,
      // a poll that brings the same rows leaves the table (and what the user selected
      // or scrolled to in it) alone
      update(newRows) {
        const sig = JSON.stringify(newRows);
        if (sig === rowsSig) return;
        rows = newRows; rowsSig = sig; draw();
      },
      headRow: headRow,
    };
  }

  function button(label, cls, onclick, attrs) {
    return el("button", Object.assign({ type: "button", className: cls || "", text: label, onclick: onclick }, attrs || {}));
  }

  function section(title, children, attrs) {
    return el("section", attrs || null, [el("h2", { text: title }), ...children]);
  }

  function kvTable(obj) {
    const table = el("table", { className: "kv" });
    const entries = Object.entries(obj || {});
    if (!entries.length) table.appendChild(el("tr", null, [el("td", { className: "muted", text: "(none)" })]));
    for (const [k, v] of entries) {
      table.appendChild(el("tr", null, [el("th", { text: k }), el("td", { text: fmtValue(v) })]));
    }
    return table;
  }

  // Flatten nested params into "a.b" keys.
  function flatten(obj, prefix, out) {
    out = out || {};
    for (const [k, v] of Object.entries(obj || {})) {
      const key = prefix ? prefix + "." + k : k;
      if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
      else out[key] = v;
    }
    return out;
  }

  // -- Plotly helpers ----------------------------------------------------------------
  // Titles sit at the top left, short: Plotly's toolbar (modebar) is at the top right,
  // over a centred or long title otherwise. Details ("title\ndetails") go in a smaller
  // line just above the axes, below the toolbar (below them with detailAt: "bottom").
  function escapeText(t) {
    return String(t).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  // The values of a data array from an untrusted source, for Plotly: numbers, null and
  // booleans as they are, anything else as escaped text (strings are category values,
  // which Plotly shows as tick labels and in hover labels, rendering their markup).
  function plainValues(values) {
    if (!Array.isArray(values)) return [];
    return values.map((v) => (v === null || typeof v === "number" || typeof v === "boolean" ? v
      : escapeText(typeof v === "string" ? v : JSON.stringify(v))));
  }
  // The width in pixels of ``text`` in Plotly's font at ``size`` px.
  let measureCtx = null;
  function textWidth(text, size) {
    if (!measureCtx) measureCtx = document.createElement("canvas").getContext("2d");
    measureCtx.font = size + "px \"Open Sans\", verdana, arial, sans-serif";
    return measureCtx.measureText(String(text)).width;
  }
  const plotLayout = (title, extra) => {
    const [head, ...rest] = String(title).split("\n");
    const layout = Object.assign({
      title: { text: escapeText(head), font: { size: 14 }, x: 0, xref: "paper", xanchor: "left", y: 0.98, yref: "container", yanchor: "top" },
      margin: { l: 50, r: 20, t: 40, b: 40 },
      height: 320,
      showlegend: true,
    }, extra || {});
    const bottom = layout.detailAt === "bottom";
    const shift = layout.detailShift;
    delete layout.detailAt;
    delete layout.detailShift;
    if (rest.length) {
      layout.annotations = (layout.annotations || []).concat([{
        text: escapeText(rest.join(" ")), showarrow: false, xref: "paper", yref: "paper", x: 0, xanchor: "left",
        y: bottom ? 0 : 1, yanchor: bottom ? "top" : "bottom", yshift: shift !== undefined ? shift : bottom ? -8 : 4, font: { size: 11, color: "#666" },
      }]);
      const m = Object.assign({}, layout.margin);
      if (bottom) m.b = Math.max(m.b || 0, 40); else m.t = Math.max(m.t || 0, 62);
      layout.margin = m;
    }
    return layout;
  };

  // Plotly's toolbar (modebar) is at the top right, over the title of a plot too narrow
  // for both: the title then goes below it, the axes down as much (and stay there on
  // later draws of that plot, which do not move about).
  const TOOLBAR_ROW = 26;
  function lowerTitle(layout) {
    const title = Object.assign({}, layout.title);
    title.pad = Object.assign({}, title.pad, { t: TOOLBAR_ROW });
    const margin = Object.assign({}, layout.margin);
    margin.t = (margin.t || 0) + TOOLBAR_ROW;
    return Object.assign({}, layout, { title: title, margin: margin });
  }
  function titleUnderToolbar(div) {
    const bar = div.querySelector(".modebar");
    if (!bar) return false;
    const b = bar.getBoundingClientRect();
    return [...div.querySelectorAll(".gtitle")].some((t) => {
      const r = t.getBoundingClientRect();
      return r.width > 0 && b.width > 0 && r.left < b.right && b.left < r.right && r.top < b.bottom && b.top < r.bottom;
    });
  }

  function plot(div, traces, layout) {
    if (!window.Plotly) return Promise.resolve();
    const node = typeof div === "string" ? document.getElementById(div) : div;
    const draw = (l) => Promise.resolve(window.Plotly.react(node, traces, l, { displaylogo: false, responsive: true }));
    if (node.dataset.titleLow) return draw(lowerTitle(layout));
    return draw(layout).then(() => {
      if (!titleUnderToolbar(node)) return undefined;
      node.dataset.titleLow = "1";
      return draw(lowerTitle(layout));
    });
  }

  // plotly.js loads after this script (both deferred), so that the first API request
  // goes out while the browser compiles it; pages draw once it is in.
  const plotlyReady = new Promise((resolve) => {
    const script = document.getElementById("plotly-js");
    if (!script || window.Plotly) { resolve(); return; }
    script.addEventListener("load", resolve);
    script.addEventListener("error", resolve);
  });

  // Whether WebGL runs on a GPU. Without one (no GPU, a VM, remote desktop, a headless
  // browser) the browser emulates WebGL on the CPU, and Plotly's parallel coordinates
  // take seconds to draw: the page then draws them with SVG lines, and a button offers
  // the interactive WebGL version.
  let fastGLCache = null;
  function fastGL() {
    if (fastGLCache === null) {
      try {
        const gl = document.createElement("canvas").getContext("webgl", { failIfMajorPerformanceCaveat: true });
        const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
        const renderer = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
        fastGLCache = !!gl && !/swiftshader|llvmpipe|softpipe|software|basic render/i.test(renderer);
        const lose = gl && gl.getExtension("WEBGL_lose_context");
        if (lose) lose.loseContext();
      } catch (err) {
        fastGLCache = false;
      }
    }
    return fastGLCache;
  }

  // -- Dense scatter plots without a GPU ----------------------------------------------
  // WebGL emulated on the CPU costs a Plotly scattergl figure ~0.3 s to start and the
  // browser ~0.5 s to read each frame back; a 2D canvas paints 10,000 points in a few
  // milliseconds. A painted plot puts every point into an image that fills its axes
  // (layout.images, repainted when the axes zoom, pan or resize), keeps the best points
  // as SVG markers for hovering, and an invisible trace spanning all points, so that
  // autoscale still shows them all.

  function hexRGB(color) {
    const n = parseInt(color.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  // A disc of radius r (device pixels): its inner pixels as [dx, dy, ...] and its
  // antialiased rim as [dx, dy, coverage, ...].
  const stampCache = {};
  function discStamp(r) {
    if (stampCache[r]) return stampCache[r];
    const inner = [], rim = [], R = Math.ceil(r + 0.5);
    for (let dy = -R; dy <= R; dy++) {
      for (let dx = -R; dx <= R; dx++) {
        const cover = Math.min(1, r + 0.5 - Math.sqrt(dx * dx + dy * dy));
        if (cover >= 1) inner.push(dx, dy);
        else if (cover > 0) rim.push(dx, dy, cover);
      }
    }
    return (stampCache[r] = { inner: inner, rim: rim });
  }

  // A transparent PNG (data URL) of the axes' size holding the groups' points ({x, y}
  // arrays in axis units, a "#rrggbb" colour), drawn group after group.
  function paintPoints(groups, xa, ya) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(xa._length * dpr)), h = Math.max(1, Math.round(ya._length * dpr));
    const canvas = document.createElement("canvas");
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(w, h), px = image.data;
    const words = new Uint32Array(px.buffer);
    const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
    const { inner, rim } = discStamp(3 * dpr);
    const m = Math.ceil(3 * dpr) + 2; // a disc this far from the edges lies inside
    const x0 = xa.range[0], sx = w / (xa.range[1] - xa.range[0]);
    const y1 = ya.range[1], sy = h / (ya.range[0] - ya.range[1]);
    for (const g of groups) {
      const [cr, cg, cb] = hexRGB(g.color);
      const word = little ? ((255 << 24) | (cb << 16) | (cg << 8) | cr) >>> 0 : ((cr << 24) | (cg << 16) | (cb << 8) | 255) >>> 0;
      for (let i = 0; i < g.x.length; i++) {
        // a log axis's range is in log10 units
        const gy = ya.type === "log" ? Math.log10(g.y[i]) : g.y[i];
        const cx = Math.round((g.x[i] - x0) * sx), cy = Math.round((gy - y1) * sy);
        if (!(cx > -m && cx < w + m && cy > -m && cy < h + m)) continue; // off the axes, or NaN
        const whole = cx >= m && cy >= m && cx < w - m && cy < h - m;
        for (let k = 0; k < inner.length; k += 2) {
          const x = cx + inner[k], y = cy + inner[k + 1];
          if (whole || (x >= 0 && y >= 0 && x < w && y < h)) words[y * w + x] = word;
        }
        for (let k = 0; k < rim.length; k += 3) {
          const x = cx + rim[k], y = cy + rim[k + 1];
          if (!whole && (x < 0 || y < 0 || x >= w || y >= h)) continue;
          const o = 4 * (y * w + x), a = rim[k + 2], da = px[o + 3] / 255;
          const outA = a + da * (1 - a), keep = (da * (1 - a)) / outA, put = a / outA;
          px[o] = cr * put + px[o] * keep;
          px[o + 1] = cg * put + px[o + 1] * keep;
          px[o + 2] = cb * put + px[o + 2] * keep;
          px[o + 3] = 255 * outA;
        }
      }
    }
    ctx.putImageData(image, 0, 0);
    return canvas.toDataURL("image/png");
  }

  // Paints (again, when the axes moved) the images of a figure drawn with paintedPlot.
  function paintRasters(div) {
    const specs = div.hdRaster, full = div._fullLayout;
    if (!specs || !full || !window.Plotly) return;
    const images = [], keys = [];
    for (const s of specs) {
      const xa = full[s.xaxis], ya = full[s.yaxis];
      if (!xa || !ya || !xa._length || !ya._length) continue;
      keys.push(xa.range.join(), ya.range.join(), xa._length, ya._length);
      images.push({
        source: paintPoints(s.groups, xa, ya), xref: xa._id, yref: ya._id, layer: "below",
        x: xa.range[0], y: ya.range[1], sizex: xa.range[1] - xa.range[0], sizey: ya.range[1] - ya.range[0],
        xanchor: "left", yanchor: "top", sizing: "stretch",
      });
    }
    const key = keys.join("|");
    if (key === div.hdRasterKey) return;
    div.hdRasterKey = key;
    window.Plotly.relayout(div, { images: images });
  }

  // Draws a figure whose dense point sets are painted: ``rasters`` lists, per subplot,
  // {xaxis: "xaxis2", yaxis: "yaxis2", groups: [{x, y, color}]}; ``traces`` are drawn as
  // usual on top. Without rasters the figure is drawn as it is.
  function paintedPlot(div, traces, layout, rasters) {
    if (!window.Plotly) return;
    div.hdRaster = rasters && rasters.length ? rasters : null;
    div.hdRasterKey = null;
    if (div.hdRaster) {
      let count = 0;
      for (const s of div.hdRaster) for (const g of s.groups) count += g.x.length;
      div.dataset.points = String(count); // painted points, for tests and the curious
    } else {
      delete div.dataset.points;
    }
    const drawn = plot(div, traces, layout);
    if (div.hdRaster) {
      if (div._fullLayout) paintRasters(div); // Plotly drew at once (SVG traces only)
      drawn.then(() => paintRasters(div)); // ... or later: painted then (a no-op if done)
    }
    if (!div.hdRasterListener) {
      div.hdRasterListener = true;
      div.on("plotly_relayout", (ev) => {
        if (ev && Object.keys(ev).every((k) => k.startsWith("images"))) return; // our own
        paintRasters(div);
      });
    }
  }

  // An invisible trace over the corners of all points (so autoscale shows them all).
  function extentTrace(xs, ys, xaxis, yaxis) {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const v of xs) if (isFinite(v)) { if (v < x0) x0 = v; if (v > x1) x1 = v; }
    for (const v of ys) if (isFinite(v)) { if (v < y0) y0 = v; if (v > y1) y1 = v; }
    return { x: x0 <= x1 ? [x0, x1] : [], y: y0 <= y1 ? [y0, y1] : [], mode: "markers", type: "scatter",
      marker: { opacity: 0, size: 6 }, hoverinfo: "skip", showlegend: false, xaxis: xaxis, yaxis: yaxis };
  }

  // The indices of the n best losses (ties: earlier first), in their original order.
  function bestIndices(losses, n, maximize) {
    const order = losses.map((_, i) => i).filter((i) => typeof losses[i] === "number");
    order.sort((a, b) => (maximize ? losses[b] - losses[a] : losses[a] - losses[b]) || a - b);
    return order.slice(0, n).sort((a, b) => a - b);
  }

  const SLICE_SHADES = ["#c6dbef", "#6baed6", "#2171b5", "#08306b"];
  const SLICE_QUARTERS = ["first quarter", "second quarter", "third quarter", "last quarter"];
  const VIRIDIS = ["#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725"];

  const PAR_LABEL_SIZE = 11; // px, parallel coordinates' axis labels
  const PAR_ROW = 15; // px between rows of staggered labels

  // How many rows centred labels ``widths`` (px) need not to overlap, ``spacing`` px
  // apart: label j goes on row j % rows (at most 4).
  function labelRows(widths, spacing) {
    for (let rows = 1; rows < 4; rows++) {
      if (widths.every((w, j) => j + rows >= widths.length || (w + widths[j + rows]) / 2 + 8 <= rows * spacing)) return rows;
    }
    return 4;
  }

  // The angle (degrees, negative: rising) for Plotly parcoords' labels ``widths`` (px),
  // ``spacing`` px apart: level when they fit side by side, else the least slant at which
  // each one's box stays clear of the next axis' label.
  function glLabelAngle(widths, spacing) {
    if (labelRows(widths, spacing) === 1) return 0;
    const widest = Math.max(0, ...widths);
    for (const deg of [30, 45, 60, 75]) {
      const a = deg * Math.PI / 180;
      if (widest * Math.cos(a) + PAR_LABEL_SIZE * 1.3 * Math.sin(a) + 6 <= spacing) return -deg;
    }
    return -90;
  }

  // Parallel coordinates as plain SVG line traces: one axis per dimension (scaled to its
  // own range, labelled at its ends and middle), lines coloured by loss in a few bands
  // (the best drawn last, on top), a colour bar; no WebGL.
  // Axis labels are annotations over their axes, on as many staggered rows as they need
  // not to overlap (``spacing``: pixels between axes).
  function parcoordsSVG(dims, color, maximize, title, width) {
    const n = dims.length;
    const ranges = dims.map((d) => {
      let lo = Infinity, hi = -Infinity;
      for (const v of d.values) if (typeof v === "number" && isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
      if (!(lo <= hi)) { lo = 0; hi = 1; }
      if (lo === hi) { lo -= 0.5; hi += 0.5; }
      return [lo, hi];
    });
    const lines = dims.length ? dims[0].values.length : 0;
    let cmin = Infinity, cmax = -Infinity;
    for (const c of color || []) if (typeof c === "number" && isFinite(c)) { if (c < cmin) cmin = c; if (c > cmax) cmax = c; }
    const colored = cmin <= cmax;
    const bands = colored ? VIRIDIS.length : 1;
    const traces = [];
    for (let b = 0; b < bands; b++) {
      // band 0 is the worst: drawn first
      // the colour bar runs the same way (reversed when minimising): the best is yellow
      const shade = colored ? VIRIDIS[b] : "rgba(31,119,180,0.5)";
      traces.push({ type: "scatter", mode: "lines", x: [], y: [], hoverinfo: "skip", showlegend: false,
        name: "trials", line: { color: shade, width: 1 }, opacity: 0.7 });
    }
    for (let i = 0; i < lines; i++) {
      let band = 0;
      if (colored) {
        const c = color[i];
        if (typeof c !== "number" || !isFinite(c)) continue;
        const q = cmax > cmin ? (c - cmin) / (cmax - cmin) : 0.5;
        band = Math.min(bands - 1, Math.floor((maximize ? q : 1 - q) * bands));
      }
      const t = traces[band];
      for (let j = 0; j < n; j++) {
        const v = dims[j].values[i];
        t.x.push(j);
        t.y.push(typeof v === "number" && isFinite(v) ? (v - ranges[j][0]) / (ranges[j][1] - ranges[j][0]) : null);
      }
      t.x.push(null); t.y.push(null);
    }
    if (colored) {
      traces.push({ type: "scatter", mode: "markers", x: [null], y: [null], hoverinfo: "skip", showlegend: false,
        marker: { color: [cmin, cmax], cmin: cmin, cmax: cmax, colorscale: "Viridis", reversescale: !maximize,
          showscale: true, colorbar: { thickness: 12, len: 0.9 } } });
    }
    // axes as one line trace, their labels as one text trace (far cheaper for Plotly
    // than a shape and an annotation each)
    const axes = { type: "scatter", mode: "lines", x: [], y: [], hoverinfo: "skip", showlegend: false,
      line: { color: "#444", width: 1 } };
    const labels = { type: "scatter", mode: "text", x: [], y: [], text: [], textposition: "middle left",
      textfont: { size: 9, color: "#444" }, hoverinfo: "skip", showlegend: false, cliponaxis: false };
    dims.forEach((d, j) => {
      axes.x.push(j, j, null); axes.y.push(0, 1, null);
      const ticks = d.ticktext
        ? d.tickvals.map((v, k) => [(v - ranges[j][0]) / (ranges[j][1] - ranges[j][0]), escapeText(d.ticktext[k])])
        : [0, 0.5, 1].map((q) => [q, shortNumber(ranges[j][0] + q * (ranges[j][1] - ranges[j][0]))]);
      for (const [y, text] of ticks) {
        labels.x.push(j - 0.02); labels.y.push(y); labels.text.push(text);
      }
    });
    traces.push(axes, labels);
    // between axes: the plot's width less the margins and the colour bar, over n - 0.3
    const spacing = Math.max(1, width - 60 - (colored ? 60 : 0)) / Math.max(n - 0.3, 1);
    const rows = labelRows(dims.map((d) => textWidth(d.label, PAR_LABEL_SIZE)), spacing);
    const annotations = dims.map((d, j) => ({
      text: escapeText(d.label), x: j, xref: "x", xanchor: "center", y: 1, yref: "paper", yanchor: "bottom",
      yshift: 4 + PAR_ROW * (rows - 1 - (j % rows)), showarrow: false, font: { size: PAR_LABEL_SIZE, color: "#444" },
    }));
    return {
      traces: traces,
      layout: plotLayout(title, {
        showlegend: false,
        xaxis: { visible: false, range: [-0.5, Math.max(n - 0.8, 0.5)], fixedrange: true },
        yaxis: { visible: false, range: [-0.04, 1.04], fixedrange: true },
        annotations: annotations,
        margin: { l: 40, r: 20, t: 54 + PAR_ROW * rows, b: 20 }, detailAt: "bottom",
      }),
    };
  }

  // ==================================================================================
  // Page: experiments
  // ==================================================================================
  function experimentsPage() {
    clear(main);
    const heading = el("h1", { text: "Experiments" });
    const table = makeTable("experiments", [
      { key: "name", label: "Name", value: (r) => r.name,
        cell: (r) => el("a", { href: "/experiments/" + encodeName(r.name), text: r.name }) },
      { key: "state", label: "State", value: (r) => r.state },
      { key: "sampler", label: "Sampler", value: (r) => r.sampler },
      { key: "done", label: "Done / budget", value: (r) => r.done,
        cell: (r) => r.done + " / " + (r.budget === null ? "∞" : r.budget) },
      { key: "running", label: "Running", value: (r) => r.running },
      { key: "failed", label: "Failed", value: (r) => r.failed },
      { key: "pruned", label: "Pruned", value: (r) => r.pruned },
      { key: "age", label: "Age", value: (r) => r.age, cell: (r) => fmtDuration(r.age) },
      { key: "duration", label: "Duration", value: (r) => r.duration,
        cell: (r) => fmtDuration(r.duration) + (r.state === "running" ? " (running)" : "") },
      { key: "best", label: "Best loss", value: (r) => r.best_loss,
        cell: (r) => r.objectives.length > 1 ? "Pareto (" + r.objectives.length + " objectives)" : fmtNum(r.best_loss) },
      { key: "actions", label: "", cell: (r) => experimentActions(r, false) },
    ], { sortKey: "name", rowAttrs: (r) => ({ "data-name": r.name }) });

    const form = createForm();
    main.appendChild(heading);
    main.appendChild(table.node);
    main.appendChild(form);

    renderPage = async () => {
      const rows = await getJSON("/api/experiments");
      table.update(rows);
    };
  }

  function experimentActions(exp, onDetail) {
    const box = el("span", { className: "actions" });
    if (exp.state === "running") {
      box.appendChild(button("Cancel", "cancel-experiment", () => {
        if (!window.confirm("Cancel experiment " + exp.name + "?")) return;
        act("Cancel " + exp.name, "/api/experiments/" + encodeName(exp.name) + "/cancel");
      }));
    }
    box.appendChild(button("Clone", "clone-experiment", () => {
      const name = window.prompt("Name of the copy of " + exp.name + ":", exp.name + "-2");
      if (!name) return;
      act("Clone " + exp.name, "/api/experiments/" + encodeName(exp.name) + "/clone", { name: name },
        (data) => { if (onDetail) window.location.href = "/experiments/" + encodeName(data.experiment.name); });
    }));
    box.appendChild(button("Delete", "delete-experiment danger", () => {
      if (!window.confirm("Delete experiment " + exp.name + " and all its trials" +
        (exp.artifacts ? ", and their files in " + exp.artifacts : "") + "?")) return;
      act("Delete " + exp.name, "/api/experiments/" + encodeName(exp.name) + "/delete", {},
        () => { if (onDetail) window.location.href = "/"; });
    }));
    return box;
  }

  function createForm() {
    const name = el("input", { id: "create-name", name: "name", required: true, placeholder: "my-search" });
    const space = el("textarea", { id: "create-space", name: "space", rows: 5, required: true,
      placeholder: '{"lr": [0.1, 0.01], "layers": [1, 2], "epochs": 10}\n\nor a Python config:\nfrom hyperdock import hp\nSPACE = {"lr": hp.loguniform("lr", -9, -2), "epochs": 10}' });
    const command = el("input", { id: "create-command", name: "command", placeholder: "python train.py" });
    const image = el("input", { id: "create-image", name: "image", placeholder: "or a Docker image" });
    const budget = el("input", { id: "create-budget", name: "max_trials", type: "number", min: 1, placeholder: "50 (grid: all)" });
    const sampler = el("select", { id: "create-sampler", name: "sampler" }, [
      el("option", { value: "", text: "auto" }),
      ...["tpe", "gp", "cmaes", "nsga2", "qmc", "random", "grid"].map((s) => el("option", { value: s, text: s })),
    ]);
    const form = el("form", { id: "create-form", className: "create" }, [
      el("h2", { text: "New experiment" }),
      el("label", null, ["Name ", name]),
      el("label", null, ["Space (JSON: v0.4 data format or Space.to_json; or a Python config: SPACE = {...} with hp.* calls, read without running it) ", space]),
      el("label", null, ["Command ", command]),
      el("label", null, ["Image ", image]),
      el("label", null, ["Budget ", budget]),
      el("label", null, ["Sampler ", sampler]),
      el("button", { type: "submit", text: "Create" }),
    ]);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const payload = {
        name: name.value.trim(),
        space: space.value,
        command: command.value.trim() || null,
        image: image.value.trim() || null,
        max_trials: budget.value ? Number(budget.value) : null,
        sampler: sampler.value || null,
      };
      act("Create " + payload.name, "/api/experiments", payload, () => form.reset());
    });
    return form;
  }

  // ==================================================================================
  // Page: one experiment
  // ==================================================================================
  function experimentPage(name) {
    clear(main);
    const title = el("h1", null, ["Experiment ", el("span", { id: "exp-name", text: name })]);
    const summary = el("div", { id: "summary", className: "summary" });
    const actions = el("div", { id: "exp-actions" });
    let paramKeys = [];
    let multi = false;

    const columns = () => {
      const cols = [
        { key: "number", label: "#", value: (r) => r.number,
          cell: (r) => el("a", { href: "/trials/" + r.id, text: String(r.number) }) },
        { key: "id", label: "Id", value: (r) => r.id },
        { key: "state", label: "State", value: (r) => r.state,
          cell: (r) => el("span", { className: "state state-" + r.state, text: r.state + (r.stop_requested && r.state === "running" ? " (stopping)" : "") }) },
        { key: "loss", label: multi ? "Values" : "Loss", value: (r) => (multi ? (r.values ? r.values[0] : null) : r.loss),
          cell: (r) => multi ? (r.values ? r.values.map(fmtNum).join(", ") : "-") : fmtNum(r.loss) },
      ];
      for (const key of paramKeys) {
        cols.push({ key: "p:" + key, label: key, value: (r) => { const v = r.flat[key]; return v === undefined ? null : v; },
          cell: (r) => (r.flat[key] === undefined ? "" : fmtValue(r.flat[key])) });
      }
      cols.push(
        { key: "attempt", label: "Attempt", value: (r) => r.attempt },
        { key: "duration", label: "Duration (s)", value: (r) => r.duration, cell: (r) => fmtNum(r.duration) },
        { key: "actions", label: "", cell: (r) => (r.state === "queued" || r.state === "running")
          ? button("Cancel", "cancel-trial", () => act("Cancel trial " + r.id, "/api/trials/" + r.id + "/cancel"), { "data-trial-id": r.id })
          : null },
      );
      return cols;
    };

    const tableBox = el("div", { id: "trials-box" });
    let table = null;
    let tableKeys = null;
    // Over the sample limit the table is paged by the server (newest first, oldest
    // first or best loss; one state or all), and the plots get a sample.
    const server = { on: false, offset: 0, order: "newest", state: "", total: 0 };
    const shown = el("p", { id: "trials-shown", className: "muted" });
    const orderBox = el("select", { id: "trials-order" },
      [["newest", "newest first"], ["oldest", "oldest first"], ["best", "best loss first"]]
        .map(([v, t]) => el("option", { value: v, text: t })));
    const stateBox = el("select", { id: "trials-state" },
      [el("option", { value: "", text: "every state" }),
        ...["queued", "running", "completed", "pruned", "failed", "cancelled"].map((v) => el("option", { value: v, text: v }))]);
    const reload = () => { refreshTable().catch((err) => showError(err.message)); };
    orderBox.addEventListener("change", () => {
      server.order = orderBox.value;
      if (server.order === "best") { server.state = ""; stateBox.value = ""; }
      server.offset = 0; reload();
    });
    stateBox.addEventListener("change", () => {
      server.state = stateBox.value;
      if (server.state && server.order === "best") { server.order = "newest"; orderBox.value = "newest"; }
      server.offset = 0; reload();
    });
    const serverPagerText = el("span", { className: "pager-text" });
    const pageTo = (offset) => () => { server.offset = offset(); reload(); };
    const lastOffset = () => Math.max(0, Math.floor((Math.max(server.total, 1) - 1) / TRIALS_PAGE) * TRIALS_PAGE);
    const serverPager = el("div", { className: "pager", id: "trials-pager" }, [
      button("« first", "pager-first", pageTo(() => 0)),
      button("‹ prev", "pager-prev", pageTo(() => Math.max(0, server.offset - TRIALS_PAGE))),
      serverPagerText,
      button("next ›", "pager-next", pageTo(() => Math.min(lastOffset(), server.offset + TRIALS_PAGE))),
      button("last »", "pager-last", pageTo(lastOffset)),
    ]);
    const serverControls = el("div", { id: "trials-controls", className: "table-controls" },
      [el("label", null, ["order ", orderBox]), " ", el("label", null, ["state ", stateBox])]);
    // header clicks: "#" flips newest/oldest, the loss sorts best first
    const serverSort = (key, probe) => {
      if (key !== "number" && key !== "loss") return false;
      if (probe) return true;
      server.order = key === "loss" ? "best" : server.order === "newest" ? "oldest" : "newest";
      if (server.order === "best") { server.state = ""; stateBox.value = ""; }
      orderBox.value = server.order;
      server.offset = 0; reload();
      return true;
    };

    async function refreshTable() {
      if (!server.on || !table) return;
      const q = "?limit=" + TRIALS_PAGE + "&offset=" + server.offset + "&order=" + server.order
        + (server.state ? "&state=" + encodeURIComponent(server.state) : "");
      const page = await getJSON("/api/experiments/" + encodeName(name) + "/trials" + q);
      server.total = page.total;
      if (page.total && server.offset >= page.total) { server.offset = lastOffset(); return refreshTable(); }
      table.update(page.trials.map((t) => Object.assign({}, t, { flat: flatten(t.params) })));
      const pages = Math.max(1, Math.ceil(page.total / TRIALS_PAGE));
      serverPagerText.textContent = page.total
        ? " rows " + (server.offset + 1) + "–" + (server.offset + page.trials.length) + " of " + page.total
          + " (page " + (Math.floor(server.offset / TRIALS_PAGE) + 1) + " / " + pages + ") "
        : " no rows ";
    }

    let lastData = null;
    // Per plot: WebGL (true), or without a GPU painted points / SVG lines (false).
    const views = { history: fastGL(), parallel: fastGL(), slices: fastGL(),
      logY: { history: null, intermediate: null } }; // log-y: null = automatic
    const viewSwitch = (key) => button("", "plot-switch", () => {
      views[key] = !views[key];
      if (lastData) drawExperimentPlots(...lastData, views);
    }, { id: key + "-switch", hidden: true });
    // "log y" boxes: ticked by default when the losses span more than two decades
    const logSwitch = (key) => {
      const box = el("input", { type: "checkbox", id: key + "-logy", className: "log-switch" });
      box.addEventListener("change", () => {
        views.logY[key] = box.checked;
        if (lastData) drawExperimentPlots(...lastData, views);
      });
      return el("label", { className: "log-label" }, [box, " log y"]);
    };
    const plots = el("div", { className: "plots" }, [
      el("div", { className: "plot-box" }, [el("div", { id: "history", className: "plot" }), viewSwitch("history"), logSwitch("history")]),
      el("div", { className: "plot-box" }, [el("div", { id: "parallel", className: "plot" }), viewSwitch("parallel")]),
      el("div", { className: "plot-box" }, [el("div", { id: "importances", className: "plot" }),
        button("Recompute", "importances-refresh", () => act("Importances", "/api/experiments/" + encodeName(name) + "/importances"),
          { id: "importances-refresh", title: "compute the importances again now (in the background, on a sample of at most 2,000 completed trials)" })]),
      el("div", { className: "plot-box" }, [el("div", { id: "intermediate", className: "plot" }), logSwitch("intermediate")]),
      el("div", { id: "pareto", className: "plot" }),
    ]);
    const slices = el("div", { id: "slices", className: "plots" }, [viewSwitch("slices")]);

    main.appendChild(title);
    main.appendChild(actions);
    main.appendChild(summary);
    main.appendChild(section("Trials", [shown, tableBox]));
    main.appendChild(section("Plots", [plots]));
    main.appendChild(section("Slices", [slices]));

    let lastActionsKey = null;

    renderPage = async () => {
      const data = await getJSONIfChanged("/api/experiments/" + encodeName(name));
      if (data === null) { // nothing changed since the last poll but the table's page may have
        await refreshTable();
        return;
      }
      const exp = data.experiment;
      multi = exp.objectives.length > 1;
      // summary
      clear(summary);
      summary.appendChild(kvTable({
        state: exp.state,
        sampler: exp.sampler,
        "done / budget": exp.done + " / " + (exp.budget === null ? "∞" : exp.budget),
        trials: data.sampled ? "showing " + data.trials.length + " of " + data.trials_total + " in the plots" : String(data.trials_total),
        running: exp.running,
        failed: exp.failed,
        pruned: exp.pruned,
        "best loss": multi ? "(Pareto front below)" : fmtNum(exp.best_loss),
        objectives: exp.objectives.map((o) => o.name + " (" + o.direction + ")").join(", "),
        target: exp.target,
        space: exp.space_text,
      }));
      const actionsKey = exp.state;
      if (actionsKey !== lastActionsKey) {
        clear(actions);
        actions.appendChild(experimentActions(exp, true));
        lastActionsKey = actionsKey;
      }
      // trials
      const rows = data.trials.map((t) => Object.assign({}, t, { flat: flatten(t.params) }));
      // constants of the space (the same in every trial) get no column, axis or slice
      const constants = new Set(exp.constants || []);
      const keySet = new Set();
      for (const r of rows) for (const k in r.flat) if (!constants.has(k)) keySet.add(k);
      const keys = [...keySet];
      server.on = !!data.sampled;
      shown.textContent = data.sampled
        ? "Plots show " + data.trials.length + " of " + data.trials_total + " trials: the best "
          + (data.best_ids || []).length + ", the newest, the running ones and an even sample of the rest."
        : "";
      shown.hidden = !data.sampled;
      const keySig = JSON.stringify([keys, multi, server.on]);
      if (keySig !== tableKeys) {
        paramKeys = keys;
        const old = table;
        table = server.on
          ? makeTable("trials", columns(), {
            onSort: serverSort,
            rowAttrs: (r) => ({ "data-trial-id": r.id, "data-state": r.state }),
          })
          : makeTable("trials", columns(), {
            filterable: true, sortKey: "number", pageSize: TRIALS_PAGE,
            search: (r) => r.state + " " + r.id + " " + JSON.stringify(r.params) + " " + (r.error || ""),
            rowAttrs: (r) => ({ "data-trial-id": r.id, "data-state": r.state }),
          });
        if (server.on) {
          table.node.insertBefore(serverControls, table.node.firstChild);
          table.node.appendChild(serverPager);
        }
        if (old && !server.on) {
          const oldFilter = old.node.querySelector("input.filter");
          const newFilter = table.node.querySelector("input.filter");
          if (oldFilter && newFilter && oldFilter.value) {
            newFilter.value = oldFilter.value;
            newFilter.dispatchEvent(new Event("input"));
          }
        }
        clear(tableBox);
        tableBox.appendChild(table.node);
        tableKeys = keySig;
      }
      if (server.on) await refreshTable();
      else table.update(rows);
      await plotlyReady;
      lastData = [data, rows, keys, multi, slices];
      drawExperimentPlots(data, rows, keys, multi, slices, views);
    };
  }

  // The "best so far" step line, with only the points where it changes (and the last).
  function bestLine(xs, best) {
    const bx = [], by = [];
    for (let i = 0; i < xs.length; i++) {
      if (i === 0 || i === xs.length - 1 || best[i] !== best[i - 1]) { bx.push(xs[i]); by.push(best[i]); }
    }
    return { x: bx, y: by, mode: "lines", type: "scatter", name: "best so far", line: { shape: "hv" } };
  }

  // At most n rows, deterministic: the best half by loss, then an even spread of the rest;
  // kept in their original order.
  function sampleBest(rows, n, maximize) {
    if (rows.length <= n) return rows;
    const order = rows.map((r, i) => i).sort((a, b) => {
      const la = rows[a].loss, lb = rows[b].loss;
      if (la === lb) return a - b;
      if (la === null) return 1;
      if (lb === null) return -1;
      return maximize ? lb - la : la - lb;
    });
    const keep = new Set(order.slice(0, Math.floor(n / 2)));
    const rest = order.slice(Math.floor(n / 2)).sort((a, b) => a - b);
    const want = n - keep.size;
    for (let k = 0; k < want; k++) keep.add(rest[Math.floor(k * rest.length / want)]);
    return [...keep].sort((a, b) => a - b).map((i) => rows[i]);
  }

  // Shows a plot's view switch when the plot is big enough to have two views.
  function setSwitch(key, dense, gl, glLabel) {
    const sw = document.getElementById(key + "-switch");
    if (!sw) return;
    sw.hidden = fastGL() || !dense;
    sw.textContent = gl ? "Draw without WebGL (fast, static)" : glLabel;
  }

  // A tick number in at most ~6 characters: 0.48, 1200, 1e-4.
  function shortNumber(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a < 0.001 || a >= 1e5)) return v.toExponential(0).replace("e+", "e");
    return String(Number(v.toPrecision(2)));
  }

  // An axis label of at most PAR_LABEL_CHARS: the last part of a dotted path, then cut.
  function shortLabel(label) {
    if (label.length <= PAR_LABEL_CHARS) return label;
    const last = label.split(".").pop();
    const text = last.length < label.length ? "…" + last : label;
    return text.length <= PAR_LABEL_CHARS ? text : text.slice(0, PAR_LABEL_CHARS - 1) + "…";
  }

  // Whether plot ``key``'s y axis is logarithmic: the reader's choice, else when the
  // values are all positive and span more than two decades. Ticks the plot's box.
  function logAxis(key, values, views) {
    let lo = Infinity, hi = -Infinity, positive = true;
    for (const v of values) {
      if (typeof v !== "number" || !isFinite(v)) continue;
      if (v <= 0) positive = false;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const possible = positive && lo <= hi;
    const auto = possible && hi > 100 * lo;
    const chosen = views.logY[key];
    const on = possible && (chosen === null ? auto : chosen);
    const box = document.getElementById(key + "-logy");
    if (box) {
      box.checked = on;
      box.disabled = !possible;
      box.title = possible ? "" : "a log axis needs positive losses";
    }
    return on;
  }

  function drawExperimentPlots(data, rows, keys, multi, slicesBox, views) {
    const exp = data.experiment;
    const maximize = exp.objectives.length && exp.objectives[0].direction === "maximize";
    const done = rows.filter((r) => r.state === "completed" && r.loss !== null);
    // history
    const xs = done.map((r) => r.number);
    const ys = done.map((r) => r.loss);
    const best = [];
    let cur = null;
    for (const y of ys) {
      if (cur === null || (maximize ? y > cur : y < cur)) cur = y;
      best.push(cur);
    }
    // pruned trials: at their last reported loss, marked (not in "best so far")
    const pruned = rows.filter((r) => r.state === "pruned" && (r.loss !== null || r.last));
    const prunedY = pruned.map((r) => (r.loss !== null ? r.loss : r.last[1]));
    const prunedTrace = {
      x: pruned.map((r) => r.number), y: prunedY, mode: "markers", type: "scatter", name: "pruned (last reported loss)",
      marker: { symbol: "x", color: "#c0392b", size: 7 }, hoverinfo: "x+y+text",
      text: pruned.map((r) => "trial " + r.id + " pruned" + (r.last ? " at step " + r.last[0] : "")),
    };
    const historyLog = logAxis("history", ys.concat(prunedY), views);
    const historyDiv = document.getElementById("history");
    const historyLayout = plotLayout("Optimisation history", { xaxis: { title: { text: "trial" } },
      yaxis: { title: { text: "loss" + (historyLog ? " (log)" : "") }, type: historyLog ? "log" : "linear" } });
    const dense = done.length > GL_POINTS;
    if (dense && !views.history) {
      // every point painted; the best ones hoverable
      const keep = bestIndices(ys, HOVER_POINTS, maximize);
      historyDiv.dataset.view = "painted";
      paintedPlot(historyDiv, [
        extentTrace(xs, ys, "x", "y"),
        { x: keep.map((i) => xs[i]), y: keep.map((i) => ys[i]), mode: "markers", type: "scatter",
          name: "loss (best " + keep.length + " hoverable)", marker: { color: "#1f77b4", size: 6 },
          text: keep.map((i) => "trial " + done[i].id), hoverinfo: "x+y+text" },
        bestLine(xs, best), prunedTrace,
      ], historyLayout, [{ xaxis: "xaxis", yaxis: "yaxis", groups: [{ x: xs, y: ys, color: "#1f77b4" }] }]);
    } else {
      historyDiv.dataset.view = dense ? "webgl" : "svg";
      paintedPlot(historyDiv, [
        { x: xs, y: ys, mode: "markers", type: dense ? "scattergl" : "scatter", name: "loss",
          text: done.map((r) => "trial " + r.id), hoverinfo: "x+y+text" },
        bestLine(xs, best), prunedTrace,
      ], historyLayout, null);
    }
    setSwitch("history", dense, views.history, "Interactive (WebGL: every point hoverable, slow without a GPU)");

    // parallel coordinates (at most MAX_PARCOORDS trials: the best ones, then an even
    // sample; at most MAX_PAR_AXES parameters: the most important ones)
    const par = sampleBest(done, MAX_PARCOORDS, maximize);
    const dims = [];
    let parKeys = keys;
    const importance = data.importances || {};
    // as many axes as fit side by side with their numbers (about 60 px each, loss included)
    const parWidth = (document.getElementById("parallel").clientWidth || 600) - 60;
    const maxAxes = Math.max(2, Math.min(MAX_PAR_AXES, Math.floor(parWidth / 60) - (multi ? 0 : 1)));
    if (keys.length > maxAxes) {
      const rank = (k) => (importance[k] !== undefined ? importance[k] : -1);
      const top = new Set(keys.slice().sort((a, b) => rank(b) - rank(a)).slice(0, maxAxes));
      parKeys = keys.filter((k) => top.has(k));
    }
    for (const key of parKeys) {
      const vals = par.map((r) => r.flat[key]);
      if (vals.some((v) => v === undefined)) continue;
      if (vals.every((v) => typeof v === "number")) {
        dims.push({ label: key, values: vals });
      } else {
        const cats = [...new Set(vals.map(fmtValue))];
        dims.push({ label: key, values: vals.map((v) => cats.indexOf(fmtValue(v))),
          tickvals: cats.map((_, i) => i), ticktext: cats });
      }
    }
    if (!multi) dims.push({ label: "loss", values: par.map((r) => r.loss) });
    for (const d of dims) d.label = shortLabel(d.label);
    const parNotes = [];
    if (par.length < done.length) parNotes.push(par.length + " of " + done.length + " trials");
    if (parKeys.length < keys.length) parNotes.push("the " + parKeys.length + " most important of " + keys.length + " parameters");
    const parTitle = "Parallel coordinates" + (parNotes.length ? "\n" + parNotes.join("; ") : "");
    const parDiv = document.getElementById("parallel");
    if (views.parallel) {
      // Plotly's labels, slanted as much as they need not to overlap (Plotly renders
      // their markup: escaped); the axes span the plot's width less margins and colour bar
      parDiv.dataset.view = "webgl";
      const widths = dims.map((d) => textWidth(d.label, PAR_LABEL_SIZE));
      const angle = glLabelAngle(widths, (parWidth + 60 - 90 - (multi ? 0 : 50)) / Math.max(dims.length - 1, 1));
      const a = -angle * Math.PI / 180;
      const rise = Math.max(0, ...widths) * Math.sin(a) + PAR_LABEL_SIZE * 1.3 * Math.cos(a);
      const top = Math.max(80, Math.round(64 + rise));
      plot(parDiv, [{
        type: "parcoords", labelangle: angle, labelside: "top",
        // (its tick texts are plain text already)
        dimensions: dims.map((d) => Object.assign({}, d, { label: escapeText(d.label) })),
        labelfont: { size: PAR_LABEL_SIZE }, tickfont: { size: 10 },
        line: multi ? {} : { color: par.map((r) => r.loss), colorscale: "Viridis", reversescale: !maximize, showscale: true },
      }], plotLayout(parTitle, { showlegend: false, detailAt: "bottom", detailShift: -24, height: 320 + Math.max(0, top - 110),
        margin: { l: 50, r: 40, t: top, b: 46 } }));
    } else {
      parDiv.dataset.view = "svg";
      parDiv.dataset.dimensions = String(dims.length);
      const fig = parcoordsSVG(dims, multi ? null : par.map((r) => r.loss), maximize, parTitle, parWidth + 60);
      plot(parDiv, fig.traces, fig.layout);
    }
    setSwitch("parallel", true, views.parallel, "Interactive (WebGL: slow without a GPU)");

    // importances
    const imp = Object.entries(data.importances || {}).sort((a, b) => a[1] - b[1]);
    const impState = data.importances_state || {};
    const impWhen = impState.computed_at ? "computed " + new Date(impState.computed_at * 1000).toLocaleTimeString()
      + (impState.used && impState.completed ? " on " + (impState.used < impState.completed ? impState.used + " of " : "") + impState.completed + " completed trials" : "") : "";
    const impNote = impState.status === "pending" ? "computing…" + (impWhen ? " (last " + impWhen + ")" : "")
      : imp.length ? impWhen + (impState.status === "stale" ? " (more trials since)" : "")
        : impState.status === "none" ? "need 2+ completed trials" : "none: " + (impWhen || "need 2+ completed trials");
    const impDiv = document.getElementById("importances");
    impDiv.dataset.status = impState.status || "";
    plot("importances", [{ type: "bar", orientation: "h", x: imp.map((e) => e[1]), y: imp.map((e) => escapeText(e[0])), name: "importance" }],
      plotLayout("Parameter importances\n" + impNote, { showlegend: false,
        margin: { l: 20, r: 20, t: 40, b: 40 }, yaxis: { automargin: true } }));

    // intermediate curves
    const byId = {};
    for (const r of rows) byId[r.id] = r;
    const curves = [];
    const entries = Object.entries(data.progress || {});
    // Few curves: one trace each. Many: running ones alone, the others merged into one
    // trace per kind (gaps between curves), which Plotly draws far faster.
    const merged = entries.length > MAX_CURVE_TRACES ? {} : null;
    for (const [tid, pts] of entries) {
      const t = byId[tid];
      const pruned = t && t.state === "pruned";
      const style = {
        type: "scatter", mode: pruned ? "lines+markers" : "lines",
        line: pruned ? { dash: "dot", color: "#c0392b" } : {},
        marker: pruned ? { symbol: "x", size: 7 } : {},
      };
      if (merged && !(t && t.state === "running")) {
        const kind = pruned ? "pruned" : "finished";
        const m = merged[kind] || (merged[kind] = Object.assign({ x: [], y: [], text: [], n: 0 }, style));
        if (m.n++) { m.x.push(null); m.y.push(null); m.text.push(""); }
        for (const p of pts) { m.x.push(p[0]); m.y.push(p[1]); m.text.push("trial " + tid); }
        continue;
      }
      curves.push(Object.assign({
        x: pts.map((p) => p[0]), y: pts.map((p) => p[1]),
        name: "trial " + tid + (pruned ? " (pruned)" : ""),
      }, style));
    }
    for (const [kind, m] of Object.entries(merged || {})) {
      m.name = m.n + " " + kind + " trials";
      m.hoverinfo = "x+y+text";
      m.line = Object.assign({ width: 1 }, kind === "pruned" ? m.line : { color: "rgba(31,119,180,0.35)" });
      delete m.n;
      curves.unshift(m);
    }
    // (merged traces hold many curves: count the curves, not the traces)
    const total = data.progress_total || entries.length;
    const curveTitle = !entries.length ? "Intermediate losses\nnone reported"
      : entries.length < total ? "Intermediate losses\n" + entries.length + " of " + total + " curves: running, best, pruned" : "Intermediate losses";
    const curveValues = [];
    for (const [, pts] of entries) for (const p of pts) curveValues.push(p[1]);
    const curvesLog = logAxis("intermediate", curveValues, views);
    plot("intermediate", curves, plotLayout(curveTitle, { xaxis: { title: { text: "step" } },
      yaxis: { title: { text: "loss" + (curvesLog ? " (log)" : "") }, type: curvesLog ? "log" : "linear" } }));

    // pareto
    const paretoDiv = document.getElementById("pareto");
    if (multi) {
      paretoDiv.hidden = false;
      const names = exp.objectives.map((o) => o.name);
      const all = rows.filter((r) => r.state === "completed" && r.values);
      const front = data.pareto_front || [];
      plot("pareto", [
        { x: all.map((r) => r.values[0]), y: all.map((r) => r.values[1]), mode: "markers", type: "scatter", name: "trials",
          marker: { color: "#bbb" }, text: all.map((r) => "trial " + r.id) },
        { x: front.map((f) => f.values[0]), y: front.map((f) => f.values[1]), mode: "markers", type: "scatter",
          name: "Pareto front", marker: { color: "#c0392b", size: 10 }, text: front.map((f) => "trial " + f.id) },
      ], plotLayout("Pareto front", { xaxis: { title: { text: escapeText(names[0]) } }, yaxis: { title: { text: escapeText(names[1] || "") } } }));
    } else {
      paretoDiv.hidden = true;
    }

    // slices: one figure, drawn after the plots above have shown
    // a slice's axis is logarithmic when its parameter's distribution is (the space says)
    const logPaths = new Set();
    for (const p of exp.parameters || []) if (p.log) for (const path of p.paths) logPaths.add(path);
    setTimeout(() => drawSlices(rows, keys, done, slicesBox, views.slices, maximize, logPaths), 0);
  }

  // One slice (loss against the parameter) per parameter, all in one figure of two
  // columns. Over GL_POINTS points they are coloured by quarter of the run (early light,
  // late dark), and drawn with WebGL (one context for all of them: each costs ~0.3 s to
  // set up when WebGL runs on the CPU) or, without a GPU, painted.
  function drawSlices(rows, keys, done, slicesBox, gl, maximize, logPaths) {
    let div = document.getElementById("slices-plot");
    if (!div) {
      div = el("div", { id: "slices-plot", className: "plot slices" });
      slicesBox.appendChild(div);
    }
    const dense = done.length > GL_POINTS;
    const painted = dense && !gl;
    const cols = keys.length > 1 ? 2 : 1;
    const rowsN = Math.max(1, Math.ceil(keys.length / cols));
    const gap = 0.12;
    const traces = [], rasters = [];
    const layout = plotLayout(keys.length ? "Slices: loss against each parameter" : "Slices (no parameters)", {
      showlegend: dense, height: 70 + 230 * rowsN, margin: { l: 60, r: 20, t: 50, b: 40 },
      legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom", itemclick: painted ? false : "toggle" },
    });
    keys.forEach((key, i) => {
      const pts = done.filter((r) => r.flat[key] !== undefined);
      const vals = pts.map((r) => r.flat[key]);
      const numeric = vals.every((v) => typeof v === "number");
      const suffix = i ? String(i + 1) : "";
      // (names and values shown as text: Plotly renders their markup otherwise)
      const xs = numeric ? vals : vals.map((v) => escapeText(fmtValue(v)));
      const cats = numeric ? null : [...new Set(xs)];
      const catIndex = numeric ? null : new Map(cats.map((c, i) => [c, i]));
      const log = numeric && logPaths.has(key) && vals.every((v) => v > 0);
      const xaxis = { title: { text: escapeText(key), standoff: 4 }, type: log ? "log" : numeric ? "-" : "category" };
      if (!dense) {
        traces.push({ x: xs, y: pts.map((r) => r.loss), mode: "markers", type: "scatter", name: escapeText(key),
          xaxis: "x" + suffix, yaxis: "y" + suffix, text: pts.map((r) => "trial " + r.id),
          marker: { color: pts.map((r) => r.number), colorscale: "Blues", size: 5 } });
      } else {
        // four traces (a colour per point costs Plotly far more); painted: every point
        // in the image, the best ones in the traces
        const quarters = SLICE_SHADES.map((color) => ({ x: [], y: [], text: [], color: color }));
        const first = pts.length ? pts[0].number : 0;
        const span = pts.length ? pts[pts.length - 1].number - first + 1 : 1;
        const quarterOf = (r) => Math.min(3, Math.floor((4 * (r.number - first)) / span));
        const hover = painted ? new Set(bestIndices(pts.map((r) => r.loss), HOVER_SLICE_POINTS, maximize)) : null;
        const groups = painted ? SLICE_SHADES.map((color) => ({ x: [], y: [], color: color })) : null;
        pts.forEach((r, k) => {
          const n = quarterOf(r), q = quarters[n];
          if (painted) {
            const g = groups[n];
            g.x.push(log ? Math.log10(xs[k]) : numeric ? xs[k] : catIndex.get(xs[k])); g.y.push(r.loss);
            if (!hover.has(k)) return;
          }
          q.x.push(xs[k]); q.y.push(r.loss); q.text.push("trial " + r.id);
        });
        quarters.forEach((q, n) => {
          if (!painted && !q.x.length) return;
          traces.push({ x: q.x, y: q.y, text: q.text, mode: "markers", type: painted ? "scatter" : "scattergl",
            name: "trials, " + SLICE_QUARTERS[n] + (painted && i === 0 ? " (best " + HOVER_SLICE_POINTS + " hoverable)" : ""),
            legendgroup: "q" + n, showlegend: i === 0,
            xaxis: "x" + suffix, yaxis: "y" + suffix, marker: { color: q.color, size: 5 } });
        });
        if (painted) {
          const ys = pts.map((r) => r.loss);
          const extent = extentTrace(numeric ? xs : [], ys, "x" + suffix, "y" + suffix);
          if (!numeric && cats.length) extent.x = [cats[0], cats[cats.length - 1]];
          traces.unshift(extent);
          rasters.push({ xaxis: "xaxis" + suffix, yaxis: "yaxis" + suffix, groups: groups });
          if (!numeric) Object.assign(xaxis, { categoryorder: "array", categoryarray: cats });
        }
      }
      const c = i % cols, r = Math.floor(i / cols);
      const x0 = c / cols + (c ? gap / 2 : 0), x1 = (c + 1) / cols - (c < cols - 1 ? gap / 2 : 0);
      const y1 = 1 - r / rowsN - (r ? 0.3 / rowsN / 2 : 0), y0 = 1 - (r + 1) / rowsN + (r < rowsN - 1 ? 0.3 / rowsN / 2 : 0);
      layout["xaxis" + suffix] = Object.assign(xaxis, { domain: [x0, x1], anchor: "y" + suffix });
      layout["yaxis" + suffix] = { domain: [y0, y1], anchor: "x" + suffix, title: { text: c ? "" : "loss" } };
    });
    div.dataset.parameters = keys.join(",");
    div.dataset.view = painted ? "painted" : dense ? "webgl" : "svg";
    paintedPlot(div, traces, layout, rasters);
    setSwitch("slices", dense, gl, "Interactive (WebGL: every point hoverable, slow without a GPU)");
  }

  // ==================================================================================
  // Page: one trial
  // ==================================================================================
  function trialPage(id) {
    clear(main);
    const title = el("h1", null, ["Trial ", el("span", { text: id })]);
    const expLink = el("p", { id: "trial-experiment" });
    const actions = el("div", { id: "trial-actions" });
    const info = el("div", { id: "trial-info" });
    const params = el("div", { id: "params" });
    const result = el("pre", { id: "result" });
    const history = el("div", { id: "history-table" });
    const logBox = el("pre", { id: "log", className: "log" });
    const logNote = el("p", { id: "log-note", className: "muted" });
    const graphs = el("div", { id: "graphs", className: "plots" });
    const files = el("ul", { id: "files" });
    const stored = el("ul", { id: "artifacts" });
    const storedSection = section("Stored files (artifact store)", [stored]);
    main.appendChild(title);
    main.appendChild(expLink);
    main.appendChild(actions);
    main.appendChild(info);
    main.appendChild(section("Parameters", [params]));
    main.appendChild(section("Result", [result]));
    main.appendChild(section("History", [history]));
    main.appendChild(section("Log (tail)", [logNote, logBox]));
    main.appendChild(section("Graphs", [graphs]));
    main.appendChild(section("Files in out/", [files]));
    main.appendChild(storedSection);

    let lastState = null;
    let lastLog = null;
    let lastGraphs = null;

    renderPage = async () => {
      const t = await getJSON("/api/trials/" + encodeURIComponent(id));
      clear(expLink);
      if (t.experiment !== null) {
        expLink.appendChild(document.createTextNode("Experiment "));
        expLink.appendChild(el("a", { href: "/experiments/" + encodeName(t.experiment), text: t.experiment }));
      }
      if (t.state !== lastState) {
        clear(actions);
        if (t.state === "queued" || t.state === "running") {
          actions.appendChild(button("Cancel trial", "cancel-trial", () => act("Cancel trial " + t.id, "/api/trials/" + t.id + "/cancel"), { "data-trial-id": t.id }));
        }
        lastState = t.state;
      }
      clear(info);
      // A cluster launcher's job of the last attempt (Slurm job id, Kubernetes Job name).
      const launched = (t.result && t.result.launcher) || null;
      info.appendChild(kvTable({
        ...(launched ? { job: launched.kind + " " + (launched.job_id || launched.job || "?") } : {}),
        state: t.state + (t.stop_requested && t.state === "running" ? " (stop requested)" : ""),
        loss: t.values && t.values.length > 1 ? t.values.map(fmtNum).join(", ") : fmtNum(t.loss),
        number: t.number,
        attempts: String(t.attempts) + (t.resumed_from != null ? " (resumed from step " + t.resumed_from + ")" : ""),
        worker: t.worker || "-",
        created: fmtTime(t.created_at),
        started: fmtTime(t.started_at),
        finished: fmtTime(t.finished_at),
        error: t.error || "-",
        folder: t.folder || "-",
      }));
      clear(params);
      params.appendChild(kvTable(flatten(t.params)));
      result.textContent = JSON.stringify(t.result, null, 2);
      clear(history);
      const hist = el("table", { id: "history-attempts" }, [el("tr", null, ["attempt", "worker", "state", "start", "end", "message"].map((h) => el("th", { text: h })))]);
      (t.history || []).forEach((h, i) => {
        // the store writes ended_at; older stores may have written other names
        const end = h.ended_at || h.finished_at || h.end;
        hist.appendChild(el("tr", null, [
          el("td", { className: "attempt", text: String(typeof h.attempt === "number" ? h.attempt : i + 1) }),
          el("td", { text: h.worker || "-" }), el("td", { text: h.state || "-" }),
          el("td", { text: fmtTime(h.started_at || h.start) }), el("td", { className: "end", text: fmtTime(end) }),
          el("td", { text: [h.message || h.error || "", i === t.history.length - 1 && t.resumed_from != null ? "resumed from step " + t.resumed_from : ""].filter(Boolean).join("; ") }),
        ]));
      });
      if (!(t.history || []).length) hist.appendChild(el("tr", null, [el("td", { colspan: 6, className: "muted", text: "no attempt ended yet" })]));
      history.appendChild(hist);
      // log
      if (t.log !== lastLog) {
        const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
        logBox.textContent = t.log === null ? "" : t.log;
        if (atBottom) logBox.scrollTop = logBox.scrollHeight;
        lastLog = t.log;
      }
      logNote.textContent = t.log_file ? t.log_file + (t.state === "running" ? " (refreshing every 2 s)" : "")
        : (t.folder ? (t.folder_here ? "no log file" : "the trial folder is not on this host") : "no trial folder yet");
      // graphs
      const graphSig = JSON.stringify(t.graphs);
      if (graphSig !== lastGraphs) {
        await plotlyReady;
        lastGraphs = graphSig;
        clear(graphs);
        if (Array.isArray(t.graphs)) {
          t.graphs.forEach((g, i) => {
            const div = el("div", { id: "graph-" + i, className: "plot" });
            graphs.appendChild(div);
            const series = Array.isArray(g.series) ? g.series : [];
            // graphs.json is the target's: its texts go to Plotly as plain text (Plotly
            // renders <a href>, <b> … in titles, names, category ticks and hover labels
            // otherwise).
            plot(div, series.map((s) => ({ x: plainValues(s.x), y: plainValues(s.y), name: escapeText(s.label || ""),
              type: "scatter", mode: "lines" })),
              plotLayout(String(g.name || "graph " + i), { xaxis: { title: { text: escapeText(g.x_axis || "") } }, yaxis: { title: { text: escapeText(g.y_axis || "") } } }));
          });
        } else {
          graphs.appendChild(el("p", { className: "muted", text: t.graphs_error || "no graphs.json" }));
        }
      }
      clear(files);
      for (const f of t.files || []) {
        const url = "/api/trials/" + encodeURIComponent(t.id) + "/files/" + f.path.split("/").map(encodeURIComponent).join("/");
        const link = el("a", { href: url, className: "download", "data-path": f.path, text: f.path,
          onclick: (ev) => { ev.preventDefault(); download(url, f.path); } });
        files.appendChild(el("li", null, [link, " (" + fmtNum(f.size) + " bytes)"]));
      }
      if (!(t.files || []).length) files.appendChild(el("li", { className: "muted", text: "(none)" }));
      // The trial's files in the experiment's artifact store (none: no store).
      storedSection.hidden = t.artifacts === null || t.artifacts === undefined;
      clear(stored);
      if (t.artifacts_error) stored.appendChild(el("li", { className: "muted", text: t.artifacts_error }));
      for (const a of t.artifacts || []) {
        const url = "/api/trials/" + encodeURIComponent(t.id) + "/artifacts/" + a.path.split("/").map(encodeURIComponent).join("/");
        const link = el("a", { href: url, className: "download", "data-path": a.path, text: a.path,
          onclick: (ev) => { ev.preventDefault(); download(url, a.path); } });
        stored.appendChild(el("li", null, [link, " (" + fmtNum(a.size) + " bytes)"]));
      }
      if (t.artifacts && !t.artifacts.length && !t.artifacts_error) stored.appendChild(el("li", { className: "muted", text: "(none yet)" }));
    };
  }

  // ==================================================================================
  // Page: workers
  // ==================================================================================
  function workersPage() {
    clear(main);
    main.appendChild(el("h1", { text: "Workers" }));
    const table = makeTable("workers", [
      { key: "id", label: "Worker", value: (r) => r.id },
      { key: "host", label: "Host", value: (r) => r.host },
      { key: "pid", label: "PID", value: (r) => r.pid },
      { key: "parallelism", label: "Slots", value: (r) => r.parallelism },
      { key: "heartbeat", label: "Heartbeat", value: (r) => r.heartbeat_age, cell: (r) => Math.round(r.heartbeat_age) + " s ago" },
      { key: "running", label: "Running trials", value: (r) => r.running.length,
        cell: (r) => { const span = el("span"); r.running.forEach((tid, i) => { if (i) span.appendChild(document.createTextNode(", ")); span.appendChild(el("a", { href: "/trials/" + tid, text: String(tid) })); }); return span; } },
    ], { sortKey: "id" });
    main.appendChild(table.node);
    renderPage = async () => table.update(await getJSON("/api/workers"));
  }

  // -- start ------------------------------------------------------------------------
  const page = body.dataset.page;
  if (page === "experiments") experimentsPage();
  else if (page === "experiment") experimentPage(body.dataset.name);
  else if (page === "trial") trialPage(body.dataset.id);
  else if (page === "workers") workersPage();
  refresh();
  setInterval(refresh, POLL_MS);
})();
