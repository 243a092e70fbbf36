/**
 * The little of a Prometheus client that {@linkcode RunnerMetrics} needs: counters, gauges and
 * histograms with labels, written in the text exposition format 0.0.4.
 *
 * It replaces `prom-client`, whose import alone grew a runner's RSS by 9 MB (its entry loads
 * the cluster aggregator, the push gateway, the default process metrics, OpenTelemetry and
 * Deno's CommonJS loader), a sixth of an idle runner. The text is the one `prom-client` 15
 * wrote for the same calls, byte for byte: metrics in the order they were made, separated by a
 * blank line; series in the order they first got a value; a histogram's `le` label first, its
 * buckets cumulative, then `+Inf`, `_sum`, `_count`.
 *
 * @module
 */

/** Label values by label name, in the order the series shows them. */
export type Labels = Readonly<Record<string, string>>;

/** The `Content-Type` of the exposition. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

interface Series {
  labels: Labels;
  value: number;
}

interface HistogramSeries {
  labels: Labels;
  /** Observations per bucket (not cumulative); the last one counts those above every bound. */
  counts: number[];
  sum: number;
  count: number;
}

function escapeText(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatLabels(labels: Labels): string {
  const parts = [];
  for (const name in labels) {
    parts.push(`${name}="${escapeText(labels[name]).replace(/"/g, '\\"')}"`);
  }
  return parts.join(",");
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "Nan"; // sic: what prom-client writes
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return `${value}`;
}

function checkFinite(value: number): void {
  if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
}

/** What every metric has: a name, a help text, its label names; and it writes its lines. */
abstract class Metric {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  abstract readonly type: string;

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    registry.register(this);
  }

  /** The key of a series: its label values in the order of the label names. */
  protected key(labels: Labels): string {
    if (this.labelNames.length === 0) return "";
    return JSON.stringify(this.labelNames.map((name) => labels[name]));
  }

  /** The labels of `values` given in the order of the label names. */
  protected labelsOf(values: readonly string[]): Labels {
    if (values.length !== this.labelNames.length) {
      throw new Error(
        `Invalid number of arguments (${values.length}) for label names (${this.labelNames.length})`,
      );
    }
    const labels: Record<string, string> = {};
    this.labelNames.forEach((name, i) => labels[name] = values[i]);
    return labels;
  }

  /** The sample lines, without the `# HELP` and `# TYPE` lines. */
  abstract samples(): string[];

  /** The metric's block of the exposition. */
  text(): string {
    const name = escapeText(this.name);
    return [`# HELP ${name} ${escapeText(this.help)}`, `# TYPE ${name} ${this.type}`]
      .concat(this.samples()).join("\n");
  }
}

/** Values that are set or added to: the base of counters and gauges. */
abstract class Scalar extends Metric {
  #series = new Map<string, Series>();

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
    super(registry, name, help, labelNames);
    this.reset();
  }

  /** Forgets every series (a metric without labels goes back to its one series at 0). */
  reset(): void {
    this.#series.clear();
    if (this.labelNames.length === 0) this.#series.set("", { labels: {}, value: 0 });
  }

  protected setValue(labels: Labels, value: number): void {
    this.#series.set(this.key(labels), { labels, value });
  }

  protected addValue(labels: Labels, delta: number): void {
    const key = this.key(labels);
    const series = this.#series.get(key);
    if (series) series.value += delta;
    else this.#series.set(key, { labels, value: delta });
  }

  /** Runs before the samples are written (a gauge that reads its values when scraped). */
  protected collect(): void {}

  samples(): string[] {
    this.collect();
    const lines = [];
    for (const { labels, value } of this.#series.values()) {
      const text = formatLabels(labels);
      lines.push(`${this.name}${text ? `{${text}}` : ""} ${formatValue(value)}`);
    }
    return lines;
  }
}

/** A counter: only goes up. */
export class Counter extends Scalar {
  readonly type = "counter";

  /** Adds `value` (default 1) to the series of `labels`; a first 0 makes the series exist. */
  inc(labels: Labels = {}, value = 1): void {
    if (value && !Number.isFinite(value)) checkFinite(value);
    if (value < 0) throw new Error("It is not possible to decrease a counter");
    this.addValue(labels, value);
  }

  /** The series of label `values` (in the order of the label names). */
  labels(...values: string[]): { inc(value?: number): void } {
    const labels = this.labelsOf(values);
    return { inc: (value?: number) => this.inc(labels, value) };
  }
}

/** A gauge: set to a value; `collect`, if given, sets its values each time it is written. */
export class Gauge extends Scalar {
  readonly type = "gauge";
  #collect?: (gauge: Gauge) => void;

  constructor(
    registry: Registry,
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    collect?: (gauge: Gauge) => void,
  ) {
    super(registry, name, help, labelNames);
    this.#collect = collect;
  }

  /** Sets the series of `labels` to `value`. */
  set(labels: Labels, value: number): void {
    this.setValue(labels, value);
  }

  protected override collect(): void {
    this.#collect?.(this);
  }
}

/** A histogram with fixed bucket bounds. */
export class Histogram extends Metric {
  readonly type = "histogram";
  #bounds: readonly number[];
  #series = new Map<string, HistogramSeries>();

  constructor(
    registry: Registry,
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
  ) {
    super(registry, name, help, labelNames);
    this.#bounds = [...buckets];
  }

  /** Counts `value` in the series of `labels`. */
  observe(labels: Labels, value: number): void {
    checkFinite(value);
    const key = this.key(labels);
    let series = this.#series.get(key);
    if (!series) {
      series = { labels, counts: new Array(this.#bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.#series.set(key, series);
    }
    let bucket = this.#bounds.findIndex((bound) => value <= bound);
    if (bucket === -1) bucket = this.#bounds.length;
    series.counts[bucket]++;
    series.sum += value;
    series.count++;
  }

  /** The series of label `values` (in the order of the label names). */
  labels(...values: string[]): { observe(value: number): void } {
    const labels = this.labelsOf(values);
    return { observe: (value: number) => this.observe(labels, value) };
  }

  samples(): string[] {
    const lines = [];
    for (const { labels, counts, sum, count } of this.#series.values()) {
      const text = formatLabels(labels);
      const rest = text ? `,${text}` : "";
      let cumulative = 0;
      this.#bounds.forEach((bound, i) => {
        cumulative += counts[i];
        lines.push(`${this.name}_bucket{le="${bound}"${rest}} ${formatValue(cumulative)}`);
      });
      lines.push(`${this.name}_bucket{le="+Inf"${rest}} ${formatValue(count)}`);
      const braces = text ? `{${text}}` : "";
      lines.push(`${this.name}_sum${braces} ${formatValue(sum)}`);
      lines.push(`${this.name}_count${braces} ${formatValue(count)}`);
    }
    return lines;
  }
}

/** The metrics of one exposition, in the order they were made. */
export class Registry {
  #metrics = new Map<string, Metric>();

  /** Adds `metric`; a second metric of the same name is an error. */
  register(metric: Metric): void {
    if (this.#metrics.has(metric.name)) {
      throw new Error(`A metric with the name ${metric.name} has already been registered.`);
    }
    this.#metrics.set(metric.name, metric);
  }

  /** The exposition of every metric. */
  metrics(): string {
    return `${[...this.#metrics.values()].map((metric) => metric.text()).join("\n\n")}\n`;
  }
}
