/** Tables for the terminal: cli-table3 with a header rule only (no line between rows). */
import Table from "cli-table3";

export function table(head: string[], colAligns?: ("left" | "right" | "center")[]): Table.Table {
  return new Table({
    head,
    ...(colAligns ? { colAligns } : {}),
    style: { head: [], border: [], compact: true },
  });
}
