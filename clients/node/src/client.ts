/**
 * `ChainruleClient`: promise-based calls to a chainrule server, with deadlines, retries on
 * UNAVAILABLE and on overload (retry.ts), TLS and bearer-token options.
 */
import { ChannelCredentials, credentials as grpcCredentials, Metadata, type ServiceError } from "@grpc/grpc-js";

import {
  type Column,
  type ColumnInput,
  checkedText,
  checkedTexts,
  decodeColumn,
  encodeColumn,
  encodePoint,
} from "./arrays.js";
import { type Chunking, concatenate, inOrder, split } from "./chunks.js";
import { type ChainruleError, UnimplementedError, errorFromServiceError, unimplemented } from "./errors.js";
import {
  type Array as ArrayMessage,
  type ChainRule as ChainRuleMessage,
  type Check as CheckMessage,
  Check_Method,
  Check_Verdict,
  DifferentiationServiceClient,
  type Formula as FormulaMessage,
  OutputFormat,
  Simplification,
  type Step as StepMessage,
  Step_Rule,
  type Wrt,
} from "./generated/chainrule/v1/chainrule.js";
import { DEFAULT_RETRY, type RetryPolicy, retryDelay } from "./retry.js";

export type { RetryPolicy } from "./retry.js";

/** `"x"`, `{ x: 2, y: 1 }` or `[["x", 2], ["y", 1]]` (a bare name means order 1). */
export type WrtSpec = string | Readonly<Record<string, number>> | ReadonlyArray<readonly [string, number] | string>;
export type SimplificationName = "none" | "fast" | "full";
export type Point = Readonly<Record<string, number>>;
export type Points = Readonly<Record<string, ColumnInput>>;

export interface TlsOptions {
  /** PEM roots to trust; the system's roots when absent. */
  rootCerts?: Buffer;
  /** PEM private key and certificate chain, both or neither, for mutual TLS. */
  privateKey?: Buffer;
  certChain?: Buffer;
}

export interface ClientOptions {
  /** Default deadline of each call in ms (default 10000); `null` means no deadline. */
  timeoutMs?: number | null;
  retry?: Partial<RetryPolicy>;
  /** `true` for TLS with the system's roots, or the certificates to use. */
  tls?: boolean | TlsOptions;
  /** Full control over the channel credentials (overrides `tls`). */
  credentials?: ChannelCredentials;
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  /** Extra headers on every call. */
  metadata?: Readonly<Record<string, string>>;
  /** Largest message sent or received, in bytes (default 512 MiB). */
  maxMessageBytes?: number;
}

export interface CallOptions {
  /** This call's deadline in ms, overriding the client's; `null` means no deadline. */
  timeoutMs?: number | null;
}

/** Output formats besides text: LaTeX, MathML, and the derivative as code. */
export type FormatName = "latex" | "mathml" | "python" | "c" | "javascript";

export interface DifferentiateOptions extends CallOptions {
  wrt?: WrtSpec;
  simplification?: SimplificationName;
  latex?: boolean;
  /** Also return the derivation, step by step (`steps`). */
  explain?: boolean;
  /** Also return a numeric self-check of the derivative (`check`). */
  verify?: boolean;
  /** Formats wanted besides text; code formats fill `code` (FAILED_PRECONDITION if a function is missing). */
  formats?: readonly FormatName[];
  /**
   * Implicit differentiation: the expression is an equation (`"x^2 + y^2 = 25"`) that defines this
   * variable as a function of the one `wrt` variable (by default its only other one).
   */
  dependent?: string;
}

/** One expression as text in chainrule's grammar and as LaTeX. */
export interface Formula {
  text: string;
  latex: string;
}

/** One layer of the chain rule: d/dx f(g(x)) = f'(g(x)) * g'(x); `factors` has one factor per layer. */
export interface ChainRuleLayer {
  outerRule: string;
  outer: Formula;
  inner: Formula;
  outerDerivativeOfU: Formula;
  outerDerivative: Formula;
  innerDerivative: Formula;
  product: Formula;
  factors: Formula[];
}

