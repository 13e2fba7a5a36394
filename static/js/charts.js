// Draws every <div data-chart="id"> from the figure in <script type="application/json" id="id">.
(function () {
  "use strict";
  var config = { displayModeBar: false, responsive: true };

  function hasData(figure) {
    return (figure.data || []).some(function (trace) {
      var values = trace.type === "pie" ? trace.values : trace.type === "heatmap" ? [].concat.apply([], trace.z || []) : (trace.orientation === "h" ? trace.x : trace.y);
      return (values || []).some(function (v) { return v !== null && v !== 0; });
    });
  }

  function draw(element) {
    var source = document.getElementById(element.getAttribute("data-chart"));
    if (!source) return;
    var figure = JSON.parse(source.textContent);
    if (!hasData(figure)) {
      element.classList.add("chart-empty");
      element.textContent = element.getAttribute("data-empty") || "No data for this period.";
      return;
    }
    var layout = figure.layout || {};
    var legendItems = (figure.data || []).filter(function (t) { return t.type !== "pie" && t.type !== "heatmap"; }).length;
    if (element.clientWidth < 560 && layout.showlegend !== false && legendItems > 2) {
      // a narrow screen wraps the legend onto one line per item: make room for it under the plot
      layout.height = (layout.height || 280) + 20 * legendItems;
      layout.legend = Object.assign({}, layout.legend, { y: -0.1, yanchor: "top" });
    }
    window.Plotly.newPlot(element, figure.data, layout, config);
  }

  function start() {
    if (!window.Plotly) return;
    document.querySelectorAll("[data-chart]").forEach(draw);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
