/**
 * The dashboard (GET /) in a real headless browser (Debian's chromium driven
 * by playwright-core) against a real 3-node TLS cluster with tokens on: it
 * shows every node, roles, the leader, indexes, lag, the write rate and
 * elections, updates live, and a node going down shows within 2 s. The
 * screenshots are saved under a temp dir whose path is printed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { chromiumPath } from "../helpers/chromium.ts";
import { E2ECluster } from "./harness.ts";

const chromium = chromiumPath();
if (chromium.path === null) console.warn(`SKIPPED dashboard browser tests: ${chromium.why}`);

/** The acceptance bound: a node going down shows on the leader's dashboard within this. */
const DOWN_SHOWN_MS = 2000;

describe.skipIf(chromium.path === null)("dashboard in headless chromium", () => {
  let c: E2ECluster;
  let browser: Browser;
  let page: Page;
  const shots = mkdtempSync(join(tmpdir(), "cairn-dashboard-"));

  beforeAll(async () => {
    c = await E2ECluster.init(3);
    for (const id of ["n1", "n2", "n3"]) c.start(id);
    await c.waitVoters(3);
    const { chromium: pw } = await import("playwright-core");
    browser = await pw.launch({ executablePath: chromium.path!, args: ["--no-sandbox"] });
    // The cluster's own CA signed the API certificate; the browser does not know it.
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
    page = await ctx.newPage();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await c?.close();
  });

  const rows = () =>
    page.$$eval("#members tr[data-node]", (trs) =>
      trs.map((tr) => ({ id: (tr as HTMLElement).dataset.node, role: (tr as HTMLElement).dataset.role, state: tr.querySelector("td.state")?.textContent })),
    );

  async function shot(name: string): Promise<string> {
    const path = join(shots, name);
    await page.screenshot({ path, fullPage: true });
    const png = readFileSync(path);
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    expect(statSync(path).size).toBeGreaterThan(10_000);
    console.log(`dashboard screenshot: ${path}`);
    return path;
  }

  test("without a token it says how to pass one", async () => {
    const leader = await c.leader();
    await page.goto(`${c.api(leader)}/`);
    await page.waitForFunction(() => document.getElementById("err")!.textContent!.includes("#token="), null, { timeout: 10_000 });
  }, 30_000);

  test("shows every node, roles, leader, indexes, lag and the write rate, updating live", async () => {
    const leader = await c.leader();
    await page.goto(`${c.api(leader)}/#token=${c.token}`);
    await page.waitForFunction(() => document.querySelectorAll("#members tr[data-node]").length === 3, null, { timeout: 10_000 });
    const seen = await rows();
    expect(seen.map((r) => r.id).sort()).toEqual(["n1", "n2", "n3"]);
    for (const r of seen) {
      expect(r.role).toBe(r.id === leader ? "leader" : "follower");
      expect(r.state).toBe("up");
    }
    expect(await page.textContent("#leader")).toBe(leader);
    expect(await page.textContent("#role")).toBe("leader");
    const commitBefore = Number(await page.textContent("#idx td:nth-child(3)"));
    // Writes while the page watches: the indexes and the rate move without a reload.
    for (let i = 0; i < 60; i++) expect((await c.post(leader, { i }, { tags: ["dash"] })).status).toBe(201);
    await page.waitForFunction((before) => Number(document.querySelector("#idx td:nth-child(3)")!.textContent) >= before + 60, commitBefore, { timeout: 10_000 });
    await page.waitForFunction(() => Number(document.getElementById("rate-changes")!.textContent) > 0, null, { timeout: 10_000 });
    expect(await page.$$eval("#spark rect", (r) => r.length)).toBeGreaterThan(0);
    const lags = await page.$$eval("#members tr[data-node] td:nth-child(5)", (tds) => tds.map((td) => td.textContent));
    for (const l of lags) expect(l).toMatch(/^\d+$/);
    await shot("dashboard.png");
  }, 60_000);

  test("a node going down shows within 2 s; an election shows in the list", async () => {
    const leader = await c.leader();
    const [down, next] = ["n1", "n2", "n3"].filter((id) => id !== leader) as [string, string];
    await c.signal(down, "SIGKILL");
    const t0 = Date.now();
    await page.waitForFunction((id) => document.querySelector(`#members tr[data-node="${id}"] td.state`)?.textContent === "down", down, { timeout: 10_000 });
    const shownMs = Date.now() - t0;
    console.log(`dashboard: ${down} shown down ${shownMs} ms after SIGKILL`);
    expect(shownMs).toBeLessThanOrEqual(DOWN_SHOWN_MS);
    await shot("dashboard-node-down.png");

    const moved = await c.json(leader, "/admin/leader", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ to: next }) });
    expect(moved.status).toBe(200);
    await page.waitForFunction((id) => document.getElementById("elections")!.textContent!.includes(`leader ${id}`), next, { timeout: 10_000 });
    expect(await page.textContent("#role")).toBe("follower");
    expect(await page.getAttribute("#view a", "href")).toContain(`#token=`);
    await shot("dashboard-after-election.png");
  }, 60_000);
});
