/**
 * Debian's chromium for the browser tests (driven by playwright-core, no
 * browser download): found at /usr/bin/chromium, or installed with apt-get
 * when missing and the tests run as root (as .ci/run does), within a time
 * bound. Null when it is not there and cannot be installed: the caller skips.
 */
import { existsSync } from "node:fs";
import { spawnSync } from "node:child_process";

export const CHROMIUM = process.env.CAIRN_CHROMIUM ?? "/usr/bin/chromium";
const INSTALL_TIMEOUT_MS = 300_000;

let found: { path: string | null; why: string } | undefined;

export function chromiumPath(): { path: string | null; why: string } {
  found ??= locate();
  return found;
}

function locate(): { path: string | null; why: string } {
  if (existsSync(CHROMIUM)) return { path: CHROMIUM, why: "found" };
  if (process.getuid?.() !== 0 || !existsSync("/usr/bin/apt-get")) {
    return { path: null, why: `${CHROMIUM} is missing and this is not root on a Debian machine: apt-get install chromium (or set CAIRN_CHROMIUM)` };
  }
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () => spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "chromium"], { env, timeout: INSTALL_TIMEOUT_MS, encoding: "utf8" });
  let r = install();
  if (r.status !== 0) {
    spawnSync("apt-get", ["update", "-qq"], { env, timeout: INSTALL_TIMEOUT_MS });
    r = install();
  }
  if (r.status === 0 && existsSync(CHROMIUM)) return { path: CHROMIUM, why: "installed with apt-get" };
  return { path: null, why: `apt-get install chromium failed (status ${r.status}): ${(r.stderr ?? "").trim().split("\n").slice(-2).join(" ")}` };
}
