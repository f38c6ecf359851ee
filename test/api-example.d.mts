/** docs/api.md's first ```js block and the ```text block after it (its output). */
export function apiExample(doc: string): { code: string; output: string };
