// Structured logs: one JSON object per line on stdout, `level` and `msg` first, fields after.
export type LogLevel = "debug" | "info" | "warn" | "error";
const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export class Logger {
  constructor(
    private readonly level: LogLevel,
    private readonly base: Fields = {},
    private readonly write: (line: string) => void = (line) => process.stdout.write(line),
  ) {}

  child(fields: Fields): Logger {
    return new Logger(this.level, { ...this.base, ...fields }, this.write);
  }

  enabled(level: LogLevel): boolean {
    return rank[level] >= rank[this.level];
  }

  debug(msg: string, fields?: Fields): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.log("error", msg, fields);
  }

  private log(level: LogLevel, msg: string, fields?: Fields): void {
    if (!this.enabled(level)) return;
    const record = { ts: new Date().toISOString(), level, msg, ...this.base, ...fields };
    this.write(`${JSON.stringify(record, replacer)}\n`);
  }
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  if (typeof value === "bigint") return value.toString();
  return value;
}

export function isLogLevel(v: string): v is LogLevel {
  return v in rank;
}
