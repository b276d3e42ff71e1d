import { afterEach, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ClusterFileError } from "../../src/discovery/errors.ts";
import { CLUSTER_FILE_BYTES_MAX, loadClusterFile, loadClusterFileSync, parseClusterText } from "../../src/discovery/load.ts";
import { clusterJson, nodes, TempDirs } from "./helpers.ts";

const dirs = new TempDirs();
afterEach(() => dirs.cleanup());

const DESIGN_EXAMPLE = `{
  "cluster": "store-42",
  "nodes": [
    { "id": "n1", "peer": "10.0.0.1:7400", "api": "https://10.0.0.1:7401" },
    { "id": "n2", "peer": "10.0.0.2:7400", "api": "https://10.0.0.2:7401" },
    { "id": "n3", "peer": "10.0.0.3:7400", "api": "https://10.0.0.3:7401", "role": "learner" }
  ],
  "tls": { "ca": "tls/ca.pem", "cert": "tls/\${id}.pem", "key": "tls/\${id}.key" },
  "raft": { "heartbeatMs": 100, "electionMs": 1000 }
}`;

function write(text: string | Uint8Array, name = "cluster.json"): string {
  const path = join(dirs.make(), name);
  writeFileSync(path, text);
  return path;
}

/** Parses `text` and returns the error, failing if it was accepted. */
function problem(text: string): ClusterFileError {
  const r = parseClusterText(text, "/etc/cairn/cluster.json");
  if (r.ok) throw new Error(`expected a refusal, got ${JSON.stringify(r.config)}`);
  expect(r.error).toBeInstanceOf(ClusterFileError);
  expect(r.error.message).not.toContain("\n");
  return r.error;
}

function withNodes(...ns: unknown[]): string {
  return JSON.stringify({ cluster: "c", nodes: ns });
}

