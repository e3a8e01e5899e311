import { describe, expect, it } from "vitest";
import { ApiError, fieldErrors, humanMessage, toApiError } from "@/api/errors";

describe("error mapping", () => {
  it("reads the ErrorInfo reason and maps it to a sentence", () => {
    const e = toApiError(401, { code: 16, message: "bad", details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "INVALID_CREDENTIALS", domain: "user", metadata: {} }] });
    expect(e.reason).toBe("INVALID_CREDENTIALS");
    expect(humanMessage(e)).toBe("That handle and password don't match.");
  });

  it("uses BadRequest field violations for invalid input", () => {
    const body = JSON.stringify({
      code: 3,
      message: "invalid",
      details: [
        { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "INVALID_ARGUMENT" },
        { "@type": "type.googleapis.com/google.rpc.BadRequest", fieldViolations: [{ field: "handle", description: "must be 3-30 letters" }] },
      ],
    });
    const e = toApiError(400, body);
    expect(fieldErrors(e)).toEqual({ handle: "Must be 3-30 letters." });
    expect(humanMessage(e)).toBe("Must be 3-30 letters.");
  });

  it("falls back on the gRPC code, then the HTTP status; never shows raw JSON", () => {
    expect(toApiError(404, { code: 5, message: "post 1 not found" }).reason).toBe("NOT_FOUND");
    expect(toApiError(429, "local_rate_limited").reason).toBe("RATE_LIMITED");
    const weird = toApiError(500, '{"code":13,"message":"{\\"internal\\":true}"}');
    expect(humanMessage(weird)).not.toContain("{");
    expect(humanMessage(new ApiError({ status: 400, reason: "MEDIA_NOT_READY" }))).toMatch(/still processing/);
    expect(humanMessage(new TypeError("Failed to fetch"))).toMatch(/offline/);
  });
});
