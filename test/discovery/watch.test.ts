import { afterEach, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterConfig } from "../../src/discovery/load.ts";
import { type ClusterFileWatch, watchClusterFile, type WatchOptions } from "../../src/discovery/watch.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { clusterJson, nodes, TempDirs, waitFor, writeAtomic } from "./helpers.ts";

const dirs = new TempDirs();
const watches: ClusterFileWatch[] = [];
afterEach(() => {
  for (const w of watches.splice(0)) w.close();
  dirs.cleanup();
});

/** Polling so slow it never fires during a test: only fs.watch can see a change. */
const NO_POLL_MS = 600_000;

function setup(text: string | null, opts: Partial<WatchOptions> = {}) {
  const path = join(dirs.make(), "cluster.json");
  if (text !== null) writeFileSync(path, text);
  const { log, lines } = memoryLogger("debug");
  const changes: ClusterConfig[] = [];
  const w = watchClusterFile({ path, pollMs: NO_POLL_MS, debounceMs: 20, logger: log, onChange: (c) => changes.push(c), ...opts });
  watches.push(w);
  const logged = (level: string, fragment: string) =>
    lines.filter((l) => {
      const o = JSON.parse(l) as { level: string; msg: string };
      return o.level === level && o.msg.includes(fragment);
    });
  return { path, w, changes, lines, logged };
}

const ids = (c: ClusterConfig | null | undefined) => c?.nodes.map((n) => n.id);