/** One step: `rule` ("chain", "product", ...) takes d/d`variable` of `expression` to `result`. */
export interface DerivationStep {
  rule: string;
  variable: string;
  order: number;
  expression: Formula;
  result: Formula;
  /** Indices into `steps` of the steps whose results this one uses. */
  dependsOn: number[];
  description: string;
  chain?: ChainRuleLayer;
}

/** The server's numeric self-check; `verdict` is "ok", "mismatch" or "inconclusive". */
export interface NumericCheck {
  verdict: string;
  method: string;
  maxRelativeError: number;
  tolerance: number;
  points: { point: Record<string, number>; symbolic: number; numeric: number; relativeError: number }[];
}

/** The derivative as a function in `format` ("python", "c" or "javascript"). */
export interface GeneratedCode {
  format: string;
  source: string;
  functionName: string;
  parameters: string[];
}

export interface EvaluateOptions extends CallOptions, Chunking {
  /** One point: a value for each variable. */
  point?: Point;
  /** Many points: a column for each variable (a single number broadcasts). */
  points?: Points;
  /** Evaluate this derivative of the expression instead. */
  wrt?: WrtSpec;
  /** With `wrt`: the implicit derivative, as in `differentiate`, at points giving both variables. */
  dependent?: string;
}

export interface GradientOptions extends CallOptions, Chunking {
  point?: Point;
  points?: Points;
  /** The gradient's variables, in order; all free variables, sorted, when absent. */
  variables?: readonly string[];
  hessian?: boolean;
}

export interface JacobianOptions extends CallOptions, Chunking {
  point?: Point;
  points?: Points;
  /** The columns' variables, in order; all free variables of all expressions, sorted, when absent. */
  variables?: readonly string[];
}

export interface SeriesOptions extends CallOptions {
  /** The variable to expand in; the expression's only one when absent. */
  variable?: string;
  /** An exact constant in chainrule's grammar (`"pi/2"`, `"1/2"`) or a number; 0 when absent. */
  around?: string | number;
  /** The polynomial's degree; the server's default (5) when absent. */
  order?: number;
  latex?: boolean;
}

/** Values and Jacobian of several expressions, at one point or at many. */
export interface Jacobian {
  variables: string[];
  nonfiniteCount: number;
  /** One point: one value per expression, and the m-by-n matrix as rows. */
  values?: number[];
  jacobian?: number[][];
  /** Many points: one column per expression, and an m-by-n grid of columns. */
  valueArrays?: Column[];
  jacobianArrays?: Column[][];
}

/** A Taylor polynomial: `coefficients[k]` multiplies (variable - around)^k, exactly. */
export interface Series {
  series: string;
  variable: string;
  coefficients: string[];
  /** The order of the omitted terms, e.g. `O((x - pi/2)^3)`. */
  remainder: string;
  /** Present only when `latex: true` was asked for. */
  latex?: string;
}

export interface Derivative {
  derivative: string;
  /** Present only when `latex: true` was asked for. */
  latex?: string;
  variables: string[];
  /** With `explain: true`: the derivation; its last result is `derivative`. */
  steps?: DerivationStep[];
  /** With `verify: true`: the numeric self-check. */
  check?: NumericCheck;
  /** With `formats: ["mathml"]`: presentation MathML. */
  mathml?: string;
  /** With code formats: one function per format asked for. */
  code?: GeneratedCode[];
}

export interface Evaluation {
  /** The value at a single point. */
  value?: number;
  /** The values at many points: a Float64Array if any input column was one, else number[]. */
  values?: Column;
  nonfiniteCount: number;
}

export interface Gradient {
  variables: string[];
  nonfiniteCount: number;
  /** One point: value, gradient aligned with `variables`, Hessian rows (when asked). */
  value?: number;
  gradient?: number[];
  hessian?: number[][];
  /** Many points: values, one column per variable, and an n-by-n grid of columns (when asked). */
  values?: Column;
  gradients?: Column[];
  hessians?: Column[][];
}

export interface Limit {
  name: string;
  maximum: number;
  description: string;
}

