// docs/api.md's example and the output the doc shows for it (test/consumer.mjs, test/api.test.ts).

/** The doc's first ```js block and the ```text block after it. */
export function apiExample(doc) {
  const js = /```js\n([\s\S]*?)```/.exec(doc);
  const out = js && /```text\n([\s\S]*?)```/.exec(doc.slice(js.index + js[0].length));
  if (!js || !out) throw new Error("docs/api.md: no ```js example followed by a ```text output block");
  return { code: js[1], output: out[1] };
}