describe("a valid cluster file", () => {
  test("the DESIGN example loads, with TLS paths absolute and ${id} substituted per node", async () => {
    const path = write(DESIGN_EXAMPLE);
    const dir = join(path, "..");
    const r = await loadClusterFile(path);
    if (!r.ok) throw r.error;
    const c = r.config;
    expect(c.path).toBe(path);
    expect(c.cluster).toBe("store-42");
    expect(c.raft).toEqual({ heartbeatMs: 100, electionMs: 1000 });
    expect(c.founders).toBeNull();
    expect(c.tls).toEqual({ ca: join(dir, "tls/ca.pem"), cert: join(dir, "tls/${id}.pem"), key: join(dir, "tls/${id}.key") });
    expect(c.nodes.map((n) => [n.id, n.role])).toEqual([["n1", "voter"], ["n2", "voter"], ["n3", "learner"]]);
    expect(c.nodes[1]).toEqual({
      id: "n2",
      peer: "10.0.0.2:7400",
      peerHost: "10.0.0.2",
      peerPort: 7400,
      api: "https://10.0.0.2:7401",
      role: "voter",
      tls: { ca: join(dir, "tls/ca.pem"), cert: join(dir, "tls/n2.pem"), key: join(dir, "tls/n2.key") },
    });
  });

  test("the sync loader gives the same config as the async one", async () => {
    const path = write(DESIGN_EXAMPLE);
    expect(loadClusterFileSync(path)).toEqual(await loadClusterFile(path));
  });

  test("absolute TLS paths stay as they are; ${id} may appear several times", () => {
    const r = parseClusterText(
      clusterJson({ tls: { ca: "/pki/ca.pem", cert: "/pki/${id}/${id}.pem", key: "keys/${id}.key" } }),
      "/etc/cairn/cluster.json",
    );
    if (!r.ok) throw r.error;
    expect(r.config.nodes[2]?.tls).toEqual({ ca: "/pki/ca.pem", cert: "/pki/n3/n3.pem", key: "/etc/cairn/keys/n3.key" });
  });

  test("without a tls section nodes have tls null", () => {
    const r = parseClusterText(clusterJson(), "/x/cluster.json");
    if (!r.ok) throw r.error;
    expect(r.config.tls).toBeNull();
    expect(r.config.nodes.every((n) => n.tls === null)).toBe(true);
  });

  test("a file with no nodes is valid", () => {
    const r = parseClusterText(JSON.stringify({ cluster: "c", nodes: [] }), "/x/cluster.json");
    expect(r.ok && r.config.nodes.length).toBe(0);
  });

  test("API URLs lose a trailing slash and a default port; IPv6 peers are canonical", () => {
    const r = parseClusterText(
      withNodes(
        { id: "a", peer: "[FD00:0:0::1]:7400", api: "https://[fd00::1]:443/" },
        { id: "b", peer: "Box2.Example:7400", api: "http://box2.example:8080/cairn/" },
      ),
      "/x/cluster.json",
    );
    if (!r.ok) throw r.error;
    expect(r.config.nodes.map((n) => [n.peerHost, n.peerPort, n.api])).toEqual([
      ["fd00::1", 7400, "https://[fd00::1]"],
      ["box2.example", 7400, "http://box2.example:8080/cairn"],
    ]);
  });

  test("founders that are ids in the file are kept", () => {
    const r = parseClusterText(clusterJson({ founders: ["n1", "n2", "n3"] }), "/x/cluster.json");
    expect(r.ok && r.config.founders).toEqual(["n1", "n2", "n3"]);
  });

  test("a UTF-8 byte order mark is accepted", async () => {
    const r = await loadClusterFile(write(`\uFEFF${clusterJson()}`));
    expect(r.ok).toBe(true);
  });

  test.each([
    [{}, { heartbeatMs: 100, electionMs: 1000 }],
    [{ heartbeatMs: 50 }, { heartbeatMs: 50, electionMs: 1000 }],
    [{ heartbeatMs: 500 }, { heartbeatMs: 500, electionMs: 5000 }],
    [{ electionMs: 3000 }, { heartbeatMs: 100, electionMs: 3000 }],
    [{ electionMs: 400 }, { heartbeatMs: 40, electionMs: 400 }],
    [{ electionMs: 50 }, { heartbeatMs: 10, electionMs: 50 }],
    [{ heartbeatMs: 200, electionMs: 1000 }, { heartbeatMs: 200, electionMs: 1000 }],
  ])("raft %j resolves to %j", (raft, want) => {
    const r = parseClusterText(clusterJson({ raft }), "/x/cluster.json");
    if (!r.ok) throw r.error;
    expect(r.config.raft).toEqual(want);
  });
});

