/**
 * examples/systemd/cairn.service: `systemd-analyze verify` finds nothing to
 * say about it (the ExecStart binary pointed at the built dist/cairn, the only
 * change), `systemd-analyze security --offline` rates its exposure OK, and it
 * has what an appliance unit needs. Skipped with a message without
 * systemd-analyze (Debian: apt-get install systemd).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BINARY, ensureBinary, ROOT } from "../e2e/harness.ts";

const UNIT = join(ROOT, "examples", "systemd", "cairn.service");
const analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find((p) => existsSync(p)) ?? null;
if (analyze === null) console.warn("SKIPPED systemd unit tests: systemd-analyze is not installed (Debian: apt-get install systemd)");

const dir = mkdtempSync(join(tmpdir(), "cairn-systemd-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The unit as shipped, but starting the binary built here (verify checks that ExecStart is executable). */
function unitHere(edit: (text: string) => string = (t) => t): string {
  ensureBinary();
  const text = readFileSync(UNIT, "utf8").replace("ExecStart=/usr/local/bin/cairn ", `ExecStart=${BINARY} `);
  expect(text).toContain(`ExecStart=${BINARY} serve `);
  const path = join(dir, "cairn.service");
  writeFileSync(path, edit(text));
  return path;
}

function run(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(analyze!, args, { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

describe.skipIf(analyze === null)("examples/systemd/cairn.service", () => {
  test("systemd-analyze verify passes with nothing to report", () => {
    const r = run(["verify", unitHere()]);
    expect(r.out).toBe("");
    expect(r.code).toBe(0);
  });

  test("systemd-analyze verify is not vacuous: a misspelled directive and a bad value are reported", () => {
    expect(run(["verify", unitHere((t) => t.replace("\nRestart=on-failure", "\nRestrt=on-failure"))]).out).toContain("Unknown key 'Restrt'");
    expect(run(["verify", unitHere((t) => t.replace("ProtectSystem=strict", "ProtectSystem=sometimes"))]).out).toContain("sometimes");
  });

  test("its own user, a read-only system but the data directory, restart on failure, time for a hand-over; exposure OK", () => {
    const text = readFileSync(UNIT, "utf8");
    for (const line of ["User=cairn", "ProtectSystem=strict", "ReadWritePaths=/var/lib/cairn", "Restart=on-failure", "NoNewPrivileges=yes", "KillSignal=SIGTERM"]) {
      expect(text.split("\n")).toContain(line);
    }
    expect(Number(/^TimeoutStopSec=(\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(15);
    const sec = run(["security", "--offline=yes", unitHere()]);
    const level = Number(/Overall exposure level for cairn\.service: ([\d.]+)/.exec(sec.out)?.[1]);
    expect(level).toBeLessThanOrEqual(4);
  });
});