export interface ServerInfo {
  version: string;
  limits: Limit[];
  functions: string[];
  constants: string[];
  /** Lower-case names, e.g. `["text", "latex"]`. */
  outputFormats: string[];
  /** Lower-case names, e.g. `["none", "fast", "full"]`. */
  simplifications: string[];
  /** For each output format (lower-case name), the function names it can express. */
  formatSupport: Record<string, string[]>;
}

/** Why, and where, a text is not an expression the server accepts. */
export interface ExpressionError {
  /** `"PARSE_ERROR"`, `"UNKNOWN_FUNCTION"` or `"LIMIT_EXCEEDED"`. */
  reason: string;
  message: string;
  /** A 0-based offset in Unicode code points (not UTF-16 units); absent for a limit without a place. */
  position?: number;
  metadata: Record<string, string>;
}

/**
 * How the server reads a text: canonical text, LaTeX and variables, or `error`. A text that does
 * not parse is an answer, not a rejected promise: `parse` is made for checking text as it is typed.
 */
export interface Parsed {
  canonical: string;
  latex: string;
  variables: string[];
  error?: ExpressionError;
}

export const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024 * 1024; // room above the server's default reply limit (64 MiB)

const SIMPLIFICATIONS: Readonly<Record<SimplificationName, Simplification>> = {
  none: Simplification.SIMPLIFICATION_NONE,
  fast: Simplification.SIMPLIFICATION_FAST,
  full: Simplification.SIMPLIFICATION_FULL,
};

/** The largest order a request can carry (a uint32 field; the server's limit is far below). */
const MAX_ORDER = 0xffffffff;

function isOrder(order: unknown): order is number {
  return Number.isInteger(order) && (order as number) >= 0 && (order as number) <= MAX_ORDER;
}

/** Normalise the ways of naming variables and orders into `Wrt` messages. */
export function wrtMessages(wrt: WrtSpec | undefined): Wrt[] {
  if (wrt === undefined) return [];
  if (typeof wrt === "string") return [{ variable: wrt, order: 1 }];
  const entries: ReadonlyArray<readonly [string, number] | string> = Array.isArray(wrt)
    ? wrt
    : Object.entries(wrt as Record<string, number>);
  return entries.map((entry) => {
    const [variable, order] = typeof entry === "string" ? [entry, 1] : entry;
    if (typeof variable !== "string" || !isOrder(order)) {
      throw new TypeError(`wrt entries are [variable, order 0..${MAX_ORDER}], got ${JSON.stringify(entry)}`);
    }
    return { variable, order };
  });
}

function encodePoints(points: Points | undefined): Record<string, ArrayMessage> {
  const encoded: Record<string, ArrayMessage> = {};
  for (const [name, column] of Object.entries(points ?? {})) encoded[name] = encodeColumn(column, name);
  return encoded;
}

/** One `Gradient` from the answers of consecutive slices (a slice of one point may answer as one). */
function joinGradients(parts: Gradient[], asFloat64: boolean, hessian: boolean): Gradient {
  const n = parts[0].variables.length;
  const values = parts.map((p) => p.values ?? [p.value ?? NaN]);
  const gradients = parts.map((p) => p.gradients ?? (p.gradient ?? []).map((v) => [v]));
  const result: Gradient = {
    variables: parts[0].variables,
    nonfiniteCount: parts.reduce((sum, part) => sum + part.nonfiniteCount, 0),
    values: concatenate(values, asFloat64),
    gradients: Array.from({ length: n }, (_, i) => concatenate(gradients.map((g) => g[i]), asFloat64)),
  };
  if (hessian) {
    const grids = parts.map((p) => p.hessians ?? (p.hessian ?? []).map((row) => row.map((v) => [v])));
    result.hessians = Array.from({ length: n }, (_, i) =>
      Array.from({ length: n }, (_, j) => concatenate(grids.map((grid) => grid[i][j]), asFloat64)),
    );
  }
  return result;
}

