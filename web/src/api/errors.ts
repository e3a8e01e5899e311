import type { components } from "./schema";

type RpcStatus = components["schemas"]["Status"];

export interface FieldViolation {
  field: string;
  description: string;
}

/** An API failure: the HTTP status, the google.rpc.Status code, the ErrorInfo reason (if any). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: number;
  readonly reason: string;
  readonly metadata: Record<string, string>;
  readonly fieldViolations: FieldViolation[];

  constructor(init: {
    status: number;
    code?: number;
    reason?: string;
    message?: string;
    metadata?: Record<string, string>;
    fieldViolations?: FieldViolation[];
  }) {
    super(init.message || `HTTP ${init.status}`);
    this.name = "ApiError";
    this.status = init.status;
    this.code = init.code ?? 0;
    this.reason = init.reason ?? "";
    this.metadata = init.metadata ?? {};
    this.fieldViolations = init.fieldViolations ?? [];
  }
}

const GRPC_CODE_REASON: Record<number, string> = {
  3: "INVALID_ARGUMENT",
  5: "NOT_FOUND",
  6: "ALREADY_EXISTS",
  7: "PERMISSION_DENIED",
  8: "RATE_LIMITED",
  9: "FAILED_PRECONDITION",
  14: "UNAVAILABLE",
  16: "UNAUTHENTICATED",
};

const HTTP_REASON: Record<number, string> = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  409: "ALREADY_EXISTS",
  429: "RATE_LIMITED",
  503: "UNAVAILABLE",
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Builds an ApiError from an HTTP status and whatever body came back (Status JSON, text, nothing). */
export function toApiError(status: number, body: unknown): ApiError {
  let parsed: unknown = body;
  if (typeof body === "string") {
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = undefined;
    }
  }
  if (!isRecord(parsed)) {
    return new ApiError({ status, reason: HTTP_REASON[status] ?? "", message: `HTTP ${status}` });
  }
  const st = parsed as RpcStatus;
  let reason = "";
  let metadata: Record<string, string> = {};
  const fieldViolations: FieldViolation[] = [];
  for (const raw of (st.details ?? []) as unknown[]) {
    if (!isRecord(raw)) continue;
    const d = raw;
    const type = String(d["@type"] ?? "");
    if (type.endsWith("google.rpc.ErrorInfo")) {
      reason = typeof d.reason === "string" ? d.reason : reason;
      if (isRecord(d.metadata)) metadata = d.metadata as Record<string, string>;
    } else if (type.endsWith("google.rpc.BadRequest") && Array.isArray(d.fieldViolations)) {
      for (const fv of d.fieldViolations as unknown[]) {
        if (isRecord(fv)) {
          fieldViolations.push({ field: String(fv.field ?? ""), description: String(fv.description ?? "") });
        }
      }
    }
  }
  if (!reason) reason = GRPC_CODE_REASON[st.code ?? -1] ?? HTTP_REASON[status] ?? "";
  return new ApiError({ status, code: st.code, reason, message: st.message, metadata, fieldViolations });
}

const MESSAGES: Record<string, string> = {
  TOKEN_EXPIRED: "Your session expired. Please sign in again.",
  TOKEN_REVOKED: "You were signed out. Please sign in again.",
  SESSION_ENDED: "You were signed out. Please sign in again.",
  UNAUTHENTICATED: "Please sign in to continue.",
  INVALID_CREDENTIALS: "That handle and password don't match.",
  REFRESH_TOKEN_REUSED: "For your safety we signed you out everywhere. Please sign in again.",
  RATE_LIMITED: "You're doing that too often. Wait a moment and try again.",
  MEDIA_NOT_READY: "Your image is still processing. Try again in a moment.",
  NOT_FOUND: "We couldn't find that. It may have been deleted.",
  PERMISSION_DENIED: "You don't have permission to do that.",
  ALREADY_EXISTS: "That already exists.",
  INVALID_ARGUMENT: "Some of what you entered isn't valid.",
  FAILED_PRECONDITION: "That can't be done right now.",
  UNAVAILABLE: "The service is unavailable. Try again shortly.",
  VERIFICATION_TOKEN_INVALID: "It was already used, has expired, or is incomplete.",
  NETWORK: "You seem to be offline. Check your connection and try again.",
};

/** A sentence a person can read, never raw JSON. */
export function humanMessage(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.reason === "INVALID_ARGUMENT" || err.reason === "ALREADY_EXISTS") {
      const fv = err.fieldViolations[0];
      if (fv?.description) return capitalise(fv.description);
    }
    const known = MESSAGES[err.reason];
    if (known) return known;
    if (err.status >= 500) return "Something went wrong on our side. Try again.";
    return "Something went wrong. Try again.";
  }
  if (err instanceof TypeError) return MESSAGES.NETWORK ?? "Network error";
  return "Something went wrong. Try again.";
}

function capitalise(s: string): string {
  const t = s.trim();
  return t ? t[0]!.toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".") : t;
}

/** Field-level messages for forms, keyed by field name. */
export function fieldErrors(err: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (err instanceof ApiError) {
    for (const fv of err.fieldViolations) if (fv.field && !out[fv.field]) out[fv.field] = capitalise(fv.description);
  }
  return out;
}