describe("watchClusterFile", () => {
  test("the file as it is at start is current() and is not emitted", () => {
    const { w, changes } = setup(clusterJson());
    expect(ids(w.current())).toEqual(["n1", "n2", "n3"]);
    expect(changes).toEqual([]);
  });

  test("an atomic replace (write a temp file, rename it over) triggers onChange", async () => {
    const { path, w, changes } = setup(clusterJson());
    writeAtomic(path, clusterJson({ nodes: nodes(4) }));
    await waitFor("onChange after the rename", () => changes.length === 1);
    expect(ids(changes[0])).toEqual(["n1", "n2", "n3", "n4"]);
    expect(w.current()).toBe(changes[0]!);
    // A second replace is seen too: the watch is on the directory, not the old inode.
    writeAtomic(path, clusterJson({ nodes: nodes(2) }));
    await waitFor("onChange after the second rename", () => changes.length === 2);
    expect(ids(w.current())).toEqual(["n1", "n2"]);
  });

  test("an in-place write triggers onChange", async () => {
    const { path, changes } = setup(clusterJson());
    writeFileSync(path, clusterJson({ nodes: nodes(5) }));
    await waitFor("onChange after the in-place write", () => changes.length === 1);
    expect(ids(changes[0])).toEqual(["n1", "n2", "n3", "n4", "n5"]);
  });

  test("polling alone notices a change when fs.watch is off", async () => {
    const { path, changes } = setup(clusterJson(), { fsWatch: false, pollMs: 30 });
    writeAtomic(path, clusterJson({ cluster: "other" }));
    await waitFor("onChange from polling", () => changes.length === 1);
    expect(changes[0]?.cluster).toBe("other");
    writeFileSync(path, clusterJson({ cluster: "third" }));
    await waitFor("onChange from polling after an in-place write", () => changes.length === 2);
  });

  test("other files in the directory do not count", async () => {
    const { path, changes, logged } = setup(clusterJson());
    writeFileSync(join(path, "..", "notes.txt"), "hello");
    writeFileSync(path, clusterJson({ nodes: nodes(1) }));
    await waitFor("onChange", () => changes.length === 1);
    expect(logged("warn", "")).toEqual([]);
  });

  test("a rewrite with the same meaning (reformatted) emits nothing", async () => {
    const { path, w, changes, logged } = setup(clusterJson());
    const before = w.current();
    writeAtomic(path, JSON.stringify(JSON.parse(clusterJson())));
    await waitFor("the check of the rewrite", () => logged("debug", "same content").length === 1);
    expect(changes).toEqual([]);
    expect(w.current()).toBe(before);
  });

  test("each kind of broken file is logged once, one line, and the last good version stays", async () => {
    const { path, w, changes, lines, logged } = setup(clusterJson());
    const good = w.current();
    const broken: [string, string][] = [
      ['{"cluster": "c", "nodes": [],}', 'invalid JSON at line 1, column 29: trailing comma before "}" (JSON does not allow one)'],
      [clusterJson({ nodes: [...nodes(2), { ...nodes(2)[0]!, peer: "h:1", api: "http://h:2" }] }), 'nodes[2].id: duplicate id "n1" (also nodes[0])'],
      [clusterJson({ nodes: [{ id: "n1", api: "https://10.0.0.1:7401" }] }), 'nodes[0].peer: missing; expected "host:port" such as "10.0.0.1:7400"'],
      [clusterJson({ nodes: [{ ...nodes(1)[0]!, api: "ftp://10.0.0.1" }] }), 'nodes[0].api: scheme ftp is not http or https, got "ftp://10.0.0.1"'],
    ];
    for (const [i, [text, problem]] of broken.entries()) {
      writeAtomic(path, text);
      await waitFor(`a warning about: ${problem}`, () => logged("warn", problem).length === 1);
      const line = logged("warn", problem)[0]!;
      expect(line).not.toContain("\n");
      const msg = (JSON.parse(line) as { msg: string }).msg;
      expect(msg).toBe(`cluster file ${path}: ${problem}; ignored, the last good version stays in force`);
      expect(w.current()).toBe(good);
      expect(logged("warn", "").length).toBe(i + 1);
    }
    // The same broken content written again is not logged again.
    const [lastText] = broken[broken.length - 1]!;
    writeAtomic(path, lastText);
    await waitFor("the check of the rewrite", () => logged("debug", "unchanged since the last check").length >= 1);
    expect(logged("warn", "").length).toBe(broken.length);
    writeAtomic(path, clusterJson({ nodes: nodes(4) }));
    await waitFor("onChange after the file is fixed", () => changes.length === 1);
    expect(logged("warn", "").length).toBe(broken.length);
    expect(ids(w.current())).toEqual(["n1", "n2", "n3", "n4"]);
    expect(lines.every((l) => !l.includes("\n"))).toBe(true);
  });

  test("a missing file is logged once; when it comes back it is used", async () => {
    const { path, w, changes, logged } = setup(clusterJson(), { pollMs: 30 });
    rmSync(path);
    await waitFor("the warning about the missing file", () => logged("warn", "no such file").length === 1);
    expect(ids(w.current())).toEqual(["n1", "n2", "n3"]);
    // Several polls later, still one warning.
    const polls = Date.now() + 200;
    await waitFor("a few polls", () => Date.now() > polls);
    expect(logged("warn", "no such file").length).toBe(1);
    writeAtomic(path, clusterJson({ nodes: nodes(1) }));
    await waitFor("onChange after the file is back", () => changes.length === 1);
    expect(ids(w.current())).toEqual(["n1"]);
  });

  test("an invalid file at start: current() is null until a valid one appears", async () => {
    const { path, w, changes, logged } = setup("{ not json");
    expect(w.current()).toBeNull();
    expect(logged("warn", "no valid version has been loaded yet").length).toBe(1);
    writeAtomic(path, clusterJson());
    await waitFor("onChange with the first valid version", () => changes.length === 1);
    expect(ids(w.current())).toEqual(["n1", "n2", "n3"]);
  });

  test("no file at start, then one is created", async () => {
    const { path, w, changes } = setup(null);
    expect(w.current()).toBeNull();
    writeAtomic(path, clusterJson());
    await waitFor("onChange when the file appears", () => changes.length === 1);
  });

  test("with an initial config, a file that already differs is emitted on the first check", async () => {
    const first = setup(clusterJson());
    const initial = first.w.current()!;
    first.w.close();
    writeFileSync(first.path, clusterJson({ nodes: nodes(2) }));
    const { log } = memoryLogger();
    const changes: ClusterConfig[] = [];
    const w = watchClusterFile({ path: first.path, pollMs: NO_POLL_MS, logger: log, initial, onChange: (c) => changes.push(c) });
    watches.push(w);
    expect(w.current()).toBe(initial);
    await w.reload();
    expect(ids(changes[0])).toEqual(["n1", "n2"]);
  });

  test("reload() checks at once, and a throwing onChange is logged, not fatal", async () => {
    const path = join(dirs.make(), "cluster.json");
    writeFileSync(path, clusterJson());
    const { log, lines } = memoryLogger();
    const w = watchClusterFile({
      path,
      pollMs: NO_POLL_MS,
      fsWatch: false,
      logger: log,
      onChange: () => {
        throw new Error("handler broke");
      },
    });
    watches.push(w);
    writeFileSync(path, clusterJson({ nodes: nodes(1) }));
    await w.reload();
    expect(ids(w.current())).toEqual(["n1"]);
    expect(lines.some((l) => l.includes("change handler failed") && l.includes("handler broke"))).toBe(true);
  });

  test("after close() there is no onChange", async () => {
    const a = setup(clusterJson());
    const changes: ClusterConfig[] = [];
    const { log } = memoryLogger();
    const b = watchClusterFile({ path: a.path, pollMs: NO_POLL_MS, debounceMs: 20, logger: log, onChange: (c) => changes.push(c) });
    watches.push(b);
    a.w.close();
    writeAtomic(a.path, clusterJson({ nodes: nodes(1) }));
    await waitFor("the open watch sees the change", () => changes.length === 1);
    await b.reload();
    expect(a.changes).toEqual([]);
    expect(ids(a.w.current())).toEqual(["n1", "n2", "n3"]);
  });

  test("a version the caller's vet refuses is ignored like a broken one, reported once, and vetted again later", async () => {
    let allow = false;
    const problems: (string | null)[] = [];
    const { path, w, changes, logged } = setup(clusterJson(), {
      fsWatch: false,
      vet: (next) => (next.nodes.length === 0 ? ["nodes: the file lists no nodes"] : allow ? [] : ["tls.cert: /x/n1.pem: no such file"]),
      onProblem: (p) => problems.push(p),
    });
    const good = w.current();
    writeAtomic(path, clusterJson({ nodes: [] }));
    await w.reload();
    await w.reload(); // checked again: not logged again
    const want = `cluster file ${path}: nodes: the file lists no nodes; ignored, the last good version stays in force`;
    expect(logged("warn", "lists no nodes").map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual([want]);
    expect(w.current()).toBe(good);
    expect(changes).toEqual([]);
    expect(problems).toEqual([want]);
    // Another refused version, then what it depended on is fixed: the same bytes are taken on the next check.
    writeAtomic(path, clusterJson({ nodes: nodes(2) }));
    await w.reload();
    expect(logged("warn", "no such file").length).toBe(1);
    expect(changes).toEqual([]);
    allow = true;
    await w.reload();
    expect(ids(changes[0])).toEqual(["n1", "n2"]);
    expect(problems.length).toBe(3);
    expect(problems[2]).toBeNull();
  });

  test("a file put back to the version in force clears the reported problem", async () => {
    const problems: (string | null)[] = [];
    const { path, w } = setup(clusterJson(), { fsWatch: false, onProblem: (p) => problems.push(p) });
    writeAtomic(path, "{ broken");
    await w.reload();
    writeAtomic(path, clusterJson());
    await w.reload();
    expect(problems.length).toBe(2);
    expect(problems[0]).toContain("invalid JSON");
    expect(problems[1]).toBeNull();
  });
});
