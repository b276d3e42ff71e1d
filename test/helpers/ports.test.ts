import { expect, test } from "bun:test";
import { createServer } from "node:net";
import { ephemeralPortRange, freePort, freePortRun } from "./ports.ts";

const outsideEphemeral = (port: number): boolean => {
  const { lo, hi } = ephemeralPortRange();
  return port < lo || port > hi;
};

test("test ports are chosen outside the kernel's ephemeral range, so an outgoing connection cannot hold one before it is bound", async () => {
  for (let i = 0; i < 50; i++) expect(outsideEphemeral(await freePort())).toBe(true);
  const start = await freePortRun(10);
  expect(outsideEphemeral(start)).toBe(true);
  expect(outsideEphemeral(start + 9)).toBe(true);
});

test("a run of free ports skips a port that is in use", async () => {
  const start = await freePortRun(3);
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(start + 1, "127.0.0.1", () => r()));
  try {
    for (let i = 0; i < 20; i++) {
      const s = await freePortRun(3);
      expect(s + 2 < start + 1 || s > start + 1).toBe(true);
    }
  } finally {
    await new Promise<void>((r) => srv.close(() => r()));
  }
});
