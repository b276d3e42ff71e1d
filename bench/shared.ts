/**
 * What the wrk and growth benchmarks take from the test harness, in one place
 * (so that moving the harness changes only this file).
 */
export { BINARY, E2ECluster, ROOT, Writer, ensureBinary } from "../harness/cluster.ts";
export { waitFor } from "../harness/ports.ts";
