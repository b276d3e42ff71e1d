/** Process-level differences: signals and exit. */
declare const Deno: { addSignalListener(sig: string, fn: () => void): void } | undefined;

/** Runs `fn` once on the first of SIGTERM / SIGINT. */
export function onTerminate(fn: (signal: string) => void): void {
  let fired = false;
  const handler = (sig: string) => () => {
    if (fired) return;
    fired = true;
    fn(sig);
  };
  for (const sig of ["SIGTERM", "SIGINT"]) {
    if (typeof Deno !== "undefined") Deno.addSignalListener(sig, handler(sig));
    else process.on(sig, handler(sig));
  }
}
