// The report page: ReportJson's data in a <script type="application/json"> block and
// an inline script that draws each section as SVG (report.h lists them). Drawn by
// hand rather than with a chart library: the page must render where no library is
// installed, and five simple shapes (cells, lines, dots, bars, strips) need no more.
#include <string>

#include "absl/strings/str_replace.h"
#include "client/report.h"

namespace qcal::client {
namespace {

constexpr char kHead[] = R"html(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>qcal report</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:16px 24px 48px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;margin:16px 0;padding:14px 18px}
h1{font-size:22px;margin:8px 0 0}h2{font-size:17px;margin:0 0 8px}
.sub{color:#5b6570}.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px}
.kv div:nth-child(odd){color:#5b6570}
code{background:#eef1f4;border-radius:4px;padding:1px 5px;font:13px ui-monospace,Menlo,monospace}
button{font:inherit;border:1px solid #b9c0c8;background:#fff;border-radius:5px;padding:2px 10px;cursor:pointer}
button.on{background:#1d232a;color:#fff;border-color:#1d232a}
svg text{font:11px system-ui,sans-serif;fill:#333}
.note{color:#5b6570;font-size:13px}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #e6e9ec;text-align:left;font-size:13px}
.profiles{display:flex;flex-wrap:wrap;gap:10px}
</style></head><body><main>
<script type="application/json" id="qcal-report">)html";

constexpr char kTail[] = R"html(</script>
<header id="title"></header>
<section id="summary"><h2>Summary</h2></section>
<section id="heatmap"><h2>Outlier ratio (ori / top_0_1) per layer and module</h2></section>
<section id="curves"><h2>Accuracy and perplexity against the threshold</h2></section>
<section id="strip"><h2>Shadow layers per threshold</h2></section>
<section id="tensors"><h2>Per tensor at the threshold</h2></section>
<section id="experts"><h2>Tokens per expert</h2></section>
<section id="exports"><h2>Exports</h2></section>
<script>
(function () {
"use strict";
const R = JSON.parse(document.getElementById("qcal-report").textContent);
const NS = "http://www.w3.org/2000/svg";
function el(tag, attrs, parent, text) {
  const e = document.createElementNS(tag === "div" || tag === "span" || tag === "button" ||
    tag === "code" || tag === "p" || tag === "table" || tag === "tr" || tag === "td" ||
    tag === "th" || tag === "h1" ? "http://www.w3.org/1999/xhtml" : NS, tag);
  for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function tip(e, text) { el("title", {}, e, text); return e; }
function fmt(v, d) { return v === null || v === undefined ? "-" : Number(v).toFixed(d === undefined ? 3 : d); }
function thr(t) { return t >= 1e6 ? t.toExponential(0) : String(t); }
function sec(id) { return document.getElementById(id); }
function note(parent, text) { return el("p", {"class": "note"}, parent, text); }
const job = R.job, ev = R.evaluation, rec = R.recommended, T = R.shown_threshold;

// ---- title and summary
el("h1", {}, sec("title"), "qcal report: " + job.model);
el("div", {"class": "sub"}, sec("title"), job.id + " (" + job.state + "), " + job.architecture + ", " +
   job.linear_modules + " linear modules");
const kv = el("div", {"class": "kv"}, sec("summary"));
function row(k, v) { el("div", {}, kv, k); return el("div", {}, kv, v); }
row("model", job.resolved_model || job.model);
row("corpus", job.corpus + " (num_samples " + job.sampling.num_samples + ", seq_len " + job.sampling.seq_len + ")");
row("samples / tokens", job.samples + " / " + job.tokens);
row("job time", fmt(job.seconds, 1) + " s, " + fmt(job.tokens_per_second, 0) + " tokens/s on " +
    job.workers.length + " worker" + (job.workers.length === 1 ? "" : "s") +
    (job.backup_tasks ? ", " + job.backup_tasks + " backup task(s)" : ""));
if (rec) {
  el("span", {"id": "recommended-threshold"}, row("recommended threshold", ""), thr(rec.threshold));
  const cell = row("shadow layers", "");
  const code = el("code", {"id": "shadow-set"}, cell, rec.shadow_layers_set);
  cell.appendChild(document.createTextNode(" "));
  const b = el("button", {"id": "copy-shadow", "type": "button"}, cell, "copy");
  b.addEventListener("click", function () {
    const done = function () { b.textContent = "copied"; };
    if (navigator.clipboard) navigator.clipboard.writeText(code.textContent).then(done, done);
    else { const r = document.createRange(); r.selectNodeContents(code);
      getSelection().removeAllRanges(); getSelection().addRange(r); document.execCommand("copy"); done(); }
  });
  row("at the threshold", "res " + fmt(rec.res, 4) + ", perplexity " + fmt(rec.perplexity, 3));
} else {
  row("recommended threshold", ev ? "none: " + ev.recommendation_note : "no evaluation yet (qcal evaluate " + job.id + " ...)");
}
if (ev) row("evaluation", ev.operation + ", mode " + ev.mode + ", " + ev.samples + " samples; budget " +
            ev.budget + " (" + ev.budget_metric + ")");

// ---- heat map: rows = layers (lm_head etc. last), columns = module x side
(function () {
  const s = sec("heatmap");
  const modules = [], layers = [];
  for (const l of R.linears) {
    if (modules.indexOf(l.module) < 0) modules.push(l.module);
    if (layers.indexOf(l.layer) < 0) layers.push(l.layer);
  }
  layers.sort(function (a, b) { return (a < 0 ? 1e9 : a) - (b < 0 ? 1e9 : b); });
  let mode = "abs";
  const bar = el("div", {}, s);
  const bAbs = el("button", {"id": "mode-abs", "type": "button", "class": "on"}, bar, "abs");
  bar.appendChild(document.createTextNode(" "));
  const bMllm = el("button", {"id": "mode-mllm", "type": "button"}, bar, "mllm");
  if (T !== null) note(bar, "Outlined: not clipped at threshold " + thr(T) + " (ratio >= threshold).");
  const cw = 46, ch = 20, left = 70, top = 110;
  const cols = modules.length * 2;
  const svg = el("svg", {"width": left + cols * cw + 150, "height": top + layers.length * ch + 20}, s);
  modules.forEach(function (m, i) {
    for (let k = 0; k < 2; ++k) {
      const x = left + (2 * i + k) * cw + cw / 2;
      el("text", {"transform": "translate(" + x + "," + (top - 6) + ") rotate(-55)"}, svg,
         (m || "linear") + (k ? " out" : " in"));
    }
  });
  layers.forEach(function (layer, j) {
    el("text", {"x": left - 8, "y": top + j * ch + 14, "text-anchor": "end"}, svg,
       layer < 0 ? "other" : "layer " + layer);
  });
  let maxLog = 1;
  for (const l of R.linears) for (const side of ["input", "output"]) for (const m of ["abs", "mllm"]) {
    const v = l[side] && l[side][m] && l[side][m].ratio;
    if (v > 1) maxLog = Math.max(maxLog, Math.log2(v));
  }
  const cells = [];
  for (const l of R.linears) {
    const i = modules.indexOf(l.module), j = layers.indexOf(l.layer);
    ["input", "output"].forEach(function (side, k) {
      const r = el("rect", {"class": "cell", "x": left + (2 * i + k) * cw + 1, "y": top + j * ch + 1,
                            "width": cw - 2, "height": ch - 2, "data-linear": l.name, "data-side": side}, svg);
      cells.push({rect: r, l: l, side: side});
    });
  }
  function color(v) {
    if (!(v > 0)) return "#ccc";
    const f = Math.min(1, Math.max(0, Math.log2(v) / maxLog));
    return "hsl(" + (220 - 220 * f) + ",75%," + (88 - 40 * f) + "%)";
  }
  function paint() {
    for (const c of cells) {
      const m = c.l[c.side] && c.l[c.side][mode];
      const v = m ? m.ratio : null;
      c.rect.setAttribute("fill", color(v));
      c.rect.setAttribute("data-ratio", v === null ? "" : v);
      const out = T !== null && v !== null && v >= T;
      c.rect.setAttribute("stroke", out ? "#111" : "none");
      c.rect.setAttribute("stroke-width", out ? 2 : 0);
      while (c.rect.firstChild) c.rect.removeChild(c.rect.firstChild);
      tip(c.rect, c.l.name + " " + c.side + " (" + mode + "): ratio " + fmt(v, 2) + ", ori " +
          fmt(m && m.ori, 4) + ", top_0_1 " + fmt(m && m.top_0_1, 4));
    }
    bAbs.className = mode === "abs" ? "on" : ""; bMllm.className = mode === "mllm" ? "on" : "";
  }
  bAbs.addEventListener("click", function () { mode = "abs"; paint(); });
  bMllm.addEventListener("click", function () { mode = "mllm"; paint(); });
  paint();
  // Legend: ratio scale with the threshold marked.
  const lx = left + cols * cw + 30, lh = Math.max(60, layers.length * ch);
  for (let i = 0; i < 20; ++i) {
    el("rect", {"x": lx, "y": top + lh - (i + 1) * lh / 20, "width": 14, "height": lh / 20 + 0.5,
                "fill": color(Math.pow(2, maxLog * (i + 0.5) / 20))}, svg);
  }
  el("text", {"x": lx + 18, "y": top + lh}, svg, "1");
  el("text", {"x": lx + 18, "y": top + 8}, svg, fmt(Math.pow(2, maxLog), 0));
  if (T !== null && T > 1) {
    const y = top + lh - Math.min(1, Math.log2(T) / maxLog) * lh;
    el("line", {"id": "threshold-line", "x1": lx - 4, "x2": lx + 18, "y1": y, "y2": y, "stroke": "#111",
                "stroke-width": 2}, svg);
    el("text", {"x": lx + 20, "y": y + 4}, svg, "t = " + thr(T));
  }
})();

// ---- accuracy and perplexity against the threshold (log axis)
(function () {
  const s = sec("curves");
  if (!ev) { note(s, "No evaluation of this job yet."); return; }
  const pts = ev.thresholds;
  function chart(key, floatV, label, band) {
    const W = 540, H = 270, L = 60, B = 40, Tp = 34, Rt = 16;
    const svg = el("svg", {"width": W, "height": H, "class": "chart", "data-metric": key}, s);
    const xs = pts.map(function (p) { return Math.log10(p.threshold); });
    const x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs) || 1;
    let vals = pts.map(function (p) { return p[key]; }).filter(function (v) { return v !== null; });
    vals.push(floatV); vals = vals.concat(band);
    let y0 = Math.min.apply(null, vals), y1 = Math.max.apply(null, vals);
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    const pad = (y1 - y0) * 0.08; y0 -= pad; y1 += pad;
    const X = function (t) { return L + (Math.log10(t) - x0) / ((x1 - x0) || 1) * (W - L - Rt); };
    const Y = function (v) { return H - B - (v - y0) / (y1 - y0) * (H - B - Tp); };
    el("rect", {"class": "budget-band", "x": L, "width": W - L - Rt, "y": Y(Math.max(band[0], band[1])),
                "height": Math.abs(Y(band[0]) - Y(band[1])), "fill": "#e4f1e4"}, svg);
    el("line", {"class": "float-baseline", "x1": L, "x2": W - Rt, "y1": Y(floatV), "y2": Y(floatV),
                "stroke": "#5b6570", "stroke-dasharray": "5 4"}, svg);
    el("text", {"x": W - Rt, "y": Y(floatV) - 4, "text-anchor": "end"}, svg, "float " + fmt(floatV, 4));
    el("line", {"x1": L, "x2": L, "y1": Tp, "y2": H - B, "stroke": "#999"}, svg);
    el("line", {"x1": L, "x2": W - Rt, "y1": H - B, "y2": H - B, "stroke": "#999"}, svg);
    for (let i = 0; i <= 4; ++i) {
      const v = y0 + (y1 - y0) * i / 4;
      el("text", {"x": L - 6, "y": Y(v) + 4, "text-anchor": "end"}, svg, fmt(v, key === "res" ? 3 : 1));
    }
    for (let e = Math.ceil(x0); e <= Math.floor(x1); ++e) {
      el("text", {"x": X(Math.pow(10, e)), "y": H - B + 16, "text-anchor": "middle"}, svg, "1e" + e);
    }
    el("text", {"x": L + (W - L) / 2, "y": H - 6, "text-anchor": "middle"}, svg, "threshold (log)");
    el("text", {"x": 8, "y": 14, "font-weight": "bold"}, svg, label);
    let d = "";
    pts.forEach(function (p) { if (p[key] !== null) d += (d ? "L" : "M") + X(p.threshold) + " " + Y(p[key]); });
    el("path", {"d": d, "fill": "none", "stroke": "#2f6fb3", "stroke-width": 1.5}, svg);
    pts.forEach(function (p) {
      if (p[key] === null) return;
      const isRec = rec && p.threshold === rec.threshold;
      const c = el("circle", {"class": "point" + (isRec ? " recommended" : ""), "cx": X(p.threshold),
                              "cy": Y(p[key]), "r": isRec ? 7 : 4, "fill": isRec ? "#d9480f" : "#2f6fb3",
                              "data-threshold": p.threshold, "data-shadow": p.shadow_layers.length}, svg);
      tip(c, "threshold " + thr(p.threshold) + ": " + key + " " + fmt(p[key], 4) + ", shadow layers " +
          p.shadow_layers_set);
      el("text", {"x": X(p.threshold), "y": Y(p[key]) - 9, "text-anchor": "middle"}, svg,
         String(p.shadow_layers.length));
    });
  }
  const b = ev.budget || 0;
  const resBand = ev.budget_metric === "res" ? [ev.float_res - b, ev.float_res] : [ev.float_res, ev.float_res];
  const pplBand = ev.budget_metric === "ppl" ? [ev.float_perplexity, ev.float_perplexity * (1 + b)]
                                            : [ev.float_perplexity, ev.float_perplexity];
  chart("res", ev.float_res, "accuracy (res)", resBand);
  chart("perplexity", ev.float_perplexity, "perplexity", pplBand);
  note(s, "Numbers over the points: shadow layers at that threshold. Green: the budget (" + b + ", " +
       ev.budget_metric + "). Larger dot: recommended.");
})();

// ---- shadow-layer strip: layers x thresholds
(function () {
  const s = sec("strip");
  if (!ev) { note(s, "No evaluation of this job yet."); return; }
  let n = 0;
  for (const l of R.linears) n = Math.max(n, l.layer + 1);
  const cw = 64, ch = 16, L = 70, Tp = 24;
  const svg = el("svg", {"width": L + ev.thresholds.length * cw + 10, "height": Tp + n * ch + 10}, s);
  ev.thresholds.forEach(function (p, i) {
    el("text", {"x": L + i * cw + cw / 2, "y": Tp - 8, "text-anchor": "middle"}, svg, thr(p.threshold));
    for (let layer = 0; layer < n; ++layer) {
      const on = p.shadow_layers.indexOf(layer) >= 0;
      const r = el("rect", {"class": "strip-cell", "x": L + i * cw + 1, "y": Tp + layer * ch + 1,
                            "width": cw - 2, "height": ch - 2, "fill": on ? "#d9480f" : "#eef1f4",
                            "data-layer": layer, "data-threshold": p.threshold, "data-shadow": on ? 1 : 0}, svg);
      tip(r, "layer " + layer + " at threshold " + thr(p.threshold) + ": " + (on ? "shadow layer" : "not shadow"));
    }
  });
  for (let layer = 0; layer < n; ++layer) {
    el("text", {"x": L - 8, "y": Tp + layer * ch + 12, "text-anchor": "end"}, svg, "layer " + layer);
  }
})();

// ---- per tensor: SQNR bars, absmax profiles of not-clipped tensors
(function () {
  const s = sec("tensors");
  if (!R.tensors.length) { note(s, "No evaluation of this job yet."); return; }
  note(s, "Threshold " + thr(T) + ". Proxy SQNR (dB, from the sketch alone) of every tensor; " +
       "orange: not clipped (runs on the shadow path).");
  const bw = 7, H = 180, L = 40, B = 10;
  const vals = R.tensors.map(function (t) { return t.sqnr_db; }).filter(function (v) { return v !== null; });
  const vmax = Math.max.apply(null, vals.concat([1]));
  const svg = el("svg", {"width": L + R.tensors.length * bw + 10, "height": H + B}, s);
  el("text", {"x": L - 4, "y": 12, "text-anchor": "end"}, svg, fmt(vmax, 0));
  el("text", {"x": L - 4, "y": H, "text-anchor": "end"}, svg, "0 dB");
  R.tensors.forEach(function (t, i) {
    const v = t.sqnr_db === null ? 0 : Math.max(0, t.sqnr_db);
    const h = v / vmax * (H - 10);
    const r = el("rect", {"class": "sqnr", "x": L + i * bw, "y": H - h, "width": bw - 1, "height": h,
                          "fill": t.clipped ? "#2f6fb3" : "#d9480f", "data-linear": t.linear,
                          "data-side": t.side, "data-sqnr": t.sqnr_db === null ? "" : t.sqnr_db}, svg);
    tip(r, t.linear + " " + t.side + ": SQNR " + fmt(t.sqnr_db, 1) + " dB, " + (t.clipped ? "clipped" : "not clipped"));
  });
  const box = el("div", {"class": "profiles"}, s);
  for (const t of R.tensors) {
    if (t.clipped || !t.absmax_per_channel) continue;
    const a = t.absmax_per_channel, W = 360, PH = 120;
    const wrap = el("div", {}, box);
    el("div", {"class": "note"}, wrap, t.linear + " " + t.side + ": outlier channels " +
       (t.outlier_channels.length ? t.outlier_channels.join(", ") : "none"));
    const p = el("svg", {"class": "profile", "width": W, "height": PH, "data-linear": t.linear,
                         "data-side": t.side, "data-outlier-channels": t.outlier_channels.join(",")}, wrap);
    const amax = Math.max.apply(null, a.concat([1e-30]));
    const w = W / a.length;
    a.forEach(function (v, c) {
      const out = t.outlier_channels.indexOf(c) >= 0;
      const h = Math.max(out ? 2 : 0, v / amax * (PH - 4));
      const r = el("rect", {"x": c * w, "y": PH - h, "width": Math.max(w, out ? 2 : w), "height": h,
                            "fill": out ? "#d9480f" : "#8aa9c9"}, p);
      if (out) { r.setAttribute("class", "outlier"); tip(r, "channel " + c + ": absmax " + fmt(v, 4)); }
    });
  }
})();

// ---- experts
(function () {
  const s = sec("experts");
  if (!R.experts) { note(s, "This model has no mixture-of-experts layers."); return; }
})();

// ---- exports
(function () {
  const s = sec("exports");
  if (!R.exports.length) { note(s, "Nothing exported yet (qcal export " + job.id + " ...)."); return; }
  const t = el("table", {}, s);
  const h = el("tr", {}, t);
  for (const c of ["format", "threshold", "smoothing", "shadow layers", "files", "size", "folder"]) el("th", {}, h, c);
  for (const e of R.exports) {
    const r = el("tr", {"class": "export"}, t);
    for (const v of [e.format, thr(e.threshold), e.smoothing, e.shadow_layers_set, String(e.files.length),
                     (e.bytes / 1e6).toFixed(2) + " MB", e.output_dir]) el("td", {}, r, v);
  }
})();
document.body.setAttribute("data-rendered", "1");
})();
</script>
</main></body></html>
)html";

}  // namespace

std::string ReportHtml(const nlohmann::ordered_json& report) {
  // "</" would end the script element early; JSON allows "\/".
  const std::string data = absl::StrReplaceAll(report.dump(), {{"</", "<\\/"}});
  return std::string(kHead) + data + kTail;
}

}  // namespace qcal::client