/** One `Jacobian` from the answers of consecutive slices (a slice of one point may answer as one). */
function joinJacobians(parts: Jacobian[], asFloat64: boolean): Jacobian {
  const n = parts[0].variables.length;
  const values = parts.map((p) => p.valueArrays ?? (p.values ?? []).map((v) => [v]));
  const grids = parts.map((p) => p.jacobianArrays ?? (p.jacobian ?? []).map((row) => row.map((v) => [v])));
  return {
    variables: parts[0].variables,
    nonfiniteCount: parts.reduce((sum, part) => sum + part.nonfiniteCount, 0),
    valueArrays: values[0].map((_, i) => concatenate(values.map((v) => v[i]), asFloat64)),
    jacobianArrays: grids[0].map((_, i) =>
      Array.from({ length: n }, (_, j) => concatenate(grids.map((grid) => grid[i][j]), asFloat64)),
    ),
  };
}

function wantsFloat64Array(points: Points | undefined): boolean {
  return Object.values(points ?? {}).some((column) => column instanceof Float64Array);
}

function square<T>(items: readonly T[], n: number): T[][] {
  return Array.from({ length: n }, (_, row) => items.slice(row * n, (row + 1) * n));
}

/** Row-major entries as rows of `n` (an m-by-n matrix; m follows from the length). */
function rows<T>(items: readonly T[], n: number): T[][] {
  return n === 0 ? [] : Array.from({ length: items.length / n }, (_, row) => items.slice(row * n, (row + 1) * n));
}

const FORMATS: Readonly<Record<FormatName, OutputFormat>> = {
  latex: OutputFormat.OUTPUT_FORMAT_LATEX,
  mathml: OutputFormat.OUTPUT_FORMAT_MATHML,
  python: OutputFormat.OUTPUT_FORMAT_PYTHON,
  c: OutputFormat.OUTPUT_FORMAT_C,
  javascript: OutputFormat.OUTPUT_FORMAT_JAVASCRIPT,
};

function enumName(value: number, names: Record<number, string>, prefix: string): string {
  return enumNames([value], names, prefix)[0] ?? String(value);
}

function formula(message: FormulaMessage | undefined): Formula {
  return { text: message?.text ?? "", latex: message?.latex ?? "" };
}

function chainLayer(c: ChainRuleMessage): ChainRuleLayer {
  return {
    outerRule: enumName(c.outerRule, Step_Rule, "RULE_"),
    outer: formula(c.outer),
    inner: formula(c.inner),
    outerDerivativeOfU: formula(c.outerDerivativeOfU),
    outerDerivative: formula(c.outerDerivative),
    innerDerivative: formula(c.innerDerivative),
    product: formula(c.product),
    factors: c.factors.map(formula),
  };
}

function derivationStep(step: StepMessage): DerivationStep {
  const result: DerivationStep = {
    rule: enumName(step.rule, Step_Rule, "RULE_"),
    variable: step.variable,
    order: step.order,
    expression: formula(step.expression),
    result: formula(step.result),
    dependsOn: step.dependsOn,
    description: step.description,
  };
  if (step.chain !== undefined) result.chain = chainLayer(step.chain);
  return result;
}

function numericCheck(check: CheckMessage): NumericCheck {
  return {
    verdict: enumName(check.verdict, Check_Verdict, "VERDICT_"),
    method: enumName(check.method, Check_Method, "METHOD_"),
    maxRelativeError: check.maxRelativeError,
    tolerance: check.tolerance,
    points: check.points.map((p) => ({
      point: { ...p.point },
      symbolic: p.symbolic,
      numeric: p.numeric,
      relativeError: p.relativeError,
    })),
  };
}

function enumNames<E extends number>(values: readonly E[], names: Record<number, string>, prefix: string): string[] {
  return values.filter((v) => v > 0 && names[v] !== undefined).map((v) => names[v]!.slice(prefix.length).toLowerCase());
}

type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: { deadline?: Date },
  callback: (error: ServiceError | null, response: Res) => void,
) => unknown;

/** A promise-based chainrule client over one gRPC channel. */
export class ChainruleClient {
  readonly target: string;
  private readonly stub: DifferentiationServiceClient;
  private readonly timeoutMs: number | null;
  private readonly retry: RetryPolicy;
  private readonly metadata: Metadata;

