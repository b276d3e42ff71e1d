/**
 * The one way into @peculiar/x509 at run time: installs the Reflect metadata
 * shim, then loads the library with a dynamic import.
 *
 * Why dynamic: Bun resolves "@peculiar/x509" to its CommonJS build and
 * evaluates CommonJS dependencies before the ES modules that import them, so a
 * static `import "./reflect-shim.ts"` placed first does NOT run first there,
 * and tsyringe (loaded by x509) throws "tsyringe requires a reflect polyfill".
 * A dynamic import after the shim is ordered the same under Bun and Deno.
 * Types come from `import type`, which is erased.
 */
import "./reflect-shim.ts";
import type * as X509 from "@peculiar/x509";

export type X509Module = typeof X509;

let loading: Promise<X509Module> | undefined;

export function loadX509(): Promise<X509Module> {
  loading ??= import("@peculiar/x509");
  return loading;
}
