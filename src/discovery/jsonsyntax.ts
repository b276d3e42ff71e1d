/**
 * A strict JSON checker that says where a text goes wrong, with line and
 * column. `JSON.parse` error messages differ between Bun (no position) and
 * Deno, so an operator who mistypes the cluster file would get a different,
 * often position-less, message on each runtime; this gives the same one.
 * It also reports duplicate keys, which `JSON.parse` silently resolves to the
 * last one (a second "raft" block would otherwise win without a word).
 *
 * It only checks; values are built by `JSON.parse` once this finds nothing.
 */

export interface JsonProblem {
  /** Offset in UTF-16 code units. */
  readonly offset: number;
  /** 1-based. */
  readonly line: number;
  /** 1-based, in characters (UTF-16 code units) from the start of the line. */
  readonly column: number;
  readonly message: string;
}

/** Deeper nesting than this is refused (a limit on the recursion). */
export const JSON_DEPTH_MAX = 64;

class Stop {
  constructor(
    readonly offset: number,
    readonly message: string,
  ) {}
}

/** The first syntax problem or duplicate key of `text`, or null if it is valid JSON. */
export function findJsonProblem(text: string): JsonProblem | null {
  const s = new Scanner(text);
  try {
    s.ws();
    s.value(0);
    s.ws();
    if (s.pos < text.length) s.fail(`unexpected ${s.describeHere()} after the end of the JSON value`);
    return null;
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
    return { offset: e.offset, ...lineColumn(text, e.offset), message: e.message };
  }
}

export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class Scanner {
  pos = 0;
  constructor(readonly text: string) {}

  fail(message: string, at: number = this.pos): never {
    throw new Stop(at, message);
  }

  describeHere(): string {
    if (this.pos >= this.text.length) return "end of file";
    const c = this.text[this.pos] ?? "";
    if (c === "/" && (this.text[this.pos + 1] === "/" || this.text[this.pos + 1] === "*")) {
      return "comment (JSON has no comments)";
    }
    return JSON.stringify(c);
  }

  ws(): void {
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.pos++;
    }
  }

  value(depth: number): void {
    if (depth > JSON_DEPTH_MAX) this.fail(`nesting deeper than ${JSON_DEPTH_MAX} levels`);
    const c = this.text[this.pos];
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return void this.string();
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
    for (const lit of ["true", "false", "null"]) {
      if (this.text.startsWith(lit, this.pos)) {
        this.pos += lit.length;
        return;
      }
    }
    if (c === "'") this.fail("strings must be in double quotes, not single quotes");
    this.fail(`expected a value, found ${this.describeHere()}`);
  }

  object(depth: number): void {
    this.pos++; // "{"
    const seen = new Map<string, number>();
    this.ws();
    if (this.text[this.pos] === "}") return void this.pos++;
    for (;;) {
      this.ws();
      this.key(seen);
      this.ws();
      this.value(depth + 1);
      this.ws();
      const c = this.text[this.pos];
      if (c === "}") return void this.pos++;
      if (c !== ",") this.fail(`expected "," or "}" after a property value, found ${this.describeHere()}`);
      const comma = this.pos++;
      this.ws();
      if (this.text[this.pos] === "}") this.fail('trailing comma before "}" (JSON does not allow one)', comma);
    }
  }

  key(seen: Map<string, number>): void {
    const at = this.pos;
    if (this.text[at] !== '"') {
      this.fail(`expected a property name in double quotes, found ${this.describeHere()}`);
    }
    const name = this.string();
    const first = seen.get(name);
    if (first !== undefined) {
      const p = lineColumn(this.text, first);
      this.fail(`duplicate key ${JSON.stringify(name)} (first at line ${p.line}, column ${p.column})`, at);
    }
    seen.set(name, at);
    this.ws();
    if (this.text[this.pos] !== ":") this.fail(`expected ":" after property name ${JSON.stringify(name)}, found ${this.describeHere()}`);
    this.pos++;
    this.ws();
  }

  array(depth: number): void {
    this.pos++; // "["
    this.ws();
    if (this.text[this.pos] === "]") return void this.pos++;
    for (;;) {
      this.ws();
      this.value(depth + 1);
      this.ws();
      const c = this.text[this.pos];
      if (c === "]") return void this.pos++;
      if (c !== ",") this.fail(`expected "," or "]" after an array element, found ${this.describeHere()}`);
      const comma = this.pos++;
      this.ws();
      if (this.text[this.pos] === "]") this.fail('trailing comma before "]" (JSON does not allow one)', comma);
    }
  }

  /** Scans a string starting at its opening quote; returns its decoded value. */
  string(): string {
    const start = this.pos++;
    for (;;) {
      if (this.pos >= this.text.length) this.fail("unterminated string (missing closing quote)", start);
      const c = this.text.charCodeAt(this.pos);
      if (c === 0x22) break;
      if (c < 0x20) this.fail("control character in a string (write a newline as \\n)");
      if (c === 0x5c) this.escape();
      else this.pos++;
    }
    this.pos++;
    return JSON.parse(this.text.slice(start, this.pos)) as string;
  }

  escape(): void {
    const e = this.text[this.pos + 1];
    if (e !== undefined && '"\\/bfnrt'.includes(e)) {
      this.pos += 2;
      return;
    }
    if (e === "u" && /^[0-9a-fA-F]{4}$/.test(this.text.slice(this.pos + 2, this.pos + 6))) {
      this.pos += 6;
      return;
    }
    this.fail("invalid escape in a string (a Windows path needs \\\\ or /)");
  }

  number(): void {
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.text);
    if (!m || m[0] === "-") this.fail(`invalid number, found ${this.describeHere()}`);
    this.pos += m[0].length;
  }
}
