import { expect, test } from "bun:test";
import { renderConfigDocs } from "../../scripts/gen-config-docs.ts";
import { envName, schema } from "../../src/config/index.ts";

const page = new URL("../../docs/configuration.md", import.meta.url);

test("docs/configuration.md is what scripts/gen-config-docs.ts generates (run it to update the page)", async () => {
  const committed = await Bun.file(page).text();
  expect(committed).toBe(renderConfigDocs());
});

test("the page names every setting with its environment variable", () => {
  const rendered = renderConfigDocs();
  for (const [section, fields] of Object.entries(schema)) {
    for (const key of Object.keys(fields)) {
      expect(rendered).toContain(`| \`${key}\` | \`${envName(section, key)}\` |`);
    }
  }
});
