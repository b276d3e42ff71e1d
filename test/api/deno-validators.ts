/** Run under Deno by validators.test.ts: one validated write's outcome against the validator URLs given, printed as JSON. */
import { Validators } from "../../src/api/validators.ts";
import { VALIDATOR_DEFAULTS } from "../../src/discovery/schema.ts";
import { encodeCommand } from "../../src/statemachine/commands.ts";
import { Logger } from "../../src/util/log.ts";

const out: string[] = [];
for (const url of process.argv.slice(2)) {
  const v = new Validators({ validators: [{ ...VALIDATOR_DEFAULTS, url, tags: ["orders"], timeoutMs: 300 }], cluster: "c", nodeId: "d1", log: new Logger({ level: "error", sink: () => {} }) });
  try {
    await v.check(encodeCommand({ op: "changes", items: [{ data: { n: 1 }, tags: ["orders"] }], ts: 1 }));
    out.push("accepted");
  } catch (e) {
    out.push((e as Error).message);
  }
}
console.log(JSON.stringify(out));
