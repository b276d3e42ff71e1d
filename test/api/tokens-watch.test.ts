import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTokensFileSync, watchTokensFile, type TokensWatch } from "../../src/api/tokens-watch.ts";
import { newToken, sha256Hex, tokensFileText } from "../../src/api/tokens.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { waitFor } from "../helpers/ports.ts";

let dir: string;
let w: TokensWatch | undefined;
afterEach(() => {
  w?.close();
  w = undefined;
  rmSync(dir, { recursive: true, force: true });
});

function setup(fsWatch: boolean) {
  dir = mkdtempSync(join(tmpdir(), "cairn-tokens-"));
  const path = join(dir, "tokens.json");
  const a = newToken();
  const b = newToken();
  writeFileSync(path, tokensFileText([{ name: "a", role: "admin", sha256: sha256Hex(a) }, { name: "b", role: "read", sha256: sha256Hex(b) }]));
  const first = loadTokensFileSync(path);
  if (!first.ok) throw first.error;
  const mem = memoryLogger();
  w = watchTokensFile({ path, initial: first.tokens, logger: mem.log, fsWatch });
  return { path, a, b, mem, w };
}

for (const fsWatch of [true, false]) {
  test(`a revoked token stops working within 1 s (${fsWatch ? "fs.watch and poll" : "poll only"}); a bad file keeps the last good tokens`, async () => {
    const { path, a, b, mem, w } = setup(fsWatch);
    expect(w.current().lookup(b)?.role).toBe("read");
    const tmp = `${path}.tmp`;
    writeFileSync(tmp, tokensFileText([{ name: "a", role: "admin", sha256: sha256Hex(a) }]));
    renameSync(tmp, path);
    const t0 = performance.now();
    await waitFor("b revoked", () => w.current().lookup(b) === null, 2000, 5);
    expect(performance.now() - t0).toBeLessThan(1000);
    writeFileSync(path, '{"admin": "s3cret"}');
    await waitFor("the warning", () => mem.lines.some((l) => l.includes("ignored, the last good tokens stay in force")), 2000, 5);
    expect(w.current().lookup(a)?.role).toBe("admin");
    expect(w.current().lookup("s")).toBeNull();
    rmSync(path);
    await waitFor("the missing-file warning", () => mem.lines.some((l) => l.includes("no such file")), 2000, 5);
    expect(w.current().lookup(a)?.role).toBe("admin");
  });
}
