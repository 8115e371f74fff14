// modelward console: the chart component. An element with data-chart="ID" is drawn from the
// JSON in <script type="application/json" id="ID">: {"x": [...], "series": {name: [...]},
// "x_label": "..."} (with "time_x": true the x values are Unix seconds, drawn as times; with
// "integer_x": true, whole numbers; times are drawn in UTC); with no points it says "no runtime data". A null value is
// a gap. Uses the vendored uPlot.
(function () {
  "use strict";
  var palette = ["#0b5cad", "#b3261e", "#11703a", "#8a5a00", "#6b3fa0", "#00707a"];

  function draw(el) {
    var source = document.getElementById(el.getAttribute("data-chart"));
    if (!source) { return; }
    var data;
    try { data = JSON.parse(source.textContent); } catch (e) { return; }
    var names = Object.keys(data.series || {});
    el.textContent = "";
    if (!data.x || data.x.length === 0 || names.length === 0) {
      var empty = document.createElement("p");
      empty.className = "chart-empty";
      empty.textContent = "no runtime data";
      el.appendChild(empty);
      return;
    }
    if (typeof uPlot === "undefined") { return; }
    var series = [{ label: data.x_label || "x" }];
    var columns = [data.x];
    names.forEach(function (name, i) {
      series.push({ label: name, stroke: palette[i % palette.length], width: 2,
                    points: { show: true, size: 6 } });
      columns.push(data.series[name]);
    });
    var width = Math.max(240, el.clientWidth || 600);
    var options = {
      width: width, height: 220, series: series,
      scales: { x: { time: !!data.time_x } },
      axes: [data.time_x ? { label: data.x_label || "" } : data.integer_x ? {
        label: data.x_label || "", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
        values: function (u, splits) { return splits.map(function (v) { return String(v); }); }
      } : { label: data.x_label || "" }, {}]
    };
    if (data.time_x) {  // times in UTC, as the page's tables give them
      options.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); };
    }
    var plot = new uPlot(options, columns, el);
    el._plot = plot;
  }

  function drawAll(root) {
    var charts = (root || document).querySelectorAll("[data-chart]");
    for (var i = 0; i < charts.length; i++) { draw(charts[i]); }
  }

  window.modelwardCharts = { drawAll: drawAll };
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (event) { drawAll(event.target); });
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      var charts = document.querySelectorAll("[data-chart]");
      for (var i = 0; i < charts.length; i++) {
        var el = charts[i];
        if (el._plot) { el._plot.setSize({ width: Math.max(240, el.clientWidth), height: 220 }); }
      }
    }, 150);
  });
})();
