/**
 * Invariant checks that stay on in production (TigerBeetle style).
 * A failed assertion means cairn's own logic is wrong: the process must stop
 * rather than go on with state it can no longer trust.
 */
export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) {
    throw new AssertionError(typeof message === "function" ? message() : message);
  }
}

/** Marks a switch arm that the type checker proves unreachable. */
export function unreachable(value: never, what: string): never {
  throw new AssertionError(`unreachable ${what}: ${JSON.stringify(value)}`);
}
