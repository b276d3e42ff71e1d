/** A RaftStore + Applier + CairnFsm on a fresh temp dir, fed entries with consecutive Raft indexes. */
import type { Entry } from "../../src/raft/types.ts";
import { CairnFsm } from "../../src/statemachine/cairn.ts";
import { encodeCommand, type Command, type CommandResult, type Replayed } from "../../src/statemachine/commands.ts";
import { Applier, type Fsm } from "../../src/statemachine/fsm.ts";
import { RaftStore } from "../../src/storage/store.ts";

export class Node {
  store: RaftStore;
  fsm: CairnFsm;
  applier: Applier;
  term = 1;

  constructor(readonly dir: string, fsm?: Fsm) {
    this.store = RaftStore.open({ dir });
    this.fsm = new CairnFsm();
    this.applier = new Applier({ store: this.store, fsm: fsm ?? this.fsm });
  }

  /** Wraps commands (or raw payloads) as the next Raft entries and applies them in one batch. */
  applyAll(items: (Command | Uint8Array)[]): Replayed<CommandResult>[] {
    const first = this.applier.appliedIndex() + 1;
    const entries: Entry[] = items.map((c, k) => ({
      index: first + k,
      term: this.term,
      kind: "normal",
      data: c instanceof Uint8Array ? c : encodeCommand(c),
    }));
    const results = this.applier.apply(entries);
    return entries.map((e) => results.get(e.index) as Replayed<CommandResult>);
  }

  apply(cmd: Command | Uint8Array): Replayed<CommandResult> {
    return this.applyAll([cmd])[0]!;
  }

  reopen(fsm?: Fsm): void {
    this.store.close();
    this.store = RaftStore.open({ dir: this.dir });
    this.fsm = new CairnFsm();
    this.applier = new Applier({ store: this.store, fsm: fsm ?? this.fsm });
  }

  close(): void {
    this.store.close();
  }
}

export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