  constructor(target = "127.0.0.1:50051", options: ClientOptions = {}) {
    this.target = target;
    this.timeoutMs = checkedTimeout(options.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : options.timeoutMs);
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    if (!(this.retry.maxAttempts >= 1)) throw new RangeError("retry.maxAttempts must be at least 1");
    this.metadata = new Metadata();
    for (const [key, value] of Object.entries(options.metadata ?? {})) this.metadata.set(key.toLowerCase(), value);
    if (options.token !== undefined) this.metadata.set("authorization", `Bearer ${options.token}`);
    const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.stub = new DifferentiationServiceClient(target, channelCredentials(options), {
      "grpc.max_receive_message_length": maxBytes,
      "grpc.max_send_message_length": maxBytes,
      "grpc.primary_user_agent": "chainrule-client-node/0.2.0",
    });
  }

  /** The derivative of `expression`, with respect to `wrt` (the only free variable by default). */
  async differentiate(expression: string, options: DifferentiateOptions = {}): Promise<Derivative> {
    const simplification = options.simplification ?? "fast";
    if (!(simplification in SIMPLIFICATIONS)) throw new RangeError(`unknown simplification ${simplification}`);
    const names: FormatName[] = [...(options.latex ? (["latex"] as const) : []), ...(options.formats ?? [])];
    for (const name of names) if (!(name in FORMATS)) throw new RangeError(`unknown format ${name}`);
    const request = {
      expression: checkedText(expression, "expression"),
      wrt: wrtMessages(options.wrt),
      simplification: SIMPLIFICATIONS[simplification],
      formats: [...new Set(names.map((name) => FORMATS[name]))],
      explain: options.explain ?? false,
      verify: options.verify ?? false,
      dependent: options.dependent ?? "",
    };
    const response = await this.call("Differentiate", this.stub.differentiate.bind(this.stub), request, options);
    const result: Derivative = { derivative: response.derivative, variables: response.variables };
    if (names.includes("latex")) result.latex = response.latex;
    if (options.explain) result.steps = response.steps.map(derivationStep);
    if (response.check !== undefined) result.check = numericCheck(response.check);
    if (names.includes("mathml")) result.mathml = response.mathml;
    if (response.code.length > 0) {
      result.code = response.code.map((c) => ({
        format: enumName(c.format, OutputFormat, "OUTPUT_FORMAT_"),
        source: c.source,
        functionName: c.functionName,
        parameters: c.parameters,
      }));
    }
    return result;
  }

  /** The value at `point`, or the values at `points` (in calls of `chunkPoints` points, if set). */
  async evaluate(expression: string, options: EvaluateOptions = {}): Promise<Evaluation> {
    if (options.chunkPoints !== undefined && options.points !== undefined) {
      const { chunkPoints, inFlight, ...single } = options;
      const parts = await this.eachSlice(options.points, chunkPoints, inFlight, (points) =>
        this.evaluate(expression, { ...single, points }),
      );
      const asFloat64 = wantsFloat64Array(options.points);
      return {
        values: concatenate(parts.map((part) => part.values ?? [part.value ?? NaN]), asFloat64),
        nonfiniteCount: parts.reduce((sum, part) => sum + part.nonfiniteCount, 0),
      };
    }
    const request = {
      expression: checkedText(expression, "expression"),
      point: encodePoint(options.point),
      points: encodePoints(options.points),
      wrt: wrtMessages(options.wrt),
      dependent: options.dependent ?? "",
    };
    const response = await this.call("Evaluate", this.stub.evaluate.bind(this.stub), request, options);
    const result: Evaluation = { nonfiniteCount: response.nonfiniteCount };
    if (response.value !== undefined) result.value = response.value;
    if (response.values !== undefined) result.values = decodeColumn(response.values, wantsFloat64Array(options.points));
    return result;
  }

