/**
 * The API's own Prometheus metrics: requests by route, method and status,
 * and a latency histogram by route. Labels come from a fixed set (route
 * templates, known methods), so the number of series is bounded.
 */
const BUCKETS_SEC = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

interface Histogram {
  /** The series' label text, rendered once when the series is first seen. */
  readonly labels: string;
  readonly counts: number[];
  sum: number;
  count: number;
}

export class HttpMetrics {
  /** By "method route status" (a plain key: the label text is rendered once per series, not per request). */
  private readonly requests = new Map<string, { readonly labels: string; n: number }>();
  private readonly latency = new Map<string, Histogram>();
  private inflight = 0;

  begin(): void {
    this.inflight++;
  }

  /** Records one finished request; `route` is a template such as /kv/:key. */
  end(opts: { method: string; route: string; status: number; seconds: number }): void {
    this.inflight--;
    const method = METHODS.has(opts.method) ? opts.method : "OTHER";
    const k = `${method} ${opts.route} ${opts.status}`;
    const r = this.requests.get(k);
    if (r) r.n++;
    else this.requests.set(k, { labels: labels({ method, route: opts.route, status: String(opts.status) }), n: 1 });
    const hk = `${method} ${opts.route}`;
    let h = this.latency.get(hk);
    if (!h) this.latency.set(hk, (h = { labels: labels({ method, route: opts.route }), counts: BUCKETS_SEC.map(() => 0), sum: 0, count: 0 }));
    for (let i = BUCKETS_SEC.length - 1; i >= 0 && opts.seconds <= BUCKETS_SEC[i]!; i--) h.counts[i]!++;
    h.sum += opts.seconds;
    h.count++;
  }

  /** `waiting`: long polls and SSE streams open now. */
  text(waiting: number): string {
    const out: string[] = [
      "# HELP cairn_http_requests_total HTTP requests answered, by route, method and status.",
      "# TYPE cairn_http_requests_total counter",
    ];
    for (const { labels: k, n } of this.requests.values()) out.push(`cairn_http_requests_total{${k}} ${n}`);
    out.push(
      "# HELP cairn_http_request_duration_seconds Time to the response headers, by route and method.",
      "# TYPE cairn_http_request_duration_seconds histogram",
    );
    for (const h of this.latency.values()) {
      const k = h.labels;
      BUCKETS_SEC.forEach((b, i) => out.push(`cairn_http_request_duration_seconds_bucket{${k},le="${b}"} ${h.counts[i]}`));
      out.push(`cairn_http_request_duration_seconds_bucket{${k},le="+Inf"} ${h.count}`);
      out.push(`cairn_http_request_duration_seconds_sum{${k}} ${h.sum}`);
      out.push(`cairn_http_request_duration_seconds_count{${k}} ${h.count}`);
    }
    out.push(
      "# HELP cairn_http_requests_in_flight HTTP requests being handled (streams count until their headers are sent).",
      "# TYPE cairn_http_requests_in_flight gauge",
      `cairn_http_requests_in_flight ${this.inflight}`,
      "# HELP cairn_http_waiting Long polls and change streams open now.",
      "# TYPE cairn_http_waiting gauge",
      `cairn_http_waiting ${waiting}`,
    );
    return out.join("\n") + "\n";
  }
}

function labels(l: Record<string, string>): string {
  return Object.entries(l)
    .map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`)
    .join(",");
}
