/**
 * The route table: which methods each path takes. The app registers its
 * handlers separately; this table answers 405 with Allow for a known path
 * and a wrong method, and gives the bounded `route` label of the metrics.
 */
interface RouteDef {
  readonly template: string;
  readonly re: RegExp;
  readonly methods: readonly string[];
}

const def = (template: string, re: RegExp, methods: string[]): RouteDef => ({ template, re, methods });

/** In match order: /changes/stream before /changes/:index. */
export const ROUTES: readonly RouteDef[] = [
  def("/", /^\/$/, ["GET"]),
  def("/openapi.json", /^\/openapi\.json$/, ["GET"]),
  def("/changes", /^\/changes$/, ["GET", "POST"]),
  def("/changes/stream", /^\/changes\/stream$/, ["GET"]),
  def("/changes/:index", /^\/changes\/[^/]+$/, ["GET"]),
  def("/kv", /^\/kv$/, ["GET"]),
  def("/kv/:key", /^\/kv\/.*$/, ["GET", "PUT", "DELETE"]),
  def("/txn", /^\/txn$/, ["POST"]),
  def("/status", /^\/status$/, ["GET"]),
  def("/health", /^\/health$/, ["GET"]),
  def("/ready", /^\/ready$/, ["GET"]),
  def("/metrics", /^\/metrics$/, ["GET"]),
  def("/admin/leader", /^\/admin\/leader$/, ["POST"]),
  def("/admin/checkpoint", /^\/admin\/checkpoint$/, ["POST"]),
  def("/checkpoints", /^\/checkpoints$/, ["GET"]),
  def("/checkpoints/:id", /^\/checkpoints\/[^/]+$/, ["GET"]),
];

export function routeOf(path: string): RouteDef | undefined {
  return ROUTES.find((r) => r.re.test(path));
}

/** The metrics label of a path: its template, or "unmatched" (bounded cardinality). */
export function routeLabel(path: string): string {
  return routeOf(path)?.template ?? "unmatched";
}

/** The Allow header of a route: GET routes also answer HEAD. */
export function allowOf(r: RouteDef): string {
  return r.methods.flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m])).join(", ");
}
