#!/usr/bin/env bun
/**
 * The cairn command line: one binary, one command per job. `cairn help CMD`
 * explains each.
 */
import { CliError, expectArgs, parse, UsageError } from "./cli/args.ts";
import { BENCH_USAGE, bench } from "./cli/bench.ts";
import { ClientError, del, get, leader, post, put, tail } from "./cli/client.ts";
import { status, STATUS_USAGE, top, TOP_USAGE } from "./cli/status.ts";
import { backup, checkpoint, dump, load, recover, restore } from "./cli/data.ts";
import { INIT_USAGE, init } from "./cli/init.ts";
import { SERVE_USAGE, serve } from "./cli/serve.ts";
import { TOKEN_USAGE, token } from "./cli/tokens.ts";
import { TLS_USAGE, tlsCommand } from "./cli/tls.ts";
import { TLS_CLIENT_USAGE } from "./cli/tls-client.ts";
import { loadNativeCbor } from "./platform/cbor.ts";
import { DbError } from "./platform/sqlite.ts";
import { VERSION } from "./version.ts";

type Command = { run: (argv: string[]) => Promise<number>; summary: string; usage: string };

const CLIENT = "(--url URL | --config FILE) [--ca CA.pem] [--token T]";

const COMMANDS: Record<string, Command> = {
  init: { run: init, summary: "write a cluster file, a CA and a certificate bundle per node for N local nodes", usage: INIT_USAGE },
  tls: { run: tlsCommand, summary: "issue | rotate | client: certificates from the cluster CA", usage: `${TLS_USAGE}\n\n${TLS_CLIENT_USAGE}` },
  serve: { run: serve, summary: "run this host's node", usage: SERVE_USAGE },
  token: { run: token, summary: "add | revoke | list: the API tokens file", usage: TOKEN_USAGE },
  status: { run: status, summary: "a table of every node (role, term, indexes, lag, contact, problems); --json: a node's /status", usage: `${STATUS_USAGE.replace(/ \(--url.*$/, "")} ${CLIENT}` },
  top: { run: top, summary: "the status table, redrawn every --interval seconds until Ctrl-C", usage: `${TOP_USAGE.replace(/ \(--url.*$/, "")} ${CLIENT}` },
  put: { run: put, summary: "set a key", usage: `cairn put KEY VALUE [--content-type T] [--if-match VERSION] ${CLIENT}` },
  get: { run: get, summary: "print a key's value", usage: `cairn get KEY [--stale] ${CLIENT}` },
  del: { run: del, summary: "delete a key", usage: `cairn del KEY [--if-match VERSION] ${CLIENT}` },
  post: { run: post, summary: "append a change to the feed", usage: `cairn post JSON [--tag T]... [--idempotency-key K] ${CLIENT}` },
  tail: { run: tail, summary: "print the change feed (NDJSON), --follow to keep going", usage: `cairn tail [--since N] [--tag T]... [--follow] ${CLIENT}` },
  leader: { run: leader, summary: "leader transfer [--to ID]: move leadership", usage: `cairn leader transfer [--to ID] ${CLIENT}` },
  checkpoint: { run: checkpoint, summary: "create | list | fetch ID --out FILE: a node's checkpoints", usage: `cairn checkpoint create|list|fetch ID --out FILE ${CLIENT}` },
  backup: { run: backup, summary: "an online, consistent backup of a running node into FILE", usage: `cairn backup --out FILE ${CLIENT}` },
  restore: { run: restore, summary: "a new data directory from a backup or checkpoint, as a new one-node cluster", usage: "cairn restore --from FILE --data DIR --id ID" },
  dump: { run: dump, summary: "the feed and the keys as NDJSON (progress on stderr)", usage: `cairn dump --out FILE ${CLIENT}` },
  load: { run: load, summary: "replay a dump into a cluster", usage: `cairn load --in FILE ${CLIENT}` },
  recover: { run: recover, summary: "after a permanent loss of quorum: make this node a new one-node cluster", usage: "cairn recover --data DIR --id ID --yes" },
  bench: { run: bench, summary: "a quick write benchmark against a running cluster", usage: BENCH_USAGE },
  version: { run: version, summary: "print the version", usage: "cairn version" },
};

