/**
 * cbor-x's native string extractor (cbor-extract, an N-API add-on): faster
 * decoding of string-heavy CBOR. cairn imports cbor-x by its encode/decode
 * entry points, which never load it; loadNativeCbor() imports the package
 * root, whose loader installs the extractor for every Decoder in this
 * process when the add-on loads (and keeps the JS decoder when it does not).
 * With the pinned cbor-extract 2.2.2 it loads under Bun 1.4 and Deno 2.9
 * (test/platform/cbor.test.ts checks both); the older prebuilt crashed them.
 * A compiled binary finds the add-on only where node_modules is (it is not
 * embedded): elsewhere it runs the JS decoder. /status says which one runs.
 *
 * Measured on a changes batch (100 items, 18 KB): under Bun the add-on decodes
 * about 1.5-2x faster; under Deno it loads and decodes correctly but no
 * faster (slower in most runs: N-API calls cost more there), so Deno keeps
 * the JS decoder unless asked. CAIRN_CBOR=native|js overrides.
 */
export type CborImpl = "native" | "js";

declare const Deno: unknown;

/** The decoder to try for: CAIRN_CBOR, else native on Bun and JS on Deno (see above). */
export function preferredCbor(env: Record<string, string | undefined>): CborImpl {
  if (env.CAIRN_CBOR === "native" || env.CAIRN_CBOR === "js") return env.CAIRN_CBOR;
  return typeof Deno !== "undefined" ? "js" : "native";
}

let impl: CborImpl = "js";

/** Which decoder this process runs. */
export function cborImpl(): CborImpl {
  return impl;
}

/** Loads the native extractor once when preferred; answers which decoder runs (once native, always native). */
export async function loadNativeCbor(env: Record<string, string | undefined> = process.env): Promise<CborImpl> {
  if (impl === "native" || preferredCbor(env) === "js") return impl;
  try {
    // The root's loader catches a missing or unloadable add-on itself; this catch is for the import.
    const root = (await import("cbor-x")) as { isNativeAccelerationEnabled: boolean };
    impl = root.isNativeAccelerationEnabled ? "native" : "js";
  } catch {
    impl = "js";
  }
  return impl;
}
