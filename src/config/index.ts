export type { LoadOptions } from "./load.ts";
export {
  assertRelations,
  ConfigError,
  defaultConfigFile,
  envName,
  loadConfig,
  printable,
  relations,
} from "./load.ts";
export type { Config } from "./schema.ts";
export { schema } from "./schema.ts";