async function version(argv: string[]): Promise<number> {
  const { positionals } = parse(argv, {}, "cairn version");
  expectArgs(positionals, { min: 0, max: 0 }, "cairn version");
  console.log(`cairn ${VERSION}`);
  return 0;
}

/** System error codes of file and network calls: expected failures, told without a stack trace. */
const SYSTEM_HINTS: Record<string, string> = {
  ENOENT: "check that the path exists",
  ENOTDIR: "a part of the path is a file, not a directory",
  EISDIR: "the path is a directory: name a file",
  EEXIST: "something is in the way at that path: pick another path or remove it",
  EACCES: "check the permissions (or run as a user who may write there)",
  EPERM: "check the permissions (or run as a user who may write there)",
  EROFS: "the file system is read-only: pick a writable path",
  ENOSPC: "the disk is full: free some space",
  EMFILE: "too many open files: raise the limit (ulimit -n)",
  EADDRINUSE: "another process holds that port: stop it, or give this node another port in the cluster file",
  EADDRNOTAVAIL: "that address is not one of this host's: check the host in the cluster file",
};

/** How a failure is told: expected ones as their message (exit 1), unknown ones with the stack for a bug report. */
function describeFailure(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  if (e instanceof CliError) return e.message;
  // A database that cannot be read (not SQLite, damaged, locked): what SQLite said, and where.
  if (e instanceof DbError) return `database error: ${e.message}: if the data directory is damaged, restore it from a checkpoint (cairn restore) or start with an empty one to rejoin`;
  if (e instanceof Error && typeof code === "string" && SYSTEM_HINTS[code]) return `${e.message}: ${SYSTEM_HINTS[code]}`;
  if (e instanceof Error && process.env.CAIRN_DEBUG !== "1") {
    return `${e.name}: ${e.message} (unexpected: set CAIRN_DEBUG=1 for the stack trace and report it)`;
  }
  return String((e as Error)?.stack ?? e);
}

function help(cmd?: string): number {
  if (cmd && COMMANDS[cmd]) {
    console.log(COMMANDS[cmd].usage);
    return 0;
  }
  if (cmd) console.error(`unknown command "${cmd}": the commands are listed below (cairn help CMD explains one)\n`);
  console.log(`cairn ${VERSION}: a replicated change log and key-value store\n\nusage: cairn COMMAND [options]\n`);
  for (const [name, c] of Object.entries(COMMANDS)) console.log(`  ${name.padEnd(9)} ${c.summary}`);
  console.log(`  ${"help".padEnd(9)} help CMD explains a command`);
  return cmd ? 2 : 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") return help(rest[0]);
  if (cmd === "--version" || cmd === "-v") return run("version", rest);
  if (!COMMANDS[cmd]) return help(cmd);
  if (rest.includes("--help") || rest.includes("-h")) return help(cmd);
  return run(cmd, rest);
}

/** Runs a command: exit code 2 for a usage error, 1 for a failure, each told in one message. */
async function run(cmd: string, rest: string[]): Promise<number> {
  try {
    return await COMMANDS[cmd]!.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`cairn ${cmd}: ${e.message}`);
      return 2;
    }
    if (e instanceof ClientError) {
      console.error(`cairn ${cmd}: ${e.message}`);
      return 1;
    }
    console.error(`cairn ${cmd}: ${describeFailure(e)}`);
    return 1;
  }
}

// Before any decoding: the native CBOR string extractor where it loads and helps (platform/cbor.ts).
await loadNativeCbor();
process.exitCode = await main(process.argv.slice(2));
// Done (serve returns only once the node has stopped): do not wait for idle keep-alive sockets.
process.exit(process.exitCode);