  /** Value, gradient and (when asked) Hessian at `point`, or at `points` (`chunkPoints` as `evaluate`). */
  async gradient(expression: string, options: GradientOptions = {}): Promise<Gradient> {
    if (options.chunkPoints !== undefined && options.points !== undefined) {
      const { chunkPoints, inFlight, ...single } = options;
      const parts = await this.eachSlice(options.points, chunkPoints, inFlight, (points) =>
        this.gradient(expression, { ...single, points }),
      );
      return joinGradients(parts, wantsFloat64Array(options.points), options.hessian ?? false);
    }
    const request = {
      expression: checkedText(expression, "expression"),
      variables: checkedTexts(options.variables, "variables"),
      point: encodePoint(options.point),
      points: encodePoints(options.points),
      hessian: options.hessian ?? false,
    };
    const response = await this.call("GradientAtPoint", this.stub.gradientAtPoint.bind(this.stub), request, options);
    const n = response.variables.length;
    const result: Gradient = { variables: response.variables, nonfiniteCount: response.nonfiniteCount };
    if (response.values !== undefined) {
      const asFloat64 = wantsFloat64Array(options.points);
      result.values = decodeColumn(response.values, asFloat64);
      result.gradients = response.gradients.map((c) => decodeColumn(c, asFloat64));
      if (options.hessian) result.hessians = square(response.hessians.map((c) => decodeColumn(c, asFloat64)), n);
      return result;
    }
    if (response.value !== undefined) result.value = response.value;
    result.gradient = response.gradient;
    if (options.hessian) result.hessian = square(response.hessian, n);
    return result;
  }

  /** Values and Jacobian of `expressions` (the rows) at `point` or `points`; needs a server of 0.2.0 or later. */
  async jacobian(expressions: readonly string[], options: JacobianOptions = {}): Promise<Jacobian> {
    if (options.chunkPoints !== undefined && options.points !== undefined) {
      const { chunkPoints, inFlight, ...single } = options;
      const parts = await this.eachSlice(options.points, chunkPoints, inFlight, (points) =>
        this.jacobian(expressions, { ...single, points }),
      );
      return joinJacobians(parts, wantsFloat64Array(options.points));
    }
    const request = {
      expressions: checkedTexts(expressions, "expressions"),
      variables: checkedTexts(options.variables, "variables"),
      point: encodePoint(options.point),
      points: encodePoints(options.points),
    };
    const response = await this.call("Jacobian", this.stub.jacobian.bind(this.stub), request, options);
    const n = response.variables.length;
    const result: Jacobian = { variables: response.variables, nonfiniteCount: response.nonfiniteCount };
    if (response.valueArrays.length > 0) {
      const asFloat64 = wantsFloat64Array(options.points);
      result.valueArrays = response.valueArrays.map((c) => decodeColumn(c, asFloat64));
      result.jacobianArrays = rows(response.jacobianArrays.map((c) => decodeColumn(c, asFloat64)), n);
      return result;
    }
    result.values = response.values;
    result.jacobian = rows(response.jacobian, n);
    return result;
  }

  /**
   * The Taylor polynomial of `expression` around `around` of degree `order`; needs a server of 0.2.0
   * or later. No expansion at the point (log(x) at 0) rejects with reason `NO_TAYLOR_SERIES`.
   */
  async series(expression: string, options: SeriesOptions = {}): Promise<Series> {
    if (options.order !== undefined && !isOrder(options.order)) {
      throw new RangeError(`order must be a whole number 0..${MAX_ORDER}, got ${options.order}`);
    }
    const request = {
      expression: checkedText(expression, "expression"),
      variable: options.variable ?? "",
      around: String(options.around ?? "0"),
      order: options.order,
      formats: options.latex ? [OutputFormat.OUTPUT_FORMAT_LATEX] : [],
    };
    const response = await this.call("Series", this.stub.series.bind(this.stub), request, options);
    const result: Series = {
      series: response.series,
      variable: response.variable,
      coefficients: response.coefficients,
      remainder: response.remainder,
    };
    if (options.latex) result.latex = response.latex;
    return result;
  }

  /** `call` on each slice of `points`, `inFlight` at a time, in order. */
  private eachSlice<T>(
    points: Points,
    chunkPoints: number,
    inFlight: number | undefined,
    call: (points: Points) => Promise<T>,
  ): Promise<T[]> {
    return inOrder(
      split(points, chunkPoints).map((slice) => () => call(slice)),
      inFlight ?? 2,
    );
  }

