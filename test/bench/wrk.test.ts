/**
 * bench/wrk.ts: the parser of wrk's output, and a smoke run of the whole
 * benchmark with tiny durations (--quick: 1 s runs at 1 and 16 connections,
 * both TLS modes, etcd and cairn, one failover each). The benchmark needs
 * Debian's wrk and etcd-server: ensureTools installs them with apt-get, and
 * the smoke run is skipped (with the reason) when that is not possible.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureTools, parseWrk, ToolsUnavailableError } from "../../bench/wrkrun.ts";
import { runQuick, smokeSkipWhy } from "./smoke.ts";

const SAMPLE = `Running 1s test @ http://127.0.0.1:10724
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    18.30ms    7.46ms   1.04s    68.02%
    Req/Sec   109.00     35.41   202.00     75.00%
  Latency Distribution
     50%  812.00us
     75%   22.72ms
     90%   28.08ms
     99%    1.02s
  220 requests in 1.02s, 44.59KB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:    215.64
Transfer/sec:     43.71KB
WRKJSON {"requests": 220, "durationUs": 1020217, "errors": {"connect": 0, "read": 1, "write": 0, "status": 3, "timeout": 2}, "latencyUs": {"p50": 812, "p90": 28085, "p99": 1020000, "p999": 1040000, "max": 1040000, "mean": 18295.5}, "threads": [{"tid": 0, "sent": 111, "ok": 108, "bad": 1, "statuses": {"503": 1}}, {"tid": 1, "sent": 114, "ok": 109, "bad": 2, "statuses": {"503": 1, "429": 1}}]}
`;

describe("wrk output", () => {
  test("parseWrk reads the rate, the latency distribution in any unit and the script's per-thread counts", () => {
    const r = parseWrk(SAMPLE, { connections: 4, threads: 2 });
    expect(r.requestsPerSec).toBe(215.64);
    expect(r.seconds).toBe(1.02);
    expect([r.p50, r.p75, r.p90, r.p99]).toEqual([0.812, 22.72, 28.08, 1020]);
    expect(r.maxMs).toBe(1040);
    expect(r.ok).toBe(217);
    expect(r.sent).toBe(225);
    expect(r.statuses).toEqual({ "503": 2, "429": 1 });
    expect(r.socketErrors).toEqual({ read: 1, timeout: 2 });
    expect(r.errors).toBe(6);
    expect(r.okPerSec).toBeCloseTo(217 / 1.02, 6);
  });

  test("parseWrk refuses output without the latency distribution", () => {
    expect(() => parseWrk(SAMPLE.replace(/^\s+99%.*$/m, ""), { connections: 4, threads: 2 })).toThrow(/99% latency line/);
  });
});

describe("ensureTools", () => {
  test("says what to install when wrk and etcd are not on PATH and apt-get cannot install them", () => {
    const empty = mkdtempSync(join(tmpdir(), "cairn-nopath-"));
    const path = process.env.PATH;
    process.env.PATH = empty; // no sh, no wrk, no etcd, no apt-get
    try {
      expect(() => ensureTools()).toThrow(ToolsUnavailableError);
      expect(() => ensureTools()).toThrow(/wrk and etcd are needed.*apt-get install -y wrk etcd-server.*Debian packages wrk, etcd-server/);
    } finally {
      process.env.PATH = path;
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

const skipWhy = smokeSkipWhy("wrk");

describe("bench/wrk.ts --quick", () => {
  test.skipIf(skipWhy !== null)("runs etcd and cairn under wrk in both TLS modes and finds every acknowledged write on every node", () => {
    const text = runQuick({ name: "wrk", args: ["--tls", "both"], timeoutMs: 280_000 });
    expect(text).toContain("## cairn and etcd under wrk (bench/wrk.ts)");
    expect(text).toContain("All passed.");
    for (const mode of ["on", "off"]) {
      // Every row the quick run measures: etcd put, cairn PUT /kv and POST /changes at 1 and 16, follower, reads.
      for (const row of [`| ${mode} | etcd | put | leader | 1 |`, `| ${mode} | etcd | put | leader | 16 |`, `| ${mode} | etcd | put | follower | 16 |`, `| ${mode} | etcd | range | leader | 16 |`,
        `| ${mode} | cairn | PUT /kv | leader | 1 |`, `| ${mode} | cairn | POST /changes | leader | 16 |`, `| ${mode} | cairn | PUT /kv | follower | 16 |`, `| ${mode} | cairn | GET /kv | leader | 16 |`]) {
        expect(text).toContain(row);
      }
      expect(text).toMatch(new RegExp(`\\| ${mode} \\| cairn \\| SIGTERM of the leader: longest write gap \\| \\d+ \\|`));
    }
    // Every target row has a verdict or says why not.
    expect(text).toMatch(/\| writes at 1 connection \(PUT \/kv\): p50 <= etcd's \| \*\*(met|missed)\*\*: p50 [\d.]+ vs [\d.]+ ms \| \*\*(met|missed)\*\*/);
    expect(text).toContain("| writes at 64 (PUT /kv): >= 2.0x etcd's writes/s, p99 <= etcd's | not measured (--quick) |");
  }, 300_000);
});
