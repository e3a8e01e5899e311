import { describe, expect, it } from "vitest";
import { hasSessionHint } from "@/api/session";

describe("hasSessionHint", () => {
  it("finds the server's hint among other cookies", () => {
    expect(hasSessionHint("theme=dark; sm_session=1")).toBe(true);
    expect(hasSessionHint("sm_session=1")).toBe(true);
  });
  it("is false when the hint is absent or cleared", () => {
    expect(hasSessionHint("")).toBe(false);
    expect(hasSessionHint("sm_session=")).toBe(false);
    expect(hasSessionHint("not_sm_session=1")).toBe(false);
  });
});
