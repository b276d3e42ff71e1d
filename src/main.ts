#!/usr/bin/env bun
/**
 * The cairn command line: one binary, one command per job. `cairn help CMD`
 * explains each.
 */
import { UsageError } from "./cli/args.ts";
import { BENCH_USAGE, bench } from "./cli/bench.ts";
import { ClientError, del, get, leader, post, put, status, tail } from "./cli/client.ts";
import { backup, checkpoint, dump, load, recover, restore } from "./cli/data.ts";
import { INIT_USAGE, init } from "./cli/init.ts";
import { SERVE_USAGE, serve } from "./cli/serve.ts";
import { TOKEN_USAGE, token } from "./cli/tokens.ts";
import { TLS_USAGE, tlsCommand } from "./cli/tls.ts";
import { TLS_CLIENT_USAGE } from "./cli/tls-client.ts";
import { VERSION } from "./version.ts";

type Command = { run: (argv: string[]) => Promise<number>; summary: string; usage: string };

const CLIENT = "(--url URL | --config FILE) [--ca CA.pem] [--token T]";

const COMMANDS: Record<string, Command> = {
  init: { run: init, summary: "write a cluster file, a CA and a certificate bundle per node for N local nodes", usage: INIT_USAGE },
  tls: { run: tlsCommand, summary: "issue | rotate | client: certificates from the cluster CA", usage: `${TLS_USAGE}\n\n${TLS_CLIENT_USAGE}` },
  serve: { run: serve, summary: "run this host's node", usage: SERVE_USAGE },
  token: { run: token, summary: "add | revoke | list: the API tokens file", usage: TOKEN_USAGE },
  status: { run: status, summary: "print a node's view of the cluster", usage: `cairn status ${CLIENT}` },
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
  version: { run: async () => (console.log(`cairn ${VERSION}`), 0), summary: "print the version", usage: "cairn version" },
};

function help(cmd?: string): number {
  if (cmd && COMMANDS[cmd]) {
    console.log(COMMANDS[cmd].usage);
    return 0;
  }
  if (cmd) console.error(`unknown command "${cmd}"\n`);
  console.log(`cairn ${VERSION}: a replicated change log and key-value store\n\nusage: cairn COMMAND [options]\n`);
  for (const [name, c] of Object.entries(COMMANDS)) console.log(`  ${name.padEnd(9)} ${c.summary}`);
  console.log(`  ${"help".padEnd(9)} help CMD explains a command`);
  return cmd ? 2 : 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") return help(rest[0]);
  if (cmd === "--version") return COMMANDS.version!.run([]);
  const c = COMMANDS[cmd];
  if (!c) return help(cmd);
  if (rest.includes("--help") || rest.includes("-h")) return help(cmd);
  try {
    return await c.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`cairn ${cmd}: ${e.message}`);
      return 2;
    }
    if (e instanceof ClientError) {
      console.error(`cairn ${cmd}: ${e.message}`);
      return 1;
    }
    console.error(`cairn ${cmd}: ${(e as Error).stack ?? e}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
// Done (serve returns only once the node has stopped): do not wait for idle keep-alive sockets.
process.exit(process.exitCode);
