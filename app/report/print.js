// Charts are drawn at the screen width; narrow them to the printable width (A4 and Letter
// with the @page margins are about 670 CSS pixels) before printing, and restore them after.
(function () {
  var PRINT_WIDTH = 660;
  function plots() {
    return Array.prototype.slice.call(document.querySelectorAll(".js-plotly-plot"));
  }
  window.addEventListener("beforeprint", function () {
    if (!window.Plotly) { return; }
    plots().forEach(function (gd) {
      if (gd.getBoundingClientRect().width > PRINT_WIDTH) {
        gd.rlWidth = gd.layout.width;
        Plotly.relayout(gd, {width: PRINT_WIDTH});
      }
    });
  });
  window.addEventListener("afterprint", function () {
    if (!window.Plotly) { return; }
    plots().forEach(function (gd) {
      if ("rlWidth" in gd) {
        Plotly.relayout(gd, {width: gd.rlWidth === undefined ? null : gd.rlWidth});
        delete gd.rlWidth;
        Plotly.Plots.resize(gd);
      }
    });
  });
})();
