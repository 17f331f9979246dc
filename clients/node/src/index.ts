/**
 * @chainrule/client: a typed, promise-based client for the chainrule differentiation service.
 *
 *     import { ChainruleClient } from "@chainrule/client";
 *     const client = new ChainruleClient("127.0.0.1:50051");
 *     const { derivative } = await client.differentiate("sin(x^2)"); // "2*x*cos(x^2)"
 *     client.close();
 */
export * from "./client.js";
export * from "./errors.js";
export type { Column, ColumnInput } from "./arrays.js";
export type { Chunking } from "./chunks.js";
export { OutputFormat, Simplification } from "./generated/chainrule/v1/chainrule.js";
