// Charts of a Sluice bench report, drawn as inline SVG from the JSON embedded in the page: no library, no
// network. Each chart's figure gets data-drawn="<series drawn>" (the headless-Chromium test reads it).
(() => {
  const NS = "http://www.w3.org/2000/svg";
  const data = JSON.parse(document.getElementById("bench-data").textContent);
  const W = 900;
  const H = 280;
  const M = { left: 64, right: 16, top: 16, bottom: 36 };
  const colors = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#64748b"];
  const bandColors = ["#f1f5f9", "#fef3c7", "#e0f2fe", "#f1f5f9"];

  function el(name, attrs, parent, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function fmt(v) {
    if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
    if (v >= 1e4) return `${Math.round(v / 1e3)}k`;
    if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
    if (v >= 10) return String(Math.round(v));
    return String(Math.round(v * 100) / 100);
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  /** series: [{name, values: (number|null)[]}]; xs: seconds (or xLabel's unit); options: {log, unit, bands, xLabel} */
  function lineChart(figure, xs, series, options) {
    const svg = el(
      "svg",
      { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": figure.dataset.title || "" },
      figure,
    );
    const pw = W - M.left - M.right;
    const ph = H - M.top - M.bottom;
    const xMin = xs.length > 0 ? xs[0] : 0;
    const xMax = xs.length > 1 ? xs[xs.length - 1] : xMin + 1;
    const all = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
    const log = options.log === true;
    const positive = all.filter((v) => v > 0);
    const yMaxRaw = all.length > 0 ? Math.max(...all) : 1;
    const yMin = log ? 10 ** Math.floor(Math.log10(positive.length > 0 ? Math.min(...positive) : 1)) : 0;
    const yMax = log ? 10 ** Math.ceil(Math.log10(Math.max(yMaxRaw, yMin * 10))) : niceMax(yMaxRaw);
    const x = (v) => M.left + ((v - xMin) / (xMax - xMin || 1)) * pw;
    const xLabel = options.xLabel || ((v) => `${v}s`);
    const y = (v) => {
      if (log) {
        const c = Math.max(v, yMin);
        return (
          M.top + ph - ((Math.log10(c) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin) || 1)) * ph
        );
      }
      return M.top + ph - (v / (yMax || 1)) * ph;
    };
    (options.bands || []).forEach((b, i) => {
      const x0 = x(Math.max(xMin, b.from));
      const x1 = x(Math.min(xMax, b.to));
      if (x1 <= x0) return;
      el(
        "rect",
        { x: x0, y: M.top, width: x1 - x0, height: ph, fill: bandColors[i % bandColors.length] },
        svg,
      );
      el("text", { x: x0 + 4, y: M.top + 12, class: "band" }, svg, b.name);
    });
    const ticks = log
      ? Array.from({ length: Math.round(Math.log10(yMax / yMin)) + 1 }, (_, i) => yMin * 10 ** i)
      : [0, 0.25, 0.5, 0.75, 1].map((f) => f * yMax);
    for (const t of ticks) {
      el("line", { x1: M.left, x2: W - M.right, y1: y(t), y2: y(t), class: "grid" }, svg);
      el("text", { x: M.left - 6, y: y(t) + 4, class: "ylab" }, svg, fmt(t));
    }
    const xStep = Math.max(1, niceMax((xMax - xMin) / 8));
    for (let t = Math.ceil(xMin / xStep) * xStep; t <= xMax; t += xStep) {
      el("text", { x: x(t), y: H - M.bottom + 16, class: "xlab" }, svg, xLabel(t));
    }
    el(
      "text",
      { x: 12, y: M.top + ph / 2, class: "unit", transform: `rotate(-90 12 ${M.top + ph / 2})` },
      svg,
      options.unit,
    );
    let drawn = 0;
    series.forEach((s, i) => {
      let d = "";
      let pen = false;
      s.values.forEach((v, k) => {
        if (v === null || !Number.isFinite(v) || (log && !(v > 0))) {
          pen = false;
          return;
        }
        d += `${pen ? "L" : "M"}${x(xs[k]).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      if (d === "") return;
      el(
        "path",
        { d, class: "series", stroke: s.color || colors[i % colors.length], "data-series": s.name },
        svg,
      );
      drawn++;
    });
    legend(figure, series);
    hover(figure, svg, xs, series, x, options.unit, xLabel);
    figure.dataset.drawn = String(drawn);
  }

  function legend(figure, series) {
    const ul = document.createElement("ul");
    ul.className = "legend";
    series.forEach((s, i) => {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = s.color || colors[i % colors.length];
      li.append(sw, document.createTextNode(s.name));
      ul.appendChild(li);
    });
    figure.appendChild(ul);
  }

  function hover(figure, svg, xs, series, x, unit, xLabel) {
    const cursor = el("line", { y1: M.top, y2: H - M.bottom, class: "cursor", visibility: "hidden" }, svg);
    const tip = document.createElement("div");
    tip.className = "tip";
    figure.appendChild(tip);
    svg.addEventListener("mousemove", (event) => {
      const box = svg.getBoundingClientRect();
      const vx = ((event.clientX - box.left) / box.width) * W;
      let k = 0;
      for (let i = 0; i < xs.length; i++) if (Math.abs(x(xs[i]) - vx) < Math.abs(x(xs[k]) - vx)) k = i;
      cursor.setAttribute("x1", x(xs[k]));
      cursor.setAttribute("x2", x(xs[k]));
      cursor.setAttribute("visibility", "visible");
      tip.textContent = `${xLabel(xs[k])}  ${series.map((s) => `${s.name} ${s.values[k] === null ? "–" : fmt(s.values[k])}`).join("  ")} ${unit}`;
    });
    svg.addEventListener("mouseleave", () => cursor.setAttribute("visibility", "hidden"));
  }

  /** groups: [{name, values: number[]}] one bar per key; log scale (latencies). */
  function barChart(figure, keys, groups, unit) {
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" }, figure);
    const pw = W - M.left - M.right;
    const ph = H - M.top - M.bottom;
    const all = groups.flatMap((g) => g.values).filter((v) => v > 0);
    const yMin = 10 ** Math.floor(Math.log10(all.length > 0 ? Math.min(...all) : 1));
    const yMax = 10 ** Math.ceil(Math.log10(Math.max(all.length > 0 ? Math.max(...all) : 10, yMin * 10)));
    const y = (v) =>
      M.top +
      ph -
      ((Math.log10(Math.max(v, yMin)) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * ph;
    for (let t = yMin; t <= yMax * 1.0001; t *= 10) {
      el("line", { x1: M.left, x2: W - M.right, y1: y(t), y2: y(t), class: "grid" }, svg);
      el("text", { x: M.left - 6, y: y(t) + 4, class: "ylab" }, svg, fmt(t));
    }
    el(
      "text",
      { x: 12, y: M.top + ph / 2, class: "unit", transform: `rotate(-90 12 ${M.top + ph / 2})` },
      svg,
      unit,
    );
    const gw = pw / Math.max(1, groups.length);
    const bw = (gw * 0.8) / Math.max(1, keys.length);
    let drawn = 0;
    groups.forEach((g, gi) => {
      const gx = M.left + gi * gw + gw * 0.1;
      g.values.forEach((v, ki) => {
        if (!(v > 0)) return;
        const r = el(
          "rect",
          {
            x: gx + ki * bw,
            y: y(v),
            width: bw - 2,
            height: M.top + ph - y(v),
            fill: colors[ki % colors.length],
            class: "bar",
          },
          svg,
        );
        el("title", {}, r, `${g.name} ${keys[ki]}: ${v} ${unit}`);
        drawn++;
      });
      el("text", { x: gx + (keys.length * bw) / 2, y: H - M.bottom + 16, class: "xlab" }, svg, g.name);
    });
    legend(
      figure,
      keys.map((k) => ({ name: k })),
    );
    figure.dataset.drawn = String(drawn);
  }

  const t = data.timeline;
  const xs = t.map((r) => r.s);
  const bands = data.phases.map((p) => ({ from: p.startS, to: p.endS, name: p.name }));
  const col = (f) => t.map(f);
  const charts = {
    throughput: (f) =>
      lineChart(
        f,
        xs,
        [
          { name: "offered", values: col((r) => r.offered) },
          { name: "accepted", values: col((r) => r.accepted) },
          { name: "completed (allocated)", values: col((r) => r.completed) },
          { name: "fulfilment requests", values: col((r) => r.fulfilled) },
        ],
        { unit: "orders/s", bands },
      ),
    latency: (f) => {
      const series = [
        {
          name: "allocated p50",
          values: col((r) => (r.latencyMs.allocated.count > 0 ? r.latencyMs.allocated.p50 : null)),
        },
        {
          name: "allocated p90",
          values: col((r) => (r.latencyMs.allocated.count > 0 ? r.latencyMs.allocated.p90 : null)),
        },
        {
          name: "allocated p99",
          values: col((r) => (r.latencyMs.allocated.count > 0 ? r.latencyMs.allocated.p99 : null)),
        },
        {
          name: "allocated max",
          values: col((r) => (r.latencyMs.allocated.count > 0 ? r.latencyMs.allocated.max : null)),
        },
        {
          name: "fulfil p99",
          values: col((r) => (r.latencyMs.fulfil.count > 0 ? r.latencyMs.fulfil.p99 : null)),
        },
      ];
      if (data.latency.stockDelta.observed)
        series.push({
          name: "stock delta p99",
          values: col((r) => (r.latencyMs.stockDelta.count > 0 ? r.latencyMs.stockDelta.p99 : null)),
        });
      lineChart(f, xs, series, { unit: "ms (log)", log: true, bands });
    },
    lag: (f) =>
      lineChart(
        f,
        xs,
        [
          { name: "order stage lag", values: col((r) => (r.lag === null ? null : r.lag.order)) },
          { name: "ledger stage lag", values: col((r) => (r.lag === null ? null : r.lag.ledger)) },
        ],
        { unit: "messages", bands },
      ),
    cpu: (f) =>
      lineChart(
        f,
        xs,
        [
          { name: "Sluice", values: col((r) => (r.cpuCores === null ? null : r.cpuCores.sluice)) },
          { name: "nats-server", values: col((r) => (r.cpuCores === null ? null : r.cpuCores.nats)) },
          { name: "load generator", values: col((r) => (r.cpuCores === null ? null : r.cpuCores.loadgen)) },
          { name: "harness", values: col((r) => (r.cpuCores === null ? null : r.cpuCores.harness)) },
        ],
        { unit: "CPU cores", bands },
      ),
    memory: (f) =>
      lineChart(
        f,
        xs,
        [
          {
            name: "Sluice RSS",
            values: col((r) => (r.rssBytes === null ? null : r.rssBytes.sluice / 1048576)),
          },
          {
            name: "Sluice anon RSS",
            values: col((r) => (r.rssAnonBytes === null ? null : r.rssAnonBytes.sluice / 1048576)),
          },
          {
            name: "Sluice file-backed RSS",
            values: col((r) => (r.rssFileBytes === null ? null : r.rssFileBytes.sluice / 1048576)),
          },
          {
            name: "nats-server RSS",
            values: col((r) => (r.rssBytes === null ? null : r.rssBytes.nats / 1048576)),
          },
        ],
        { unit: "MiB", bands },
      ),
    sweep: (f) => {
      const steps = data.sweep.steps;
      const lat = (pick) => steps.map((s) => (s.allocated.count > 0 ? pick(s) : null));
      const series = [
        { name: "allocated p50", values: lat((s) => s.allocated.p50Ms) },
        { name: "allocated p99", values: lat((s) => s.allocated.p99Ms) },
        { name: "allocated p99.9", values: lat((s) => s.allocated.p999Ms) },
      ];
      if (steps.some((s) => s.stockDelta !== null))
        series.push({
          name: "stock delta p99",
          values: steps.map((s) => (s.stockDelta === null ? null : s.stockDelta.p99Ms)),
        });
      const sat = data.sweep.saturated;
      const i = sat === null ? -1 : steps.findIndex((s) => s.step === sat.step);
      const bands =
        i > 0
          ? [{ from: steps[i - 1].offeredPerSecond, to: steps[i].offeredPerSecond, name: "saturation" }]
          : [];
      lineChart(
        f,
        steps.map((s) => s.offeredPerSecond),
        series,
        { unit: "ms (log)", log: true, bands, xLabel: (v) => `${fmt(v)}/s` },
      );
    },
    phases: (f) => {
      const keys = ["p50", "p90", "p99", "p99.9", "max"];
      const groups = [];
      for (const kind of ["allocated", "fulfil", "stockDelta"]) {
        const l = data.latency[kind];
        if (!l.observed) continue;
        for (const [name, s] of Object.entries(l.phases)) {
          if (s.count === 0) continue;
          groups.push({
            name: `${kind === "stockDelta" ? "stock" : kind} · ${name}`,
            values: [s.p50Ms, s.p90Ms, s.p99Ms, s.p999Ms, s.maxMs],
          });
        }
      }
      barChart(f, keys, groups, "ms (log)");
    },
  };
  for (const figure of document.querySelectorAll("figure[data-chart]")) {
    try {
      charts[figure.dataset.chart](figure);
    } catch (error) {
      figure.dataset.drawn = "0";
      figure.dataset.error = String(error);
      figure.appendChild(document.createTextNode(`chart failed: ${error}`));
    }
  }
  document.body.dataset.chartsDone = "true";
})();
