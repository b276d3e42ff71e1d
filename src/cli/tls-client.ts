/**
 * `cairn tls client --ca DIR --name NAME --role R --out DIR`: a TLS client
 * certificate for the API, for nodes started with --api-client-ca.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CertParamsError } from "../transport/certs.ts";
import { type ClientRole, createClientCert } from "../transport/clientcerts.ts";
import { intOption, parse, UsageError } from "./args.ts";

export const TLS_CLIENT_USAGE = `cairn tls client --ca DIR --name NAME --role read|write|admin --out DIR [--days 365] [--force]

Makes a TLS client certificate for the HTTP API: CN=NAME, role in a SAN URI
cairn:role:ROLE, signed by the CA in DIR (its ca.pem and ca.key; cairn init
writes them). Writes OUT/NAME.pem and OUT/NAME.key (0600). Nodes accept it
when started with --api-client-ca DIR/ca.pem. Use it as, for example:
  curl --cacert ca.pem --cert NAME.pem --key NAME.key https://HOST:PORT/status`;

const OPTIONS = {
  ca: { type: "string" },
  name: { type: "string" },
  role: { type: "string" },
  out: { type: "string" },
  days: { type: "string" },
  force: { type: "boolean", default: false },
} as const;

function readCa(dir: string): { cert: string; key: string } {
  const read = (f: string) => {
    try {
      return readFileSync(join(dir, f), "utf8");
    } catch (e) {
      throw new UsageError(`cannot read ${join(dir, f)} (${(e as { code?: string }).code ?? (e as Error).message}): --ca names the directory with the CA's ca.pem and ca.key`);
    }
  };
  return { cert: read("ca.pem"), key: read("ca.key") };
}

export async function tlsClient(argv: string[]): Promise<number> {
  const { values } = parse(argv, OPTIONS, TLS_CLIENT_USAGE);
  for (const f of ["ca", "name", "role", "out"] as const) if (!values[f]) throw new UsageError(`--${f} is required\n\n${TLS_CLIENT_USAGE}`);
  const role = values.role!;
  if (role !== "read" && role !== "write" && role !== "admin") throw new UsageError(`--role must be read, write or admin, got ${JSON.stringify(role)}`);
  const days = intOption(values.days, "days", 365, { min: 1, max: 36500 });
  const out = resolve(values.out!);
  const paths = { cert: join(out, `${values.name}.pem`), key: join(out, `${values.name}.key`) };
  if (!values.force && (existsSync(paths.cert) || existsSync(paths.key))) throw new UsageError(`${paths.cert} or its key exists already: pass --force to replace it`);
  let made;
  try {
    made = await createClientCert({ ca: readCa(resolve(values.ca!)), name: values.name!, role: role as ClientRole, days });
  } catch (e) {
    if (e instanceof CertParamsError) throw new UsageError(e.message);
    throw e;
  }
  mkdirSync(out, { recursive: true });
  writeFileSync(paths.cert, made.cert);
  writeFileSync(paths.key, made.key, { mode: 0o600 });
  chmodSync(paths.key, 0o600);
  console.log(`wrote ${paths.cert} and ${paths.key} (client "${values.name}", role ${role}, ${days} days)`);
  return 0;
}
