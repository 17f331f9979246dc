/**
 * The client's error hierarchy, decoded from the server's rich `google.rpc.Status` trailer.
 *
 *     ChainruleError                  any failed call (code, reason, fieldViolations, metadata, ...)
 *     ├── InvalidArgumentError        INVALID_ARGUMENT: the request is wrong
 *     │   ├── ParseError              PARSE_ERROR: the expression does not parse; has `position`
 *     │   │   └── UnknownFunctionError  UNKNOWN_FUNCTION
 *     │   ├── MissingVariableError    MISSING_VARIABLE
 *     │   └── LimitExceededError      LIMIT_EXCEEDED
 *     ├── DeadlineExceededError       DEADLINE_EXCEEDED
 *     ├── ResourceExhaustedError      RESOURCE_EXHAUSTED: may carry `retryAfterMs`
 *     ├── UnavailableError            UNAVAILABLE (raised once the retries are spent)
 *     ├── UnauthenticatedError        UNAUTHENTICATED
 *     └── UnimplementedError          UNIMPLEMENTED: a server older than the call (jacobian, series)
 */
import { Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";

import { BadRequest, ErrorInfo, RetryInfo } from "./generated/google/rpc/error_details.js";
import { Status as RpcStatus } from "./generated/google/rpc/status.js";

export const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/** One bad request field, named by its path (`expression`, `wrt[1].order`, `points.x`). */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

/** What the server said besides the code and message. */
export interface ErrorDetails {
  reason?: string;
  domain?: string;
  fieldViolations?: readonly FieldViolation[];
  metadata?: Readonly<Record<string, string>>;
  retryAfterMs?: number;
}

/** A failed call: the status code and whatever details the server sent. */
export class ChainruleError extends Error {
  readonly code: Status;
  readonly reason: string | undefined;
  readonly domain: string | undefined;
  readonly fieldViolations: readonly FieldViolation[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly retryAfterMs: number | undefined;

  constructor(code: Status, message: string, details: ErrorDetails = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.reason = details.reason;
    this.domain = details.domain;
    this.fieldViolations = details.fieldViolations ?? [];
    this.metadata = details.metadata ?? {};
    this.retryAfterMs = details.retryAfterMs;
  }
}

export class InvalidArgumentError extends ChainruleError {}

/** The expression does not parse; `position` is the 0-based offset in Unicode code points. */
export class ParseError extends InvalidArgumentError {
  get position(): number | undefined {
    const raw = this.metadata["position"];
    return raw !== undefined && /^-?\d+$/.test(raw) ? Number(raw) : undefined;
  }
}

export class UnknownFunctionError extends ParseError {}
export class MissingVariableError extends InvalidArgumentError {}
export class LimitExceededError extends InvalidArgumentError {}
export class DeadlineExceededError extends ChainruleError {}
export class ResourceExhaustedError extends ChainruleError {}
export class UnavailableError extends ChainruleError {}
export class UnauthenticatedError extends ChainruleError {}
/** The server does not have this RPC: it is older than the client (the message says which). */
export class UnimplementedError extends ChainruleError {}

/** The server version that added each RPC the first release lacked. */
const ADDED_IN: Readonly<Record<string, string>> = { Jacobian: "0.2.0", Series: "0.2.0" };

/** UNIMPLEMENTED from a server, as an error that says which call and what the server needs. */
export function unimplemented(error: ChainruleError, rpc: string, target: string): UnimplementedError {
  const needs = ADDED_IN[rpc] !== undefined ? `chainrule ${ADDED_IN[rpc]} or later` : "a newer chainrule";
  return new UnimplementedError(
    error.code,
    `the server at ${target} does not implement ${rpc} (${error.message}): it needs ${needs}`,
    {
      reason: error.reason,
      domain: error.domain,
      fieldViolations: error.fieldViolations,
      metadata: error.metadata,
      retryAfterMs: error.retryAfterMs,
    },
  );
}

type ErrorClass = new (code: Status, message: string, details?: ErrorDetails) => ChainruleError;

const BY_REASON: Readonly<Record<string, ErrorClass>> = {
  PARSE_ERROR: ParseError,
  UNKNOWN_FUNCTION: UnknownFunctionError,
  MISSING_VARIABLE: MissingVariableError,
  LIMIT_EXCEEDED: LimitExceededError,
};

const BY_CODE: ReadonlyMap<Status, ErrorClass> = new Map<Status, ErrorClass>([
  [Status.INVALID_ARGUMENT, InvalidArgumentError],
  [Status.DEADLINE_EXCEEDED, DeadlineExceededError],
  [Status.RESOURCE_EXHAUSTED, ResourceExhaustedError],
  [Status.UNAVAILABLE, UnavailableError],
  [Status.UNAUTHENTICATED, UnauthenticatedError],
  [Status.UNIMPLEMENTED, UnimplementedError],
]);

const TYPE_PREFIX = "type.googleapis.com/";

/** Decode the details of a serialized `google.rpc.Status` (the `grpc-status-details-bin` trailer). */
export function decodeStatusDetails(raw: Uint8Array): ErrorDetails {
  let status: RpcStatus;
  try {
    status = RpcStatus.decode(raw);
  } catch {
    return {}; // a garbled trailer must not hide the status code itself
  }
  const details: ErrorDetails = {};
  const violations: FieldViolation[] = [];
  for (const any of status.details) {
    switch (any.typeUrl.slice(TYPE_PREFIX.length)) {
      case "google.rpc.BadRequest":
        for (const v of BadRequest.decode(any.value).fieldViolations) {
          violations.push({ field: v.field, description: v.description });
        }
        break;
      case "google.rpc.ErrorInfo": {
        const info = ErrorInfo.decode(any.value);
        Object.assign(details, { reason: info.reason, domain: info.domain, metadata: info.metadata });
        break;
      }
      case "google.rpc.RetryInfo": {
        const delay = RetryInfo.decode(any.value).retryDelay;
        if (delay !== undefined) details.retryAfterMs = delay.seconds * 1000 + delay.nanos / 1e6;
        break;
      }
      default:
        break; // detail kinds we do not know are skipped, not fatal
    }
  }
  details.fieldViolations = violations;
  return details;
}

/** Build the matching error class from a status code, a message and the decoded details. */
export function errorFromStatus(code: Status, message: string, details: ErrorDetails = {}): ChainruleError {
  const byReason = code === Status.INVALID_ARGUMENT && details.reason ? BY_REASON[details.reason] : undefined;
  const ErrorType = byReason ?? BY_CODE.get(code) ?? ChainruleError;
  return new ErrorType(code, message, details);
}

/** Translate a grpc-js `ServiceError` into the client's hierarchy. */
export function errorFromServiceError(error: ServiceError): ChainruleError {
  const trailers = error.metadata instanceof Metadata ? error.metadata.get(STATUS_DETAILS_KEY) : [];
  const raw = trailers.find((value): value is Buffer => Buffer.isBuffer(value));
  const details = raw !== undefined ? decodeStatusDetails(raw) : {};
  return errorFromStatus(error.code, error.details || Status[error.code] || "error", details);
}
