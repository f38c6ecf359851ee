// `node --import ./test/ts-register.mjs src/cli/bin.ts`: runs pimc from its TypeScript sources, for
// the few end-to-end tests that spawn the bin (see pimcE2E in test/util.ts). No build, no stale dist/.
import { register } from "node:module";

register("./ts-hooks.mjs", import.meta.url);
