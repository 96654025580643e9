// The supervise page's two charts, drawn with uPlot (front/vendor/uplot, MIT): arrivals per
// minute over the last hour, and the histogram of waits (started apart from timed out or left).

import uPlot from "../vendor/uplot/uPlot.esm.js";

const HEIGHT = 200;
const ACCENT = "#2754c5";
const BAD = "#b3261e";

function width(container) {
  return Math.max(container.clientWidth || 0, 280);
}

function bars(size) {
  return uPlot.paths.bars({ size: [size, 60], gap: 1 });
}

/** A chart in `container`, made on first use, given new data after. */
class Chart {
  constructor(container, options) {
    this.container = container;
    this.options = options;
    this.plot = null;
  }

  set(data, points) {
    this.container.dataset.points = String(points);
    if (this.plot === null) {
      this.plot = new uPlot({ ...this.options, width: width(this.container), height: HEIGHT }, data, this.container);
      new ResizeObserver(() => this.plot.setSize({ width: width(this.container), height: HEIGHT })).observe(this.container);
    } else {
      this.plot.setData(data);
    }
  }
}

export function arrivalsChart(container) {
  const chart = new Chart(container, {
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(max, 1)] } },
    axes: [{}, { size: 40, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }],
    series: [{}, { label: "arrivals", stroke: ACCENT, fill: "rgba(39,84,197,.25)", paths: bars(0.9), points: { show: false } }],
  });
  return {
    /** `perMinute`: [[ISO minute, n], ...] oldest first. */
    set(perMinute) {
      const xs = perMinute.map(([minute]) => Date.parse(minute) / 1000);
      const ys = perMinute.map(([, n]) => n);
      chart.set([xs, ys], ys.reduce((a, b) => a + b, 0));
    },
  };
}

export function waitsChart(container) {
  const chart = new Chart(container, {
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(max, 1)] } },
    axes: [{ label: "seconds waited", values: (_u, ticks) => ticks.map((t) => `${t}`) }, { size: 40, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }],
    series: [
      {},
      { label: "started", stroke: ACCENT, fill: "rgba(39,84,197,.35)", paths: bars(0.45), points: { show: false } },
      { label: "timed out or left", stroke: BAD, fill: "rgba(179,38,30,.35)", paths: bars(0.45), points: { show: false } },
    ],
  });
  return {
    /** `histogram`: {bin_seconds, bins, started, gave_up} (GET …/stats). */
    set(histogram) {
      const half = histogram.bin_seconds / 2;
      const xs = histogram.bins.map((start) => start + half);
      const sum = (values) => values.reduce((a, b) => a + b, 0);
      chart.set([xs, histogram.started, histogram.gave_up], sum(histogram.started) + sum(histogram.gave_up));
    },
  };
}