describe("a broken cluster file is refused with one clear line", () => {
  test("bad JSON names line and column", () => {
    const e = problem('{\n  "cluster": "c",\n  "nodes": [],\n}\n');
    expect(e.kind).toBe("syntax");
    expect(e.position).toMatchObject({ line: 3, column: 14 });
    expect(e.message).toBe(
      'cluster file /etc/cairn/cluster.json: invalid JSON at line 3, column 14: trailing comma before "}" (JSON does not allow one)',
    );
  });

  test.each([
    ['{"cluster": "c" "nodes": []}', 1, 17, 'expected "," or "}" after a property value, found "\\""'],
    ['{"cluster": "c", // note\n"nodes": []}', 1, 18, "comment (JSON has no comments)"],
    ["{cluster: 1}", 1, 2, "expected a property name in double quotes"],
    ['{"cluster": \'c\'}', 1, 13, "single quotes"],
    ['{"cluster": "c", "nodes": [1, 2,]}', 1, 32, 'trailing comma before "]"'],
    ['{"cluster": "c",\n "nodes": [] ', 2, 14, "found end of file"],
    ['{"cluster": "c\n"}', 1, 15, "control character in a string"],
    ['{"cluster": "c:\\x"}', 1, 16, "invalid escape"],
    ['{"cluster": "c"', 1, 16, "found end of file"],
    ['{"cluster": "unterminated', 1, 13, "unterminated string"],
    ['{"a": 01}', 1, 8, 'expected "," or "}"'],
    ['{"a": -}', 1, 7, "invalid number"],
    ['{"a": 1} x', 1, 10, "after the end of the JSON value"],
    ['{"a": tru}', 1, 7, "expected a value"],
    ['{"raft": {},\n "raft": {}}', 2, 2, 'duplicate key "raft" (first at line 1, column 2)'],
  ])("%j: line %d column %d, %s", (text, line, column, fragment) => {
    const e = problem(text);
    expect(e.kind).toBe("syntax");
    expect(e.position).toMatchObject({ line, column });
    expect(e.message).toContain(fragment);
  });

  test("duplicate id names both places", () => {
    const ns = nodes(3);
    ns[2] = { ...ns[2]!, id: "n2" };
    const e = problem(withNodes(...ns));
    expect(e.kind).toBe("invalid");
    expect(e.message).toBe('cluster file /etc/cairn/cluster.json: nodes[2].id: duplicate id "n2" (also nodes[1])');
  });

  test("ids that differ only in case are duplicates", () => {
    const ns = nodes(2);
    ns[1] = { ...ns[1]!, id: "N1" };
    expect(problem(withNodes(...ns)).problems).toEqual([
      'nodes[1].id: duplicate id "N1" (also nodes[0] "n1"; ids are compared ignoring case)',
    ]);
  });

  test("duplicate peer address and duplicate API URL", () => {
    const ns = nodes(3);
    ns[2] = { ...ns[2]!, peer: "10.0.0.1:7400", api: "https://10.0.0.2:7401/" };
    expect(problem(withNodes(...ns)).problems).toEqual([
      'nodes[2].peer: duplicate peer address "10.0.0.1:7400" (also nodes[0])',
      'nodes[2].api: duplicate API URL "https://10.0.0.2:7401/" (also nodes[1])',
    ]);
  });

  test("an API on the same host and port as a peer address", () => {
    const ns = nodes(2);
    ns[1] = { ...ns[1]!, api: "http://10.0.0.1:7400" };
    expect(problem(withNodes(...ns)).problems).toEqual([
      'nodes[1].api: "http://10.0.0.1:7400" uses the same host and port as nodes[0].peer; the API and the peer transport need separate ports',
    ]);
  });

  test("a missing field says what it should be", () => {
    const e = problem(withNodes({ id: "n1", api: "https://10.0.0.1:7401" }));
    expect(e.message).toBe(
      'cluster file /etc/cairn/cluster.json: nodes[0].peer: missing; expected "host:port" such as "10.0.0.1:7400"',
    );
  });

  test("missing cluster and nodes are both listed", () => {
    const e = problem("{}");
    expect(e.problems).toEqual([
      'cluster: missing; expected a cluster name of letters, digits, ".", "_" and "-", at most 63 characters, such as "store-42"',
      'nodes: missing; expected an array of at most 64 node entries (it may be empty), or "discovery": {"srv": "_cairn._tcp.NAME"}',
    ]);
    expect(e.message).toEndWith("(and 1 more problem)");
  });

  test.each([
    ["ftp://10.0.0.1:7401", "scheme ftp is not http or https"],
    ["10.0.0.1:7401", 'expected an http:// or https:// URL such as "https://10.0.0.1:7401"'],
    ["not a url", 'expected an http:// or https:// URL such as "https://10.0.0.1:7401"'],
    ["https://user:pw@10.0.0.1:7401", "must not contain credentials"],
    ["https://10.0.0.1:7401/?x=1", "must not have a query or fragment"],
    ["https://0.0.0.0:7401", "cannot be dialled"],
  ])("a bad API URL %j is refused: %s", (api, fragment) => {
    const e = problem(withNodes({ id: "n1", peer: "10.0.0.1:7400", api }));
    expect(e.problems).toHaveLength(1);
    expect(e.message).toContain("nodes[0].api: ");
    expect(e.message).toContain(fragment);
    expect(e.message).toEndWith(`got ${JSON.stringify(api)}`);
  });

  test.each([
    ["10.0.0.1", 'expected "host:port"'],
    ["10.0.0.1:0", "port 0 is not in 1..65535"],
    ["10.0.0.1:65536", "port 65536 is not in 1..65535"],
    ["fd00::1:7400", "an IPv6 address goes in brackets"],
    ["[10.0.0.1]:7400", "is not an IPv4 address, a DNS name or a bracketed IPv6 address"],
    ["bad_host:7400", "is not an IPv4 address"],
    ["0.0.0.0:7400", "wildcard address"],
    ["[::]:7400", "wildcard address"],
  ])("a bad peer %j is refused: %s", (peer, fragment) => {
    const e = problem(withNodes({ id: "n1", peer, api: "https://10.0.0.1:7401" }));
    expect(e.message).toContain("nodes[0].peer: ");
    expect(e.message).toContain(fragment);
  });

  test.each(["", "-n1", "n/1", "../x", "n 1", "x".repeat(64), 7])("a bad id %j is refused", (id) => {
    const e = problem(withNodes({ id, peer: "10.0.0.1:7400", api: "https://10.0.0.1:7401" }));
    expect(e.message).toContain(`nodes[0].id: expected an id of letters, digits, "_" and "-"`);
    expect(e.message).toEndWith(`got ${JSON.stringify(id)}`);
  });

  test("a bad role lists the allowed ones", () => {
    const e = problem(withNodes({ ...nodes(1)[0], role: "observer" }));
    expect(e.problems).toEqual(['nodes[0].role: expected "voter", "learner" or "witness", got "observer"']);
  });

  test("a witness role is kept as such", () => {
    const r = parseClusterText(withNodes({ ...nodes(1)[0], role: "witness" }), "/etc/cairn/cluster.json");
    expect(r.ok && r.config.nodes[0]!.role).toBe("witness");
  });

  test("unknown keys are refused with the known keys listed", () => {
    expect(problem(clusterJson({ raft: { heartbeatMS: 100 } })).problems).toEqual([
      'unknown key "heartbeatMS" in raft; known keys are heartbeatMs, electionMs',
    ]);
    expect(problem(withNodes({ ...nodes(1)[0], rol: "learner" })).problems).toEqual([
      'unknown key "rol" in nodes[0]; known keys are id, peer, api, role',
    ]);
    expect(problem(clusterJson({ tokens: [] })).problems).toEqual([
      'unknown key "tokens" at the top level; known keys are cluster, nodes, discovery, validators, tls, raft, founders, allowShrink, revoked',
    ]);
  });

  test("raft timings out of bounds or too close together", () => {
    expect(problem(clusterJson({ raft: { heartbeatMs: 5 } })).problems).toEqual([
      "raft.heartbeatMs: expected a whole number of milliseconds from 10 to 10000, got 5",
    ]);
    expect(problem(clusterJson({ raft: { electionMs: 1.5 } })).message).toContain("raft.electionMs: expected a whole number");
    expect(problem(clusterJson({ raft: { heartbeatMs: 300, electionMs: 1000 } })).problems).toEqual([
      "raft.electionMs: 1000 is less than 5 × heartbeatMs (300); a few lost heartbeats would start an election, " +
        "so use at least 1500 or a shorter heartbeatMs",
    ]);
  });

  test("founders must be distinct; a founder the file no longer lists is fine (the cluster outlives its founding list)", () => {
    const r = parseClusterText(clusterJson({ founders: ["n9", "n1"] }), "/x/cluster.json");
    expect(r.ok && r.config.founders).toEqual(["n9", "n1"]);
    expect(problem(clusterJson({ founders: ["n1", "n9", "n1"] })).problems).toEqual([
      'founders[2]: duplicate "n1" (also founders[0])',
    ]);
    expect(problem(clusterJson({ founders: [] })).message).toContain("founders: expected a non-empty array");
  });

  test("an unknown ${...} placeholder in a TLS path", () => {
    const e = problem(clusterJson({ tls: { ca: "ca.pem", cert: "${node}.pem", key: "${id}.key" } }));
    expect(e.problems).toEqual(['tls.cert: unknown placeholder "${node}"; only ${id} is replaced, got "${node}.pem"']);
  });

  test("more than 64 nodes", () => {
    const ns = Array.from({ length: 65 }, (_, i) => ({ id: `n${i}`, peer: `h${i}:1`, api: `http://h${i}:2` }));
    expect(problem(withNodes(...ns)).problems).toEqual(["nodes: has 65 entries, at most 64 are allowed"]);
  });

  test("not an object at all", () => {
    expect(problem("[1]").problems[0]).toStartWith("the file: expected a JSON object");
  });

  test("an empty file", () => {
    expect(problem(" \n").kind).toBe("empty");
  });

  test("a missing file names the path and what to check", async () => {
    const path = join(dirs.make(), "nope.json");
    const r = await loadClusterFile(path);
    expect(!r.ok && r.error.kind).toBe("read");
    expect(!r.ok && r.error.message).toBe(`cluster file ${path}: cannot read it: no such file; check the --config path (ENOENT)`);
    expect(loadClusterFileSync(path)).toEqual(r);
  });

  test("a directory is not a cluster file", async () => {
    const path = join(dirs.make(), "cluster.json");
    mkdirSync(path);
    const r = await loadClusterFile(path);
    expect(!r.ok && r.error.kind).toBe("read");
    expect(!r.ok && r.error.message).toContain("directory");
  });

  test("a file over the size limit is refused unread", async () => {
    const r = await loadClusterFile(write(" ".repeat(CLUSTER_FILE_BYTES_MAX + 1)));
    expect(!r.ok && r.error.kind).toBe("tooLarge");
  });

  test("bytes that are not UTF-8", async () => {
    const r = await loadClusterFile(write(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])));
    expect(!r.ok && r.error.kind).toBe("encoding");
  });

  test("a FIFO in place of the file is refused at once, not read (the read would block forever)", async () => {
    const path = join(dirs.make(), "cluster.json");
    execFileSync("mkfifo", [path]);
    const r = await loadClusterFile(path);
    expect(!r.ok && r.error.kind).toBe("read");
    expect(!r.ok && r.error.message).toContain("not a regular file");
    expect(loadClusterFileSync(path)).toEqual(r);
  }, 5000);

  test("a symlink to a device that never ends (/dev/zero) is refused, not read", async () => {
    const path = join(dirs.make(), "cluster.json");
    symlinkSync("/dev/zero", path);
    const r = await loadClusterFile(path);
    expect(!r.ok && r.error.message).toContain("not a regular file");
  }, 5000);

  test("a symlink loop says so", async () => {
    const dir = dirs.make();
    symlinkSync(join(dir, "b.json"), join(dir, "cluster.json"));
    symlinkSync(join(dir, "cluster.json"), join(dir, "b.json"));
    const r = await loadClusterFile(join(dir, "cluster.json"));
    expect(!r.ok && r.error.message).toContain("a loop of symbolic links; point the link at the real file (ELOOP)");
    expect(loadClusterFileSync(join(dir, "cluster.json"))).toEqual(r);
  });

  test("a symlink to a good file is followed", async () => {
    const dir = dirs.make();
    writeFileSync(join(dir, "real.json"), clusterJson());
    symlinkSync(join(dir, "real.json"), join(dir, "cluster.json"));
    const r = await loadClusterFile(join(dir, "cluster.json"));
    expect(r.ok && r.config.nodes.length).toBe(3);
  });

  test("allowShrink is false unless the file says true; it must be a boolean", () => {
    const r = parseClusterText(clusterJson(), "/c.json");
    expect(r.ok && r.config.allowShrink).toBe(false);
    const t = parseClusterText(clusterJson({ allowShrink: true }), "/c.json");
    expect(t.ok && t.config.allowShrink).toBe(true);
    expect(problem(clusterJson({ allowShrink: "yes" })).problems).toEqual(['allowShrink: expected true or false, got "yes"']);
  });
});
