/** Run under Deno by srv.test.ts: one lookupSrv against the DNS server given, printed as JSON. */
import { lookupSrv } from "../../src/discovery/srv.ts";

const [srv, server] = process.argv.slice(2);
const a = await lookupSrv({ srv: srv!, server: server!, intervalMs: 1000 });
console.log(JSON.stringify(a));