  /** The server's version, limits, functions, constants and modes. */
  async serverInfo(options: CallOptions = {}): Promise<ServerInfo> {
    const response = await this.call("GetServerInfo", this.stub.getServerInfo.bind(this.stub), {}, options);
    return {
      version: response.version,
      limits: response.limits.map((l) => ({ name: l.name, maximum: l.maximum, description: l.description })),
      functions: response.functions,
      constants: response.constants,
      outputFormats: enumNames(response.outputFormats, OutputFormat, "OUTPUT_FORMAT_"),
      simplifications: enumNames(response.simplifications, Simplification, "SIMPLIFICATION_"),
      formatSupport: Object.fromEntries(
        response.formatSupport.map((entry) => [
          enumName(entry.format, OutputFormat, "OUTPUT_FORMAT_"),
          entry.functions,
        ]),
      ),
    };
  }

  /** How the server reads `expression` (cheap: for checking text as it is typed). */
  async parse(expression: string, options: CallOptions = {}): Promise<Parsed> {
    const response = await this.call("Parse", this.stub.parse.bind(this.stub), { expression: checkedText(expression, "expression") }, options);
    if (response.error === undefined) {
      return { canonical: response.canonical, latex: response.latex, variables: response.variables };
    }
    const { reason, message, position, metadata } = response.error;
    const error: ExpressionError = { reason, message, metadata };
    if (position !== undefined) error.position = position;
    return { canonical: "", latex: "", variables: [], error };
  }

  /** Close the channel; calls after this fail. */
  close(): void {
    this.stub.close();
  }

  /** One unary call of `rpc` (its name, for errors) with the deadline and retries. */
  private async call<Req, Res>(rpc: string, method: Unary<Req, Res>, request: Req, options: CallOptions): Promise<Res> {
    const timeoutMs = options.timeoutMs === undefined ? this.timeoutMs : checkedTimeout(options.timeoutMs);
    const deadline = timeoutMs === null ? undefined : Date.now() + timeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await unary(method, request, this.metadata, deadline);
      } catch (error) {
        if (error instanceof UnimplementedError) throw unimplemented(error, rpc, this.target);
        const delay = retryDelay(this.retry, error as ChainruleError, attempt, deadline);
        if (delay === undefined) throw error;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

}

// Past this a timeout is no deadline: Date.now() + Infinity made an invalid Date for grpc-js.
const FOREVER_MS = 1e12; // some 30 years

/** `timeoutMs` as a deadline takes it: null (none) for null, Infinity or past FOREVER_MS; a
 * RangeError for NaN or a negative one. */
function checkedTimeout(timeoutMs: number | null): number | null {
  if (timeoutMs === null) return null;
  if (typeof timeoutMs !== "number" || !(timeoutMs >= 0)) {
    throw new RangeError(`timeoutMs must be a number of milliseconds >= 0 or null, got ${String(timeoutMs)}`);
  }
  return timeoutMs > FOREVER_MS ? null : timeoutMs;
}

function unary<Req, Res>(method: Unary<Req, Res>, request: Req, metadata: Metadata, deadline?: number): Promise<Res> {
  return new Promise((resolve, reject) => {
    const options = deadline === undefined ? {} : { deadline: new Date(deadline) };
    method(request, metadata.clone(), options, (error, response) => {
      if (error) reject(errorFromServiceError(error));
      else resolve(response);
    });
  });
}

function channelCredentials(options: ClientOptions): ChannelCredentials {
  if (options.credentials !== undefined) return options.credentials;
  if (options.tls === undefined || options.tls === false) return grpcCredentials.createInsecure();
  const tls = options.tls === true ? {} : options.tls;
  if ((tls.privateKey === undefined) !== (tls.certChain === undefined)) {
    throw new TypeError("mutual TLS needs both privateKey and certChain");
  }
  return grpcCredentials.createSsl(tls.rootCerts ?? null, tls.privateKey ?? null, tls.certChain ?? null);
}
