// Draw each trends table (<table data-trend>) as two uPlot graphs: messages per minute (or hour)
// and latency percentiles. The table stays on the page: it is the figures without JavaScript.
(function () {
  "use strict";
  function column(rows, key) {
    return rows.map(function (tr) {
      var td = tr.querySelector('[data-k="' + key + '"]');
      var v = td ? td.textContent.trim() : "";
      return v === "" ? null : Number(v);
    });
  }
  function draw(table) {
    if (typeof uPlot === "undefined") return;
    var host = table.closest("section").querySelector(".trend-graphs");
    if (!host) return;
    host.textContent = "";
    var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr[data-ts]")).reverse();
    if (!rows.length) return;
    var xs = rows.map(function (tr) { return Number(tr.getAttribute("data-ts")); });
    var width = Math.max(280, Math.min(host.clientWidth || 800, 1100));
    var counts = new uPlot({
      title: "Messages", width: width, height: 220,
      series: [{}, {label: "received", stroke: "#1f5fa8"}, {label: "accepted", stroke: "#1e7a34"},
               {label: "rejected", stroke: "#8a5a00"}, {label: "errored", stroke: "#b3261e"}],
      axes: [{}, {}],
    }, [xs, column(rows, "received"), column(rows, "accepted"), column(rows, "rejected"), column(rows, "errored")], host);
    counts.root.setAttribute("data-graph", "messages");
    var latency = new uPlot({
      title: "Latency (ms)", width: width, height: 180,
      series: [{}, {label: "median", stroke: "#1f5fa8"}, {label: "95th", stroke: "#8a5a00"}, {label: "99th", stroke: "#b3261e"}],
    }, [xs, column(rows, "p50"), column(rows, "p95"), column(rows, "p99")], host);
    latency.root.setAttribute("data-graph", "latency");
    host.setAttribute("data-points", String(rows.length));
    host.setAttribute("data-received", String(column(rows, "received").reduce(function (a, b) { return a + (b || 0); }, 0)));
  }
  function drawAll(root) {
    (root || document).querySelectorAll("table[data-trend]").forEach(draw);
  }
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (e) { drawAll(e.target.closest ? document : document); });
})();
