/**
 * `cairn tls issue` and `cairn tls rotate`: node certificates from the
 * cluster CA (DIR/ca, which stays on the operator's machine), written as a
 * bundle a host gets on its own (ca.pem, node.pem, node.key).
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { BUNDLE_FILES, readCaDir, writeNodeBundle } from "../transport/bundle.ts";
import { CertParamsError, NODE_CERT_DAYS_DEFAULT } from "../transport/certs.ts";
import { certHosts, checkPair } from "../transport/pair.ts";
import { intOption, parse, UsageError } from "./args.ts";
import { tlsClient } from "./tls-client.ts";

export const TLS_USAGE = `cairn tls issue  --ca DIR/ca --id ID --out DIR/tls/ID [--host H]... [--days D]
cairn tls rotate --ca DIR/ca --id ID --out DIR/tls/ID [--host H]... [--days D]

issue   a bundle for a node added later: OUT/ca.pem (the CA certificate),
        OUT/node.pem and OUT/node.key (the node's certificate, CN = ID, and
        its key, mode 0600). Refuses to overwrite an existing bundle.
rotate  a new certificate and key for an existing bundle, replaced in place
        (each file atomically). A running node sees the change and uses the
        new pair for new peer and API connections, no restart; a pair that
        does not check out is refused with a log line and the old one stays.

  --ca DIR    the CA directory cairn init wrote (ca.pem, ca.key): run this
              where the CA lives, then copy OUT to the node's host
  --host H    a DNS name or IP address for the certificate (repeatable);
              default 127.0.0.1 and localhost for issue, the hosts of the
              current certificate for rotate
  --days D    validity in days (default ${NODE_CERT_DAYS_DEFAULT})

Rotating the CA itself is not supported. To stop trusting a node, mark it
"revoked" in the cluster file.`;

const OPTIONS = {
  ca: { type: "string" },
  id: { type: "string" },
  out: { type: "string" },
  host: { type: "string", multiple: true },
  days: { type: "string" },
} as const;

const DEFAULT_HOSTS = ["127.0.0.1", "localhost"];

export async function tlsCommand(argv: string[]): Promise<number> {
  // `client` has options of its own (an API client certificate, not a node bundle).
  if (argv[0] === "client") return await tlsClient(argv.slice(1));
  const { values, positionals } = parse(argv, OPTIONS, TLS_USAGE);
  const sub = positionals[0];
  if (sub !== "issue" && sub !== "rotate") throw new UsageError(`${sub === undefined ? "no subcommand" : `unknown subcommand "${sub}"`}: use issue, rotate or client\n\n${TLS_USAGE}`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"\n\n${TLS_USAGE}`);
  for (const k of ["ca", "id", "out"] as const) {
    if (!values[k]) throw new UsageError(`--${k} is required\n\n${TLS_USAGE}`);
  }
  const days = intOption(values.days, "days", NODE_CERT_DAYS_DEFAULT, { min: 1, max: 36500 });
  const out = resolve(values.out!);
  const id = values.id!;
  const existing = existsSync(join(out, BUNDLE_FILES.cert));
  if (sub === "issue" && existing) throw new UsageError(`${out} holds a bundle already: use cairn tls rotate to replace it`);
  if (sub === "rotate" && !existing) throw new UsageError(`${out} holds no bundle (${BUNDLE_FILES.cert}): use cairn tls issue for a new node`);
  try {
    const ca = await readCaDir(resolve(values.ca!));
    const hosts = values.host?.length ? values.host : sub === "rotate" ? await certHosts(await readFile(join(out, BUNDLE_FILES.cert), "utf8")) : DEFAULT_HOSTS;
    const paths = await writeNodeBundle({ ca, id, out, hosts, days });
    const facts = await checkPair({ ca: ca.cert, cert: await readFile(paths.cert, "utf8"), key: await readFile(paths.key, "utf8") }, id);
    console.log(`${sub === "issue" ? "issued" : "rotated"} ${id}: ${paths.cert} (serial ${facts.serial}, until ${facts.certNotAfter.toISOString()}, hosts ${hosts.join(", ")})`);
    console.log(`copy ${out}/ to host ${id} (as tls/${id}/ next to its cluster.json); never copy ${resolve(values.ca!)}/`);
    return 0;
  } catch (e) {
    if (e instanceof CertParamsError) throw new UsageError(e.message);
    throw e;
  }
}
