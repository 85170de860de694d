import { readFileSync, statSync } from "node:fs";

// Marketplace credentials come from an environment variable or a file, never from a flag (a flag's value is
// visible to every user of the machine in `ps`). A file is re-read when it changes, so a token refreshed by
// another process (Shopee's last 4 hours) is picked up without a restart. A Secret never prints its value.

/** How often a file secret's mtime is checked: a refreshed token is used within 5 s; a stat every 5 s is free. */
export const secretCheckMs = 5000;
/** A credential is a short string; a bigger file is the wrong file. */
export const secretBytesMax = 16 * 1024;
/** Shorter values are not masked in texts (they would mask ordinary words); no real credential is this short. */
const maskCharsMin = 6;

export class SecretError extends Error {
  override name = "SecretError";
}

export class Secret {
  #value: string;
  #mtimeMs = 0;
  #checkedAtMs = 0;

  private constructor(
    value: string,
    private readonly file: string | null,
    /** Where it comes from, for messages: an environment variable's name or a file's path. */
    readonly origin: string,
  ) {
    this.#value = value;
  }

  static fromEnv(name: string, value: string): Secret {
    if (value.trim() === "") throw new SecretError(`${name} is empty: set it to the credential`);
    return new Secret(value.trim(), null, name);
  }

  /** Reads the file now (a SecretError says why it cannot be used). */
  static fromFile(path: string, nowMs = Date.now()): Secret {
    const s = new Secret("", path, path);
    s.load(nowMs);
    return s;
  }

  /** The value, re-read first if the file changed (checked at most every secretCheckMs). */
  reveal(nowMs = Date.now()): string {
    if (this.file !== null && nowMs - this.#checkedAtMs >= secretCheckMs) {
      try {
        this.load(nowMs);
      } catch {
        // Mid-rotation (file replaced, briefly empty): keep the last good value; the next check reads again.
        this.#checkedAtMs = nowMs;
      }
    }
    return this.#value;
  }

  private load(nowMs: number): void {
    const path = this.file as string;
    this.#checkedAtMs = nowMs;
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch (error) {
      throw new SecretError(`cannot read ${path}: ${(error as Error).message}`);
    }
    if (st.mtimeMs === this.#mtimeMs && this.#value !== "") return;
    if (st.size > secretBytesMax)
      throw new SecretError(`${path} is over ${secretBytesMax} bytes: not a credential`);
    const value = readFileSync(path, "utf8").trim();
    if (value === "") throw new SecretError(`${path} is empty: write the credential in it`);
    this.#value = value;
    this.#mtimeMs = st.mtimeMs;
  }

  /** Replaces the value wherever it occurs in `text` (an error message, an echoed request). */
  mask(text: string): string {
    const v = this.#value;
    return v.length < maskCharsMin ? text : text.split(v).join("[secret]");
  }

  toString(): string {
    return "[secret]";
  }
  toJSON(): string {
    return "[secret]";
  }
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return "[secret]";
  }
}

/** Masks every secret's value in `text`. */
export function maskSecrets(text: string, secrets: Secret[]): string {
  return secrets.reduce((t, s) => s.mask(t), text);
}
