/** A FIFO of encoded frames with O(1) push and shift, and its byte total. */
export class FrameQueue {
  private items: (Uint8Array | undefined)[] = [];
  private head = 0;
  private byteCount = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  get bytes(): number {
    return this.byteCount;
  }

  push(frame: Uint8Array): void {
    this.items.push(frame);
    this.byteCount += frame.byteLength;
  }

  peek(): Uint8Array | undefined {
    return this.items[this.head];
  }

  shift(): Uint8Array | undefined {
    const frame = this.items[this.head];
    if (frame === undefined) return undefined;
    this.items[this.head] = undefined;
    this.head++;
    this.byteCount -= frame.byteLength;
    // Compact once the consumed prefix dominates, so memory stays proportional to the length.
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return frame;
  }

  /** Empties the queue; returns how many frames it held. */
  clear(): number {
    const n = this.length;
    this.items = [];
    this.head = 0;
    this.byteCount = 0;
    return n;
  }
}
